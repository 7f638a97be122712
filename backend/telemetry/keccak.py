"""A fast keccak-256.

safe-pysha3 hashes a reading's 320 bytes in ~2.5 µs; eth_hash's default
pycryptodome backend takes ~17 µs. The oracle hashes every reading twice, so
the fast one is used directly and eth_hash only as a fallback.
"""

from __future__ import annotations

try:
    from sha3 import keccak_256 as _keccak_256

    def keccak(data: bytes) -> bytes:
        digest: bytes = _keccak_256(data).digest()  # sha3 ships no type information
        return digest

except ImportError:  # pragma: no cover - depends on the installed wheels
    from eth_hash.auto import keccak as _eth_keccak

    def keccak(data: bytes) -> bytes:
        return _eth_keccak(data)
