"""The flag strings handed to rtpengine_offer / rtpengine_answer / rtpengine_delete.

Plain values in, one string out; no KSR. The routes decide the values (which profile, is
the sender behind NAT, which interfaces), this module only spells them for rtpengine:

    build_flags(OFFER, profile, nat=False)
        -> "replace-origin replace-session-connection trust-address"
    build_flags(OFFER, profile, nat=True, ingress="public", egress="private")
        -> "... SIP-source-address direction=public direction=private"

`ingress` is the rtpengine interface the sender of this SDP reaches us on, `egress` the one
its peer will use. rtpengine wants direction= exactly twice, ingress first. It matters on
offers AND answers: rtpengine 10.5 applies the pair to an answer too (measured: an answer
carrying the offer's pair, instead of the answerer's, moves the offerer to the other
interface and allocates new ports). So for an answer, `ingress` is the ANSWERER's interface;
or pass none and rtpengine keeps what the offer set. A delete ignores the pair.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

OFFER = "offer"
ANSWER = "answer"
DELETE = "delete"
OPERATIONS = (OFFER, ANSWER, DELETE)

# where the media address comes from: the SDP (no NAT) or the SIP packet's source (NAT)
TRUST_SDP = "trust-address"
SIP_SOURCE = "SIP-source-address"


class Profile(Protocol):
    """What the builder reads of a profile (kemi.media.settings.MediaProfile has these)."""
    @property
    def flags(self) -> tuple[str, ...]: ...
    @property
    def rtcp_mux(self) -> tuple[str, ...]: ...
    @property
    def codec_mask(self) -> tuple[str, ...]: ...
    @property
    def codec_strip(self) -> tuple[str, ...]: ...
    @property
    def codec_transcode(self) -> tuple[str, ...]: ...


def build_flags(op: str, profile: Profile, *, nat: bool = False, ingress: str | None = None,
                egress: str | None = None, extra: Iterable[str] = ()) -> str:
    """The space-separated rtpengine flags for `op` (OFFER, ANSWER or DELETE)."""
    if op not in OPERATIONS:
        raise ValueError(f"unknown rtpengine operation {op!r}; use one of {OPERATIONS}")
    if (ingress is None) != (egress is None):
        raise ValueError("direction needs both interfaces: ingress and egress")
    for name in (ingress, egress):
        if name is not None and (not name or any(c.isspace() for c in name)):
            raise ValueError(f"bad rtpengine interface name {name!r}")
    out: list[str] = []
    if op != DELETE:
        out += profile.flags
        out.append(SIP_SOURCE if nat else TRUST_SDP)
        if ingress is not None:
            out += [f"direction={ingress}", f"direction={egress}"]
    if op == OFFER:
        out += [f"rtcp-mux-{mode}" for mode in profile.rtcp_mux]
        out += [f"codec-mask={c}" for c in profile.codec_mask]
        out += [f"codec-strip={c}" for c in profile.codec_strip]
        out += [f"codec-transcode={c}" for c in profile.codec_transcode]
    out += extra
    return " ".join(_unique(out))


def _unique(items: list[str]) -> list[str]:
    """Keep the first of repeated flags, except direction= which is meant to repeat."""
    seen, out = set(), []
    for item in items:
        if item.startswith("direction=") or item not in seen:
            out.append(item)
            seen.add(item)
    return out
