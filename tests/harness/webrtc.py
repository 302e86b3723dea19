"""A browser calling a SIP phone: one network namespace holding every part of the WebRTC test.

    kemi<slot>-<pid>-web   lo (127.0.0.1) + web0 (203.0.113.5), a veth NIC whose peer web1 is there too
      Kamailio     udp:127.0.0.1:SIP_PORT (the phone), wss:127.0.0.1:WSS_PORT (the browser)
      rtpengine    ng on 127.0.0.1:NG_PORT, media on 203.0.113.5 (the slot's port range)
      HTTP server  127.0.0.1:HTTP_PORT: tests/web (phone.html, jssip.js), loopback is a secure
                   context for getUserMedia
      Chromium     headless (Debian's), driven by tests/web/drive.js (playwright-core)
      baresip      the plain-RTP phone on 203.0.113.5 (web0): its SDP names the address it
                   sends from (bound to 127.0.0.1 it would send to the relay from web0's
                   address, and strict-source drops what does not come from the SDP's)

Why a namespace: Chromium gathers ICE host candidates from every non-loopback interface
(it ignores loopback); in the root namespace that would be the machine's real NIC, and
rtpengine would send connectivity checks there. Inside this namespace the only such
address is web0's documentation address, so every packet stays in the namespace.
MariaDB is reached over its unix socket (a filesystem path, visible from any namespace).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from harness import stack
from harness.media import RTPENGINE_PORT_MAX, RTPENGINE_PORT_MIN
from harness.netns import Topology, _ip
from harness.sbc import probe
from harness.sbc_media import NetnsNgClient
from kemi.settings import MediaInterface, RtpengineDaemon, load_settings
from kemi_tools.stack import kamailio
from kemi_tools.stack import rtpengine as rtpengine_stack
from kemi_tools.stack.process import wait_for

WEB_DIR = stack.project_file("tests", "web")
MEDIA_ADDRESS = "203.0.113.5"
SIP_PORT = stack.PORT_BASE + 70
WSS_PORT = stack.PORT_BASE + 71
HTTP_PORT = stack.PORT_BASE + 72
NG_PORT = stack.PORT_BASE + 73


def make_certificate(workdir: Path, ip: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for the WSS listener (the browser is told to accept it)."""
    cert, key = workdir / "wss-cert.pem", workdir / "wss-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", f"/CN={ip}", "-addext", f"subjectAltName=IP:{ip}"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def web_ready() -> str:
    """"" when tests/web is installed (scripts/install.sh --test), else what is missing."""
    for path in (WEB_DIR / "jssip.js", WEB_DIR / "node_modules" / "playwright-core", Path("/usr/bin/chromium")):
        if not path.exists():
            return f"{path} is missing: run scripts/install.sh --test"
    return ""


class WebNetwork:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.topology = Topology()
        try:
            self.ns = self.topology.namespace("web")
            # a NIC that is not loopback: a veth pair with both ends in the namespace (this
            # kernel has no dummy links); only web0 has an address
            _ip("-n", self.ns.name, "link", "add", "web0", "type", "veth", "peer", "name", "web1")
            self.ns.add_address("web0", f"{MEDIA_ADDRESS}/24")
            for dev in ("web0", "web1"):
                _ip("-n", self.ns.name, "link", "set", dev, "up")
        except Exception:
            self.topology.teardown()
            raise
        self.cert, self.key = make_certificate(workdir)
        self.ng = NetnsNgClient(self.ns, ("127.0.0.1", NG_PORT))
        self.kamailio_log = workdir / "kamailio" / "kamailio.log"
        self.kamailio = None

    # --- rtpengine and Kamailio -------------------------------------------------------------

    def rtpengine_table(self) -> dict:
        return {"listen_ng": f"127.0.0.1:{NG_PORT}", "interfaces": [{"name": "default", "address": MEDIA_ADDRESS}],
                "port_min": RTPENGINE_PORT_MIN, "port_max": RTPENGINE_PORT_MAX, "delete_delay": 0}

    def start_rtpengine(self) -> None:
        t = self.rtpengine_table()
        daemon = RtpengineDaemon(listen_ng=t["listen_ng"], interfaces=(MediaInterface("default", MEDIA_ADDRESS),),
                                 port_min=t["port_min"], port_max=t["port_max"], delete_delay=0)
        proc = self.ns.spawn(rtpengine_stack.argv(daemon), self.workdir / "rtpengine.log", name="rtpengine")
        wait_for(self.ng.ping, 20, "rtpengine in the web namespace to answer ping", proc, interval=0.2)

    def tables(self, media: dict | None = None) -> dict:
        return {
            "sip": {"domain": stack.DOMAIN, "listen": [f"udp:127.0.0.1:{SIP_PORT}"], "children": 2},
            "database": {"url": stack.TEST_DB_URL, "ro_url": stack.TEST_DB_RO_URL},
            "runtime": {"dir": str(self.workdir / "kamailio" / "run"), "log_level": 2},
            "media": {"enabled": True, "rtpengine": self.rtpengine_table(), **(media or {})},
            "tls": {"enabled": True, "certificate": str(self.cert), "private_key": str(self.key)},
            "websocket": {"enabled": True, "listen": [f"wss:127.0.0.1:{WSS_PORT}"]},
        }

    def start_kamailio(self, media: dict | None = None) -> None:
        """(Re)start Kamailio with these [media] settings (one at a time: it binds with
        SO_REUSEADDR, a second one on the same port would share the traffic)."""
        if self.kamailio is not None:
            self.kamailio.stop()
        workdir = self.workdir / "kamailio"
        workdir.mkdir(parents=True, exist_ok=True)
        settings_file = workdir / "settings.toml"
        settings_file.write_text(stack.toml_dump(self.tables(media)))
        settings = load_settings(settings_file)
        cfg = kamailio.prepare(settings, workdir)
        kamailio.require_valid_config(cfg)
        proc = self.kamailio = self.ns.spawn(kamailio.command(cfg, settings.pid_file), self.kamailio_log,
                                             name="kamailio", cwd=cfg.parent)
        wait_for(lambda: probe(self.ns, "127.0.0.1", "127.0.0.1", SIP_PORT), 30,
                 "Kamailio in the web namespace to answer OPTIONS", proc, interval=0.3)

    @property
    def proxy(self) -> str:
        return f"127.0.0.1:{SIP_PORT}"

    def log(self) -> str:
        return self.kamailio_log.read_text(errors="replace") if self.kamailio_log.exists() else ""

    # --- the page and the browser -----------------------------------------------------------

    def serve_page(self) -> None:
        proc = self.ns.spawn([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory",
                              str(WEB_DIR), str(HTTP_PORT)], self.workdir / "http.log", name="http.server")
        wait_for(lambda: self.ns.run(["python3", "-c", f"import urllib.request; urllib.request.urlopen("
                                      f"'http://127.0.0.1:{HTTP_PORT}/phone.html', timeout=2)"],
                                     check=False, timeout=10).returncode == 0,
                 20, "the page server", proc, interval=0.3)

    def page_url(self, user: str, call: str | None = None, password: str = stack.PASSWORD) -> str:
        """phone.html for `user`: dialing `call` once registered, or answering (call=None)."""
        action = f"call={call}" if call else "answer=1"
        return (f"http://127.0.0.1:{HTTP_PORT}/phone.html?ws=wss://127.0.0.1:{WSS_PORT}&user={user}"
                f"&password={password}&domain=127.0.0.1:{SIP_PORT}&{action}&debug=1")

    def browse(self, url: str, hold_seconds: float, audio_wav: Path, timeout: float = 120) -> dict:
        """Run drive.js in the namespace: the page's JSON result (state, times, stats, events)."""
        return self.browse_async(url, hold_seconds, audio_wav).result(timeout)

    def browse_async(self, url: str, hold_seconds: float, audio_wav: Path) -> "Browsing":
        profile = self.workdir / f"chromium-profile-{len(list(self.workdir.glob('chromium-profile-*')))}"
        profile.mkdir()
        log = profile.with_suffix(".log")
        proc = self.ns.popen(["node", str(WEB_DIR / "drive.js"), url, str(hold_seconds), str(audio_wav), str(profile)],
                             cwd=WEB_DIR, env={**os.environ, "HOME": str(self.workdir)},
                             stdout=subprocess.PIPE, stderr=open(log, "w"), text=True)
        return Browsing(proc, log)

    def close(self) -> list[str]:
        return self.topology.teardown()


class Browsing:
    """drive.js running: its log (the page's console) and, at the end, its JSON result."""

    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc, self.log = proc, log

    def page_log(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def result(self, timeout: float = 120) -> dict:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        lines = [l for l in (out or "").splitlines() if l.startswith("{")]
        if not lines:
            raise AssertionError(f"drive.js printed no result (exit {self.proc.returncode}):\n{out}\n"
                                 f"{self.page_log()[-3000:]}")
        result = json.loads(lines[-1])
        result["browser_log"] = self.page_log()
        return result
