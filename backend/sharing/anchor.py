"""Anchoring the disclosure log's head: the bytes to publish, and the regulator's check.

The head ``(seq, hash)`` is published where the log's operator cannot take it back —
on chain, from the oracle's account, with the next fleet commitment (docs/sharing.md,
"Anchoring"). :func:`payload` is what to publish (the calldata of a zero-value
transaction to the oracle's own address, or an event's data); :func:`parse` reads it
back from a transaction; :func:`check` verifies a served log against an anchored head:
the chain verifies from its first entry and entry ``seq`` still has the anchored hash,
so nothing up to the anchor was changed, removed or replaced.

Sending is not done here (only the chain layer's sender sends transactions): the
oracle's ``anchor_disclosures`` chain action sends :func:`payload` after a fleet
commitment, and ``trustship disclosures verify --anchor-tx`` reads it back, taking it as
an anchor only from an oracle of the deployment.
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.domain.sharing import Disclosure
from backend.sharing.disclosures import Head, Verification, verify_chain

#: What an anchoring payload starts with ("TrustShip disclosure log", version 1).
MAGIC = b"TSDL\x01"
PAYLOAD_LENGTH = len(MAGIC) + 8 + 32


def payload(head: Head) -> bytes:
    """``MAGIC`` ‖ seq (uint64, big-endian) ‖ hash (32 bytes)."""
    if len(head.hash) != 32 or not 0 <= head.seq < 2**64:
        raise ValueError("a head is a seq (uint64) and a 32-byte hash")
    return MAGIC + head.seq.to_bytes(8, "big") + head.hash


def parse(data: bytes) -> Head | None:
    """The head an anchoring payload carries (None: not one)."""
    if len(data) != PAYLOAD_LENGTH or not data.startswith(MAGIC):
        return None
    body = data[len(MAGIC) :]
    return Head(int.from_bytes(body[:8], "big"), bytes(body[8:]))


def check(chain: Sequence[Disclosure], anchored: Head) -> Verification:
    """The log's verification, failed also when it no longer reaches the anchored head."""
    v = verify_chain(chain)
    if not v.ok or anchored.seq == 0:
        return v
    at = next((e for e in chain if e.seq == anchored.seq), None)
    if at is None:
        return Verification(
            False, v.entries, v.head, anchored.seq, "the log ends before the anchored head"
        )
    if at.entry_hash != anchored.hash:
        return Verification(
            False, v.entries, v.head, anchored.seq, "the entry differs from the anchored head"
        )
    return v
