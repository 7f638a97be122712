"""Bursts of transactions through one sender, for the tests of its in-flight bound."""

from __future__ import annotations

from backend.chain.errors import ChainError
from backend.chain.sender import TxResult, TxSender


def submit_burst(
    sender: TxSender, to: str, data: bytes, *, count: int, bound: int, gas: int
) -> tuple[int, list[TxResult | ChainError]]:
    """Submit ``count`` copies of one call with at most ``bound`` unconfirmed at a time
    (the sender's own bound is restored afterwards); the most that were ever in flight
    at once, and what :meth:`~TxSender.wait_all` gave for each."""
    old, sender.max_in_flight = sender.max_in_flight, bound
    try:
        peak = 0
        for _ in range(count):
            sender.submit(to, data, gas=gas)
            peak = max(peak, sender.in_flight)
        return peak, sender.wait_all()
    finally:
        sender.max_in_flight = old
