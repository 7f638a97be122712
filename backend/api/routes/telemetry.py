"""Per-order telemetry: readings, Merkle commitments and per-reading proofs."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from backend.api import convert, queries
from backend.api.deps import ContextDep, CurrentParty, OrderIdPath, SessionDep, visible_order
from backend.api.errors import READ, ApiError, not_found, responses
from backend.api.schemas import (
    MAX_JSON_INT,
    Address,
    CommitmentPublic,
    CommitmentsPublic,
    ContractReading,
    Digits,
    ProofPublic,
    ReadingsPublic,
    Uint64,
)
from backend.domain.reading import Reading
from backend.store.models import CommitmentRow, ReadingRow
from backend.telemetry import MerkleTree, leaf_hash, verify_proof

router = APIRouter(prefix="/orders", tags=["telemetry"])


@router.get("/{order_id}/telemetry", response_model=ReadingsPublic, responses=responses(*READ))
async def list_readings(
    session: SessionDep,
    party: CurrentParty,
    order_id: OrderIdPath,
    device: Annotated[Address | None, Query()] = None,
    since: Annotated[
        Uint64 | None, Query(description="From this unix second (inclusive)."), Digits
    ] = None,
    until: Annotated[
        Uint64 | None, Query(description="Before this unix second (exclusive)."), Digits
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000), Digits] = 100,
    offset: Annotated[int, Query(ge=0, le=100_000_000), Digits] = 0,
) -> dict[str, Any]:
    """The order's signed readings by time (then arrival), one page at a time."""
    visible_order(session, party, order_id)
    rows, count = queries.readings(
        session, order_id, device=device, since=since, until=until, limit=limit, offset=offset
    )
    return {"data": [convert.reading(r) for r in rows], "count": count}


@router.get("/{order_id}/commitments", response_model=CommitmentsPublic, responses=responses(*READ))
async def list_commitments(
    session: SessionDep,
    party: CurrentParty,
    order_id: OrderIdPath,
    limit: Annotated[int, Query(ge=1, le=500), Digits] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000), Digits] = 0,
) -> CommitmentsPublic:
    """The order's Merkle batch commitments, by batch sequence number."""
    visible_order(session, party, order_id)
    rows, count = queries.commitments(session, order_id, limit=limit, offset=offset)
    return CommitmentsPublic(data=[CommitmentPublic.model_validate(r) for r in rows], count=count)


@router.get(
    "/{order_id}/commitments/{batch_seq}",
    response_model=CommitmentPublic,
    responses=responses(*READ),
)
async def get_commitment(
    session: SessionDep,
    party: CurrentParty,
    order_id: OrderIdPath,
    batch_seq: Annotated[int, Path(ge=0, le=MAX_JSON_INT), Digits],
) -> CommitmentPublic:
    visible_order(session, party, order_id)
    row = queries.commitment(session, order_id, batch_seq)
    if row is None:
        raise not_found(f"commitment {batch_seq} of order {order_id}")
    return CommitmentPublic.model_validate(row)


class _TreeCache:
    """Recently built trees by (order, batch, root): a proof page does not rebuild them."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._trees: OrderedDict[tuple[int, int, bytes], tuple[MerkleTree, dict[int, int]]] = (
            OrderedDict()
        )

    def get(self, key: tuple[int, int, bytes]) -> tuple[MerkleTree, dict[int, int]] | None:
        with self._lock:
            hit = self._trees.get(key)
            if hit is not None:
                self._trees.move_to_end(key)
            return hit

    def put(self, key: tuple[int, int, bytes], value: tuple[MerkleTree, dict[int, int]]) -> None:
        with self._lock:
            self._trees[key] = value
            while len(self._trees) > self._size:
                self._trees.popitem(last=False)


_trees = _TreeCache()


def _tree(session: SessionDep, commitment: CommitmentRow) -> tuple[MerkleTree, dict[int, int]]:
    """The commitment's tree, rebuilt from its stored leaf order, and reading id → leaf index."""
    key = (commitment.order_id, commitment.batch_seq, commitment.root)
    hit = _trees.get(key)
    if hit is not None:
        return hit
    ids = [int(i) for i in commitment.reading_ids]
    rows = queries.readings_by_ids(session, ids)
    missing = [i for i in ids if i not in rows]
    if missing:
        raise ApiError(
            500,
            "commitment_inconsistent",
            f"commitment {commitment.batch_seq} of order {commitment.order_id} names "
            f"{len(missing)} reading(s) the database does not hold",
        )
    tree = MerkleTree([leaf_hash(rows[i].digest) for i in ids])
    if tree.root != commitment.root:
        raise ApiError(
            500,
            "commitment_inconsistent",
            f"rebuilt root of commitment {commitment.batch_seq} of order "
            f"{commitment.order_id} differs from the stored root",
        )
    value = (tree, {rid: idx for idx, rid in enumerate(ids)})
    _trees.put(key, value)
    return value


@router.get(
    "/{order_id}/readings/{device}/{seq}/proof",
    response_model=ProofPublic,
    responses=responses(401, 404, 409, 422),
)
async def reading_proof(
    session: SessionDep,
    ctx: ContextDep,
    party: CurrentParty,
    order_id: OrderIdPath,
    device: Annotated[Address, Path()],
    seq: Annotated[int, Path(ge=0, le=2**32 - 1), Digits],
) -> ProofPublic:
    """A Merkle proof that a committed reading is in its batch.

    Pass ``order_id``, ``batch_seq``, ``reading``, ``signature`` and ``proof`` to
    ``QualityVerification.verifyCommittedReading``. 409 ``not_committed`` while the
    reading waits for its batch.
    """
    visible_order(session, party, order_id)
    row: ReadingRow | None = queries.reading_by_seq(session, order_id, device, seq)
    if row is None:
        raise not_found(f"reading {seq} of device {device} on order {order_id}")
    if row.batch_seq is None:
        raise ApiError(409, "not_committed", "the reading is not in a Merkle commitment yet")
    commitment = queries.commitment(session, order_id, row.batch_seq)
    if commitment is None:
        raise ApiError(409, "not_committed", "the reading's commitment is not stored yet")
    tree, index_of = _tree(session, commitment)
    index = index_of.get(row.id)
    if index is None:
        raise ApiError(
            500,
            "commitment_inconsistent",
            f"reading {row.id} claims batch {row.batch_seq} but is not among its leaves",
        )
    proof = tree.proof(index)
    leaf = leaf_hash(row.digest)
    assert verify_proof(proof, tree.root, leaf)
    return ProofPublic(
        order_id=order_id,
        batch_seq=commitment.batch_seq,
        root="0x" + commitment.root.hex(),
        leaf_index=index,
        leaf="0x" + leaf.hex(),
        device=row.device,
        reading=ContractReading.model_validate(Reading.of(row).to_wire()),
        signature="0x" + row.signature.hex(),
        proof=["0x" + p.hex() for p in proof],
        verifying_contract=ctx.verifying_contract,
    )
