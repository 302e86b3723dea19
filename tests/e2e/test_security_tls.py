"""The optional TLS listener (settings [tls]) against a certificate the test makes with openssl.

Debian's SIPp is built without OpenSSL (`sipp -t l1` answers "To use a TLS transport you
must compile SIPp with OpenSSL") and its source package is not served here, so the phone on
TLS is harness/sipclient.py over Python's ssl module: handshake with certificate
verification, REGISTER with digest, and a call from a UDP phone delivered over the TLS
connection the phone registered on.
"""
from __future__ import annotations

import socket
import ssl
import subprocess
import threading

import pytest

from harness import stack
from harness.sipclient import SipClient, header, status
from harness.stack import free_port


def make_certificate(folder, name: str, ip: str = "127.0.0.1"):
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", f"/CN={ip}", "-addext", f"subjectAltName=IP:{ip}"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def tls_proxy(db, tmp_path):
    cert, key = make_certificate(tmp_path, "server")
    udp_port, tls_port = stack.kamailio_port(), stack.kamailio_port()
    inst = stack.KamailioInstance(tmp_path / "tls", udp_port, {
        "sip": {"listen": [f"udp:127.0.0.1:{udp_port}", f"tls:127.0.0.1:{tls_port}"]},
        "tls": {"enabled": True, "certificate": str(cert), "private_key": str(key)}})
    inst.tls_address, inst.cert = ("127.0.0.1", tls_port), str(cert)
    inst.start()
    yield inst
    inst.stop()


def test_register_and_take_a_call_over_tls(db, tls_proxy, phones, tmp_path):
    phones.proxy = tls_proxy
    db.add_subscriber("3801")
    db.add_subscriber("3802")
    with SipClient(tls_proxy.tls_address, transport="tls", cafile=tls_proxy.cert) as phone:
        assert phone.tls_version in ("TLSv1.2", "TLSv1.3")
        assert ("commonName", "127.0.0.1") in phone.peer_cert["subject"][0]
        aor = "sip:3801@127.0.0.1"
        host, port = phone.local
        reply = phone.request("REGISTER", "sip:127.0.0.1", from_uri=aor, to_uri=aor, user="3801",
                              password=stack.PASSWORD,
                              headers={"Contact": f"<sip:3801@{host}:{port};transport=tls>", "Expires": "600"})
        assert status(reply) == 200
        assert db.locations("3801") == [f"sip:3801@{host}:{port};transport=tls"]

        # a UDP phone calls 3801: the INVITE must arrive over this TLS connection; 3801 is busy
        answered = threading.Event()

        def answer_busy():
            invite = phone.receive(10)
            if invite and invite.startswith(b"INVITE sip:3801@"):
                lines = invite.decode().split("\r\n")
                keep = [l for l in lines if l.split(":")[0].lower() in ("via", "from", "to", "call-id", "cseq")]
                keep = [l + ";tag=busy" if l.lower().startswith("to:") else l for l in keep]
                phone.send(("\r\n".join(["SIP/2.0 486 Busy Here", *keep, "Content-Length: 0", "", ""])).encode())
                answered.set()

        t = threading.Thread(target=answer_busy, daemon=True)
        t.start()
        call = phones.call("3802", "3801")
        t.join(15)
        assert answered.is_set(), "the INVITE did not arrive over TLS"
        assert call.finals == [486], call.stdout[-2000:]
    assert "Traceback" not in tls_proxy.log()


def test_tls_controls_wrong_ca_and_plain_text_get_nothing(tls_proxy, tmp_path):
    other_ca, _ = make_certificate(tmp_path, "other")
    with pytest.raises(ssl.SSLCertVerificationError):
        SipClient(tls_proxy.tls_address, transport="tls", cafile=str(other_ca))
    # plain SIP on the TLS port is not understood as SIP
    with socket.create_connection(tls_proxy.tls_address, timeout=3) as s:
        s.sendall(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKx\r\n"
                  b"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: plain\r\nCSeq: 1 OPTIONS\r\n"
                  b"Content-Length: 0\r\n\r\n")
        try:
            data = s.recv(4096)
        except (socket.timeout, ConnectionResetError):
            data = b""
    assert not data.startswith(b"SIP/2.0")
    # and TLS itself works on that port (so the two refusals above are about trust and protocol)
    with SipClient(tls_proxy.tls_address, transport="tls", cafile=tls_proxy.cert) as c:
        c.send(c.build("OPTIONS", "sip:127.0.0.1", from_uri="sip:probe@127.0.0.1"))
        assert status(c.final_reply()) == 200
