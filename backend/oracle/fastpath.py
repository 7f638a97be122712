"""Make eth_utils' keccak (address checksums) use safe-pysha3 instead of pycryptodome.

``decode_message`` and signature recovery checksum two addresses per reading
through eth_utils, whose eth_hash backend picks pycryptodome (~17 µs per hash)
even when safe-pysha3 (~2.5 µs) is installed (MEASURED.md). At thousands of
readings per second that was a third of the oracle's CPU (bench/ingest.py
profile). Switching the backend changes no result: both are Keccak-256, and the
switch is verified against a known digest before it is made.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

_EMPTY_KECCAK = bytes.fromhex("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
_done = False


def use_fast_keccak() -> bool:
    """Point eth_hash's shared hasher at pysha3; returns True when it is in use."""
    global _done
    if _done:
        return True
    try:
        from eth_hash.auto import keccak as shared
        from eth_hash.backends.pysha3 import keccak256
    except ImportError:  # pragma: no cover - depends on the installed wheels
        log.info("safe-pysha3 not installed: address checksums use eth_hash's default backend")
        return False
    if keccak256(b"") != _EMPTY_KECCAK:  # pragma: no cover - a broken wheel
        log.warning("pysha3 keccak gives a wrong digest; keeping eth_hash's default backend")
        return False
    shared.hasher = keccak256  # type: ignore[assignment]
    _done = True
    return True
