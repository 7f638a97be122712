"""A device's retention buffer: readings kept until a receipt names them."""

from __future__ import annotations

import pytest

from iot_simulator import PublishError, Retention
from iot_simulator.publisher import RetentionBuffer


def filled(n: int, cap: int = 100) -> RetentionBuffer:
    b = RetentionBuffer("0xdev", cap)
    for seq in range(1, n + 1):
        b.hold(7, seq, "t", b"x" * 10, now=0.0)
    return b


def test_confirm_forgets_exactly_the_named_seqs_of_that_order() -> None:
    b = filled(10)
    b.hold(8, 3, "t", b"y" * 10, now=0.0)  # same seq, another order
    assert b.bytes == 11 * 11
    assert b.confirm(7, ((1, 3), (6, 6))) == 4
    assert [k for k in b.held] == [(7, 4), (7, 5), (7, 7), (7, 8), (7, 9), (7, 10), (8, 3)]
    assert b.confirm(7, ((1, 3),)) == 0  # a repeated receipt changes nothing
    assert b.confirm(8, ((3, 3),)) == 1
    assert b.bytes == 6 * 11


def test_a_full_buffer_drops_the_oldest() -> None:
    b = filled(3, cap=3)
    assert b.hold(7, 4, "t", b"x" * 10, now=0.0) is False
    assert list(b.held) == [(7, 2), (7, 3), (7, 4)] and b.dropped == 1
    assert b.hold(7, 4, "t", b"x" * 10, now=0.0) is True  # held already: nothing dropped
    assert b.dropped == 1 and b.bytes == 3 * 11


def test_resends_back_off_and_a_reconnect_resends_everything() -> None:
    b = filled(2)
    assert b.due(now=9.9, after_s=10, everything=False) == []
    assert len(b.due(now=10.0, after_s=10, everything=False)) == 2  # attempt 1
    assert b.due(now=29.0, after_s=10, everything=False) == []  # next after 2 × 10 s
    assert len(b.due(now=30.0, after_s=10, everything=False)) == 2
    assert len(b.due(now=30.1, after_s=10, everything=True)) == 2
    late = filled(1)
    late.held[(7, 1)].attempts = 50
    assert late.due(now=319, after_s=10, everything=False) == []
    # capped at 32 × after_s: due after 320 s, not after 2**50 × 10 s
    assert [h.attempts for h in late.due(now=320, after_s=10, everything=False)] == [51]


def test_retention_settings_are_checked() -> None:
    with pytest.raises(PublishError, match="max_readings"):
        Retention(max_readings=0)
    with pytest.raises(PublishError, match="resend_after_s"):
        Retention(resend_after_s=0)
