"""Media security: which rtpengine transport / SDES / DTLS / ICE / rtcp-mux flags an SDP gets.

Plain values in and out, no KSR. Every party of a call (an SBC side, a phone, a browser)
has a *media security*, one of SECURITIES, from the settings (docs/media.md):

    any      whatever the offer carries passes through (rtpengine's default: kemi before this)
    rtp      plain RTP (RTP/AVP) is sent to it; it may offer anything
    srtp     SRTP is sent to it: the offer's kind (SDES or DTLS) if encrypted, else SDES;
             its own offers must be encrypted (a plain one gets 488)
    sdes     SDES-SRTP (RTP/SAVP with a=crypto) is sent to it; its offers must be encrypted
    dtls     DTLS-SRTP (UDP/TLS/RTP/SAVP, a=fingerprint) is sent to it; offers must be encrypted
    webrtc   a browser: DTLS-SRTP, ICE, rtcp-mux, AVPF (UDP/TLS/RTP/SAVPF); offers must be encrypted

The SDP's *sender* (the offerer for an offer) decides what is acceptable; the *receiver*
(whom rtpengine rewrites the SDP for) decides the flags. rtpengine remembers each party's
transport: an answer needs no flags of its own (measured on 10.5 over ng: the answer to a
WebRTC offer comes back UDP/TLS/RTP/SAVPF with ICE and rtcp-mux, the answer to a plain offer
RTP/AVP, whatever the answerer used).

    crypto = sdp_crypto(body)                           # what the SDP carries
    decide(OFFER, crypto, sender="webrtc", receiver="rtp")
        -> Decision(flags=("transport-protocol=RTP/AVP", "ICE=remove", "rtcp-mux-demux"))
    decide(OFFER, sdp_crypto(plain_body), sender="srtp", receiver="rtp")
        -> Decision(refusal="SRTP required")            # 488, never relayed
"""
from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field

from kemi import sip
from kemi.media.flags import ANSWER, OFFER

ANY, RTP, SRTP, SDES, DTLS, WEBRTC = "any", "rtp", "srtp", "sdes", "dtls", "webrtc"
SECURITIES = (ANY, RTP, SRTP, SDES, DTLS, WEBRTC)
# parties whose own offers must be encrypted: a plain offer from them is refused
ENCRYPTED_ONLY = frozenset({SRTP, SDES, DTLS, WEBRTC})

# what an SDP's m= lines carry (the weakest active one counts)
PLAIN, SDES_SRTP, DTLS_SRTP, NO_MEDIA = "rtp", "sdes", "dtls", "none"

# refusal reasons, the tail of the 488's reason phrase
SRTP_REQUIRED = "SRTP required"
BAD_CRYPTO = "bad crypto offer"

PROTO_PLAIN = frozenset({"RTP/AVP", "RTP/AVPF"})
PROTO_SDES = frozenset({"RTP/SAVP", "RTP/SAVPF"})
PROTO_DTLS = frozenset({"UDP/TLS/RTP/SAVP", "UDP/TLS/RTP/SAVPF"})
# a=crypto:<tag> <suite> inline:<key||salt>[|lifetime][|MKI:len] [session params] (RFC 4568)
CRYPTO_RE = re.compile(r"^(\d{1,9}) ([A-Z0-9_]+) inline:([A-Za-z0-9+/=]+)(\|[^ ]*)?( .*)?$")
# key||salt lengths in bytes of the suites rtpengine 10.5 knows (RFC 4568, 6188, 7714)
SUITE_KEY_BYTES = {
    "AES_CM_128_HMAC_SHA1_80": 30, "AES_CM_128_HMAC_SHA1_32": 30,
    "AES_192_CM_HMAC_SHA1_80": 38, "AES_192_CM_HMAC_SHA1_32": 38,
    "AES_256_CM_HMAC_SHA1_80": 46, "AES_256_CM_HMAC_SHA1_32": 46,
    "F8_128_HMAC_SHA1_80": 30, "F8_128_HMAC_SHA1_32": 30,
    "NULL_HMAC_SHA1_80": 30, "NULL_HMAC_SHA1_32": 30,
    "AEAD_AES_128_GCM": 28, "AEAD_AES_256_GCM": 44,
}
# suites kemi never lets rtpengine offer with SDES: NULL_* encrypt nothing (a phone picking one
# would send plaintext), and baresip 1.0 picks AEAD_AES_256_GCM first, then fails to decrypt
# rtpengine 10.5's packets (measured: every packet "failed to decrypt")
SDES_EXCLUDED = ("SDES-no-NULL_HMAC_SHA1_80", "SDES-no-NULL_HMAC_SHA1_32",
                 "SDES-no-AEAD_AES_256_GCM", "SDES-no-AEAD_AES_128_GCM")
UNENCRYPTED_SUITES = frozenset({"NULL_HMAC_SHA1_80", "NULL_HMAC_SHA1_32"})
FINGERPRINT_RE = re.compile(r"^[A-Za-z0-9-]+ [0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2})+$")


@dataclass(frozen=True)
class SdpCrypto:
    """What an SDP carries: the weakest kind over its active m= lines, ICE, rtcp-mux, problems."""
    kind: str = NO_MEDIA          # PLAIN, SDES_SRTP, DTLS_SRTP or NO_MEDIA (no m= with a port)
    ice: bool = False             # a=ice-ufrag anywhere: a WebRTC-style offerer
    rtcp_mux: bool = False
    problem: str = ""             # a broken crypto offer: what is wrong ("" = nothing)

    @property
    def encrypted(self) -> bool:
        return self.kind in (SDES_SRTP, DTLS_SRTP)


@dataclass(frozen=True)
class Decision:
    """The flags to add for this SDP, or why it is refused (488)."""
    flags: tuple[str, ...] = ()
    refusal: str = ""


NOTHING = Decision()
_STRENGTH = {PLAIN: 0, SDES_SRTP: 1, DTLS_SRTP: 2}


def sdp_crypto(body: str) -> SdpCrypto:
    """Read an SDP body: per active m= line its protocol and crypto / fingerprint attributes."""
    session_fingerprint, ice, mux = False, False, False
    sections: list[dict] = []          # one per m= line
    for raw in body.splitlines():
        line = raw.strip()
        if line.startswith("m="):
            parts = line[2:].split()
            active = len(parts) >= 3 and parts[1].split("/")[0] != "0"
            sections.append({"proto": parts[2] if len(parts) >= 3 else "", "active": active,
                             "crypto": [], "fingerprint": False, "line": line})
            continue
        if not line.startswith("a="):
            continue
        name, _, value = line[2:].partition(":")
        if name == "ice-ufrag":
            ice = True
        elif name == "rtcp-mux":
            mux = True
        elif name == "fingerprint":
            if not FINGERPRINT_RE.match(value.strip()):
                return SdpCrypto(problem=f"a=fingerprint:{value.strip()[:40]} is not a fingerprint")
            if sections:
                sections[-1]["fingerprint"] = True
            else:
                session_fingerprint = True
        elif name == "crypto" and sections:
            sections[-1]["crypto"].append(value.strip())
    kinds = []
    for s in sections:
        if not s["active"]:
            continue
        kind, problem = _section_kind(s["proto"], s["crypto"], s["fingerprint"] or session_fingerprint)
        if problem:
            return SdpCrypto(problem=f"{problem} ({s['line'][:60]})", ice=ice, rtcp_mux=mux)
        kinds.append(kind)
    if not kinds:
        return SdpCrypto(ice=ice, rtcp_mux=mux)
    return SdpCrypto(kind=min(kinds, key=_STRENGTH.__getitem__), ice=ice, rtcp_mux=mux)


def _section_kind(proto: str, cryptos: list[str], fingerprint: bool) -> tuple[str, str]:
    if proto in PROTO_PLAIN:
        return PLAIN, ""
    if proto in PROTO_DTLS:
        return (DTLS_SRTP, "") if fingerprint else ("", f"{proto} without a=fingerprint")
    if proto in PROTO_SDES:
        if not cryptos:
            return (DTLS_SRTP, "") if fingerprint else ("", f"{proto} without a=crypto or a=fingerprint")
        for crypto in cryptos:
            problem = crypto_problem(crypto)
            if problem:
                return "", problem
        if all(not encrypts(crypto) for crypto in cryptos):
            return PLAIN, ""           # only NULL ciphers / UNENCRYPTED_SRTP: authenticated, not secret
        return SDES_SRTP, ""
    return PLAIN, ""                   # not RTP (e.g. image udptl): nothing to encrypt


def crypto_problem(value: str) -> str:
    """Why an a=crypto value (after "a=crypto:") is unusable; "" when it is well formed."""
    m = CRYPTO_RE.match(value)
    if not m:
        return f"a=crypto:{value[:40]} is malformed"
    suite, key = m.group(2), m.group(3)
    want = SUITE_KEY_BYTES.get(suite)
    if want is None:
        return f"a=crypto suite {suite} is unknown"
    try:
        decoded = base64.b64decode(key + "=" * (-len(key) % 4), validate=True)
    except (binascii.Error, ValueError):
        return f"a=crypto key of {suite} is not base64"
    if len(decoded) != want:
        return f"a=crypto key of {suite} has {len(decoded)} bytes, not {want}"
    return ""


def encrypts(value: str) -> bool:
    """A well-formed a=crypto value whose suite and session parameters encrypt RTP."""
    parts = value.split()
    return parts[1] not in UNENCRYPTED_SUITES and "UNENCRYPTED_SRTP" not in parts[3:]


def receiver_flags(receiver: str, crypto: SdpCrypto) -> tuple[str, ...]:
    """Offer flags that give the receiver the transport it needs."""
    if receiver == ANY:
        return ()
    if receiver == WEBRTC:
        return ("transport-protocol=UDP/TLS/RTP/SAVPF", "ICE=force", "rtcp-mux-require", "SDES-off",
                "generate-mid")
    # a SIP phone or gateway: no ICE, RTCP on its own port, whatever the browser offered
    browser = ("ICE=remove", "rtcp-mux-demux") if crypto.ice else ()
    if receiver == SRTP:
        receiver = DTLS if crypto.kind == DTLS_SRTP else SDES
    if receiver == RTP:
        return ("transport-protocol=RTP/AVP", *browser)
    if receiver == SDES:
        # rtpengine offers DTLS beside SDES for RTP/SAVP; a phone that wants SDES gets SDES only
        # (not when the offerer itself does DTLS: DTLS=off would stop rtpengine accepting it)
        return ("transport-protocol=RTP/SAVP", *browser, *(() if crypto.kind == DTLS_SRTP else ("DTLS=off",)),
                *SDES_EXCLUDED)
    if receiver == DTLS:
        return ("transport-protocol=UDP/TLS/RTP/SAVP", "SDES-off", *browser)
    raise ValueError(f"unknown media security {receiver!r}; use one of {SECURITIES}")


def decide(op: str, crypto: SdpCrypto, sender: str, receiver: str) -> Decision:
    """The flags for this SDP (op OFFER or ANSWER), or the reason it is refused.

    An offer is refused when its crypto is broken, or when its sender must encrypt and
    offered plain RTP; an answer likewise (the caller of decide() cannot 488 a reply: it
    ends the call instead). Answers get no flags: rtpengine answers each party in the
    transport it offered or was offered.
    """
    if crypto.problem:
        return Decision(refusal=f"{BAD_CRYPTO}: {crypto.problem}")
    if sender in ENCRYPTED_ONLY and crypto.kind == PLAIN:
        return Decision(refusal=SRTP_REQUIRED)
    if op == OFFER:
        flags = receiver_flags(receiver, crypto)
        return Decision(flags=flags) if flags else NOTHING
    if op == ANSWER:
        return NOTHING
    raise ValueError(f"media security decides offers and answers, not {op!r}")


def refused_reply(decision: Decision) -> sip.Reply:
    """488 with the kind of refusal (never the SDP's own text) in the reason phrase."""
    kind = SRTP_REQUIRED if decision.refusal == SRTP_REQUIRED else BAD_CRYPTO
    return sip.Reply(sip.NOT_ACCEPTABLE_HERE.code, f"{sip.NOT_ACCEPTABLE_HERE.reason} - {kind}")


@dataclass(frozen=True)
class Parties:
    """The media security of an SDP's sender and of its receiver."""
    sender: str = ANY
    receiver: str = ANY

    def swapped(self) -> Parties:
        return Parties(self.receiver, self.sender)


@dataclass(frozen=True)
class Rules:
    """Where a party's media security comes from: per extension, per SIP transport, default.

    The most specific wins: the extension's own entry, then the transport it uses (ws, wss,
    tls, ...), then the side (SBC) or media.security.
    """
    default: str = ANY
    by_transport: tuple[tuple[str, str], ...] = ()
    by_extension: tuple[tuple[str, str], ...] = ()

    # the two tables as dicts, made once (a frozen dataclass: set through object.__setattr__)
    _transports: dict[str, str] = field(init=False, repr=False, compare=False)
    _extensions: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "_transports", dict(self.by_transport))
        object.__setattr__(self, "_extensions", dict(self.by_extension))

    def of(self, extension: str, transport: str, side_default: str | None = None) -> str:
        """The media security of a party: its extension (user part), its transport."""
        found = self._extensions.get(extension) if extension else None
        if found is None:
            found = self._transports.get(transport.lower()) if transport else None
        if found is None:
            found = side_default if side_default is not None else self.default
        return found

    def parties(self, sender: tuple[str, str], receiver: tuple[str, str],
                sides: tuple[str | None, str | None] = (None, None)) -> Parties:
        """Parties from (extension, transport) of each, with each one's side default."""
        return Parties(self.of(*sender, sides[0]), self.of(*receiver, sides[1]))


def rules_in_use(rules: Rules, side_securities: tuple[str, ...] = (), transports: frozenset[str] | None = None) -> bool:
    """Whether any party can ever need something other than ANY (else: no security part at all).

    `transports`: the SIP transports the proxy listens on (a rule for another never applies).
    """
    if rules.default != ANY or any(s and s != ANY for s in side_securities):
        return True
    if any(v != ANY for _, v in rules.by_extension):
        return True
    return any(v != ANY and (transports is None or t in transports) for t, v in rules.by_transport)
