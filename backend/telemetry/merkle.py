"""Merkle trees over reading digests, verifiable by OpenZeppelin ``MerkleProof``.

Conventions (DESIGN.md §3): leaf = ``keccak256(abi.encode(readingDigest))``,
which for one bytes32 is ``keccak256(digest)``; an internal node hashes its two
children sorted (``Hashes.commutativeKeccak256``). Leaves stay in the order
given (the commitment's stored leaf order); an odd node at the end of a level is
carried up unchanged. Proofs are lists of sibling hashes, bottom up.
"""

from __future__ import annotations

from collections.abc import Sequence

from backend.telemetry.keccak import keccak


def leaf_hash(reading_digest: bytes) -> bytes:
    return keccak(reading_digest)


def _node(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


class MerkleTree:
    """A tree over leaf hashes (use :func:`leaf_hash` on reading digests)."""

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        self.levels: list[list[bytes]] = [list(leaves)]
        while len(self.levels[-1]) > 1:
            level = self.levels[-1]
            nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            self.levels.append(nxt)

    @classmethod
    def from_digests(cls, digests: Sequence[bytes]) -> MerkleTree:
        return cls([leaf_hash(d) for d in digests])

    @property
    def root(self) -> bytes:
        return self.levels[-1][0]

    def __len__(self) -> int:
        return len(self.levels[0])

    def proof(self, index: int) -> list[bytes]:
        """Sibling hashes from leaf ``index`` up to the root."""
        if not 0 <= index < len(self):
            raise IndexError(f"leaf {index} not in a tree of {len(self)}")
        out: list[bytes] = []
        for level in self.levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            index //= 2
        return out


def verify_proof(proof: Sequence[bytes], root: bytes, leaf: bytes) -> bool:
    """The same computation as ``MerkleProof.verify``."""
    node = leaf
    for sibling in proof:
        node = _node(node, sibling)
    return node == root
