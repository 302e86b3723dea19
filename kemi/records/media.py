"""An anchored call's media figures, from rtpengine's answer to an ng `query` (rtpengine_query_v).

Per party (the call's tags): the RTP it sent, as rtpengine received it (each RTP stream's
`stats`, summed over the audio and video media), and what the party reported receiving in its
RTCP receiver reports, which rtpengine keeps per reporting SSRC (`SSRC` section:
"cumulative loss", "average MOS" {MOS x10, jitter ms}, "lowest MOS"). A party whose phone sends
no RTCP receiver reports has no loss, jitter or MOS (rtpengine computes MOS from them only).

rtpengine 10.5 names a stream's SSRC `"SSRC": N`; 12.x lists `"ingress SSRCs": [{"SSRC": N}]`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

MOS_SCALE = 10                 # rtpengine's MOS is an integer, tenths


@dataclass(frozen=True)
class PartyMedia:
    rtp_packets: int | None = None    # None: rtpengine had no such party
    rtp_bytes: int | None = None
    lost: int | None = None         # packets lost on the way to this party (its RTCP)
    jitter_ms: int | None = None
    mos: float | None = None        # average MOS of what this party received
    mos_min: float | None = None

    def columns(self, party: str) -> dict[str, object]:
        """column name -> value (int, or float for MOS) for the set values (party "a" or "b":
        schema.EXTRAS). object, not `int | float` nor the inferred `float | None`: mypy reads
        those as float, and compiled (make compile) every int became a float (148 written as
        "148.0")."""
        values: dict[str, object] = {"rtp_packets": self.rtp_packets, "rtp_bytes": self.rtp_bytes, "lost": self.lost,
                  "jitter_ms": self.jitter_ms, "mos": self.mos, "mos_min": self.mos_min}
        return {f"{party}_{k}": v for k, v in values.items() if v is not None}


NO_MEDIA = PartyMedia()


def parse_query(text: str | None) -> dict | None:
    """rtpengine's query answer as JSON text (rtpengine_query_v "j"), or None if unusable."""
    if not text:
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("result") not in (None, "ok") or not isinstance(doc.get("tags"), dict):
        return None
    return doc


def party_media(doc: dict, tag: str | None) -> PartyMedia:
    """The figures of the party whose SIP tag is `tag` (NO_MEDIA when rtpengine has no such tag)."""
    party = doc.get("tags", {}).get(tag or "")
    if not isinstance(party, dict):
        return NO_MEDIA
    packets = octets = 0
    ssrcs: list[int] = []
    for media in _list(party.get("medias")):
        for stream in _list(media.get("streams") if isinstance(media, dict) else None):
            if not isinstance(stream, dict) or "RTP" not in _list(stream.get("flags")):
                continue
            stats = stream["stats"] if isinstance(stream.get("stats"), dict) else {}
            packets += _int(stats.get("packets"))
            octets += _int(stats.get("bytes"))
            ssrcs += _stream_ssrcs(stream)
    reports = [doc["SSRC"][str(s)] for s in ssrcs
               if isinstance(doc.get("SSRC"), dict) and isinstance(doc["SSRC"].get(str(s)), dict)]
    if not reports:
        return PartyMedia(packets, octets)
    lost = sum(_int(r.get("cumulative loss")) for r in reports)
    averages = [r["average MOS"] for r in reports if isinstance(r.get("average MOS"), dict)]
    jitters = [_int(a.get("jitter")) for a in averages]
    mos = [_int(a.get("MOS")) for a in averages if _int(a.get("MOS")) > 0]
    lowest = [_int(r["lowest MOS"].get("MOS")) for r in reports
              if isinstance(r.get("lowest MOS"), dict) and _int(r["lowest MOS"].get("MOS")) > 0]
    return PartyMedia(packets, octets, lost=lost,
                      jitter_ms=round(sum(jitters) / len(jitters)) if jitters else None,
                      mos=round(sum(mos) / len(mos) / MOS_SCALE, 1) if mos else None,
                      mos_min=min(lowest) / MOS_SCALE if lowest else None)


def call_media(text: str | None, a_tag: str | None, b_tag: str | None) -> tuple[PartyMedia, PartyMedia] | None:
    """(a's figures, b's figures) from a query answer; None when the answer is unusable."""
    doc = parse_query(text)
    if doc is None:
        return None
    return party_media(doc, a_tag), party_media(doc, b_tag)


def _stream_ssrcs(stream: dict) -> list[int]:
    if isinstance(stream.get("SSRC"), int):
        return [stream["SSRC"]]
    return [s["SSRC"] for s in _list(stream.get("ingress SSRCs"))
            if isinstance(s, dict) and isinstance(s.get("SSRC"), int)]


def _list(value) -> list:
    return value if isinstance(value, list) else []


def _int(value) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0
