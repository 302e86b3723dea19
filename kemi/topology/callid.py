"""The Call-ID a hidden call's far side sees: a keyed, deterministic, reversible mask.

topos strips Via, Record-Route and Contact but passes the Call-ID (topos 5.6 has no Call-ID
masking at all; 6.0's needs topoh, whose "encryption" is base64 over a key-shuffled alphabet:
a substitution that a few known Call-IDs break). A caller's Call-ID often names its host
("1-4711@198.51.100.10"), so it is masked here, stateless, with a real construction
(SIV-like, from HMAC-SHA256 only):

    tag  = HMAC(key, "t" || call_id)[:12]                 synthetic IV, and the integrity check
    body = call_id XOR HMAC(key, "s" || tag || counter)...  the keystream
    mask = PREFIX || base64url(tag || body)

The same Call-ID always gives the same mask (every message of a dialog, retransmissions, every
node of a cluster and every restart with the same secret), and only the key holder can undo it:
unmask() recomputes the tag and refuses anything it did not make. The key is derived from the
secret that signs the Record-Route (security.route_secret, or cluster.secret).
"""
from __future__ import annotations

import base64
import hashlib
import hmac

PREFIX = "kth1-"                 # a masked Call-ID starts with this (version 1 of the construction)
TAG_BYTES = 12                   # 96 bits: collisions and forgeries are out of reach
# topos keeps the Call-ID it sends in a VARCHAR(255): a longer mask would not be stored
MAX_MASKED = 255
MAX_CALL_ID = (MAX_MASKED - len(PREFIX)) // 4 * 3 - TAG_BYTES     # 174 bytes
KEY_LABEL = b"kemi topology call-id mask v1"


class CallIdMask:
    def __init__(self, secret: str):
        self.key = hmac.new(secret.encode(), KEY_LABEL, hashlib.sha256).digest()
        self._keyed = hmac.new(self.key, digestmod=hashlib.sha256)

    def _mac(self, data: bytes) -> bytes:
        mac = self._keyed.copy()
        mac.update(data)
        return mac.digest()

    def _stream(self, tag: bytes, length: int) -> bytes:
        out = bytearray()
        counter = 0
        while len(out) < length:
            out += self._mac(b"s" + tag + counter.to_bytes(4, "big"))
            counter += 1
        return bytes(out[:length])

    def can_mask(self, call_id: str) -> bool:
        return 0 < len(call_id.encode("utf-8", "surrogateescape")) <= MAX_CALL_ID

    def mask(self, call_id: str) -> str:
        """The masked Call-ID (ValueError when it is empty or longer than MAX_CALL_ID bytes)."""
        plain = call_id.encode("utf-8", "surrogateescape")
        if not 0 < len(plain) <= MAX_CALL_ID:
            raise ValueError(f"a Call-ID of {len(plain)} bytes cannot be masked (1 to {MAX_CALL_ID})")
        tag = self._mac(b"t" + plain)[:TAG_BYTES]
        body = bytes(a ^ b for a, b in zip(plain, self._stream(tag, len(plain)), strict=True))
        return PREFIX + base64.urlsafe_b64encode(tag + body).decode().rstrip("=")

    def unmask(self, value: str) -> str | None:
        """The Call-ID `value` masks; None when `value` is no mask of this key's."""
        if not value.startswith(PREFIX):
            return None
        text = value[len(PREFIX):]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (ValueError, TypeError):
            return None
        if len(raw) <= TAG_BYTES:
            return None
        tag, body = raw[:TAG_BYTES], raw[TAG_BYTES:]
        plain = bytes(a ^ b for a, b in zip(body, self._stream(tag, len(body)), strict=True))
        if not hmac.compare_digest(self._mac(b"t" + plain)[:TAG_BYTES], tag):
            return None
        return plain.decode("utf-8", "surrogateescape")

    def is_masked(self, value: str) -> bool:
        """Cheap pre-check before unmask(): does it look like one of ours?"""
        return value.startswith(PREFIX)
