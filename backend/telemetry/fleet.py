"""The reference of the fleet commitment in Python: batches, leaves, the committer's log.

A batch (one window of the whole fleet's readings) is a Merkle tree in OpenZeppelin's
conventions (sorted pairs, ``backend.telemetry.MerkleTree``) over leaves
``keccak256(abi.encode(orderId, device, readingDigest, leafIndex))``: each leaf is bound
to its order, its device and its position, so a reading altered, dropped or moved
changes the root. A committer's log is an append-only Merkle tree of depth 32 over
``keccak256(abi.encode(batchSeq, root, count))`` entries, ordered pairs, empty leaves
zero — what ``QualityVerification`` keeps as a frontier. The oracle's batcher and the
API's proofs follow this module (docs/contracts-integration.md); it lives in
backend.telemetry so the simulator can use it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi import encode as abi_encode

from backend.telemetry.eip712 import Domain, reading_digest
from backend.telemetry.keccak import keccak
from backend.telemetry.merkle import MerkleTree
from backend.telemetry.reading import SignedReading

LOG_DEPTH = 32
_ZEROS = [bytes(32)]
for _ in range(LOG_DEPTH):
    _ZEROS.append(keccak(_ZEROS[-1] + _ZEROS[-1]))


@dataclass(frozen=True, kw_only=True)
class FleetProof:
    """Mirror of ``IQualityVerification.FleetProof``: a reading's place in a batch and the
    batch's place in the committer's log."""

    batch_seq: int
    root: bytes
    count: int
    log_index: int
    log_proof: Sequence[bytes]
    leaf_index: int
    reading_proof: Sequence[bytes]

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.batch_seq,
            self.root,
            self.count,
            self.log_index,
            list(self.log_proof),
            self.leaf_index,
            list(self.reading_proof),
        )


def fleet_leaf(order_id: int, device: str, digest: bytes, leaf_index: int) -> bytes:
    return keccak(
        abi_encode(
            ["uint256", "address", "bytes32", "uint256"], [order_id, device, digest, leaf_index]
        )
    )


def log_entry(batch_seq: int, root: bytes, count: int) -> bytes:
    return keccak(abi_encode(["uint64", "bytes32", "uint32"], [batch_seq, root, count]))


def fleet_tree(leaves: Sequence[tuple[int, str, bytes]]) -> MerkleTree:
    """The fleet tree over (order id, device, reading digest) in leaf order."""
    return MerkleTree(
        [
            fleet_leaf(order_id, device, digest, i)
            for i, (order_id, device, digest) in enumerate(leaves)
        ]
    )


@dataclass
class FleetBatch:
    """One window of the fleet's readings, in committed order."""

    readings: Sequence[SignedReading]
    domain: Domain
    tree: MerkleTree = field(init=False)

    def __post_init__(self) -> None:
        self.tree = MerkleTree(self.leaves())

    def leaves(self) -> list[bytes]:
        return [
            fleet_leaf(s.reading.order_id, s.device, reading_digest(s.reading, self.domain), i)
            for i, s in enumerate(self.readings)
        ]

    @property
    def root(self) -> bytes:
        return self.tree.root

    def __len__(self) -> int:
        return len(self.readings)


@dataclass
class FleetLog:
    """A committer's log of (batchSeq, root, count) entries."""

    entries: list[tuple[int, bytes, int]] = field(default_factory=list)

    def append(self, batch_seq: int, root: bytes, count: int) -> int:
        self.entries.append((batch_seq, root, count))
        return len(self.entries) - 1

    def _levels(self) -> list[list[bytes]]:
        level = [log_entry(*e) for e in self.entries]
        levels = [level]
        for h in range(LOG_DEPTH):
            nxt = []
            for i in range(0, len(level), 2):
                right = level[i + 1] if i + 1 < len(level) else _ZEROS[h]
                nxt.append(keccak(level[i] + right))
            level = nxt or [_ZEROS[h + 1]]
            levels.append(level)
        return levels

    def root(self) -> bytes:
        return self._levels()[LOG_DEPTH][0]

    def proof(self, index: int) -> list[bytes]:
        """The 32 siblings from entry ``index`` to the log's current root."""
        levels = self._levels()
        out = []
        for h in range(LOG_DEPTH):
            sibling = index ^ 1
            level = levels[h]
            out.append(level[sibling] if sibling < len(level) else _ZEROS[h])
            index //= 2
        return out

    def fleet_proof(self, log_index: int, batch: FleetBatch, leaf_index: int) -> FleetProof:
        batch_seq, root, count = self.entries[log_index]
        return FleetProof(
            batch_seq=batch_seq,
            root=root,
            count=count,
            log_index=log_index,
            log_proof=self.proof(log_index),
            leaf_index=leaf_index,
            reading_proof=batch.tree.proof(leaf_index),
        )
