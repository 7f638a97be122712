"""The anchoring payload and the check of a served log against an anchored head."""

from __future__ import annotations

import dataclasses

import pytest

from backend.domain.sharing import Disclosure
from backend.sharing import anchor
from backend.sharing.disclosures import GENESIS, Head, entry_hash


def chain(n: int) -> list[Disclosure]:
    out, prev = [], GENESIS
    for seq in range(1, n + 1):
        draft = Disclosure(
            seq, 100 + seq, "v", "0x" + "a" * 40, "US", "EU", 1, "medium", 3, "r", prev, b""
        )
        e = dataclasses.replace(draft, entry_hash=entry_hash(draft))
        out.append(e)
        prev = e.entry_hash
    return out


def test_payload_round_trip_and_refusals() -> None:
    head = Head(7, b"\x42" * 32)
    data = anchor.payload(head)
    assert len(data) == anchor.PAYLOAD_LENGTH and anchor.parse(data) == head
    assert anchor.parse(data[:-1]) is None and anchor.parse(b"XXXX\x01" + data[5:]) is None
    with pytest.raises(ValueError):
        anchor.payload(Head(1, b"\x00" * 31))


def test_a_log_is_checked_against_its_anchored_head() -> None:
    log = chain(5)
    anchored = Head(3, log[2].entry_hash)
    assert anchor.check(log, anchored).ok
    # entries after the anchor may be added
    assert anchor.check(chain(6), anchored).ok
    # a log cut back before the anchor, or rebuilt with other entries, fails at the anchor
    cut = anchor.check(log[:2], anchored)
    assert not cut.ok and cut.first_bad_seq == 3
    rebuilt = [dataclasses.replace(e, viewer="w") for e in log]
    prev = GENESIS
    for i, e in enumerate(rebuilt):
        e = dataclasses.replace(e, prev_hash=prev)
        rebuilt[i] = dataclasses.replace(e, entry_hash=entry_hash(e))
        prev = rebuilt[i].entry_hash
    v = anchor.check(rebuilt, anchored)
    assert not v.ok and v.first_bad_seq == 3 and "anchored" in (v.problem or "")
