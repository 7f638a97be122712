"""Per-order telemetry: readings, the fleet commitments that hold them, per-reading proofs."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Annotated

from fastapi import APIRouter, Path, Query

from backend.api import convert, queries
from backend.api.deps import (
    ContextDep,
    CurrentParty,
    OrderIdPath,
    SessionDep,
    visible_owners,
)
from backend.api.errors import READ, ApiError, not_found, responses
from backend.api.lean import LeanJSON, owners_of_rows
from backend.api.pages import OrderPage, order_page
from backend.api.schemas import (
    MAX_JSON_INT,
    Address,
    CertificatePublic,
    CommitmentPublic,
    CommitmentsPublic,
    ContractReading,
    Digits,
    ProofPublic,
    ReadingCursor,
    ReadingsPublic,
    Uint64,
    reading_position,
)
from backend.api.sharing import PolicyRoute
from backend.domain.reading import Reading
from backend.store import repositories as repo
from backend.store.models import CommitmentRow, ReadingRow
from backend.telemetry import MerkleTree, verify_proof
from backend.telemetry.fleet import FleetLog, fleet_leaf, fleet_tree

router = APIRouter(prefix="/orders", tags=["telemetry"], route_class=PolicyRoute)

CommitmentsPage = Annotated[OrderPage, order_page(most=500, default=100)]


@router.get("/{order_id}/telemetry", response_model=ReadingsPublic, responses=responses(*READ))
async def list_readings(
    ctx: ContextDep,
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
    after: Annotated[ReadingCursor | None, Query()] = None,
) -> LeanJSON:
    """The order's signed readings by time (then arrival), one page at a time."""
    with ctx.read_sessions() as session:  # (docs/api.md, "Choices": hot reads)
        order = visible_owners(session, party, order_id)
        rows, count = queries.readings(
            session,
            order_id,
            device=device,
            since=since,
            until=until,
            limit=limit,
            offset=offset,
            after=None if after is None else reading_position(after),
        )
    following = convert.reading_cursor(rows[-1]) if len(rows) == limit else None
    data = convert.readings(rows)
    return LeanJSON(
        {"data": data, "count": count, "next": following}, owners=owners_of_rows([order])
    )


@router.get("/{order_id}/commitments", response_model=CommitmentsPublic, responses=responses(*READ))
async def list_commitments(session: SessionDep, page: CommitmentsPage) -> CommitmentsPublic:
    """The fleet batches that hold the order's readings, by batch sequence number."""
    rows, count = queries.commitments(session, page.order_id, limit=page.limit, offset=page.offset)
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
    visible_owners(session, party, order_id)
    row = queries.commitment(session, order_id, batch_seq)
    if row is None:
        raise not_found(f"commitment {batch_seq} of order {order_id}")
    return CommitmentPublic.model_validate(row)


class _TreeCache:
    """Recently built trees by (batch, root): a proof page does not rebuild them."""

    def __init__(self, size: int = 32) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._trees: OrderedDict[tuple[int, bytes], tuple[MerkleTree, dict[int, int]]] = (
            OrderedDict()
        )

    def get(self, key: tuple[int, bytes]) -> tuple[MerkleTree, dict[int, int]] | None:
        with self._lock:
            hit = self._trees.get(key)
            if hit is not None:
                self._trees.move_to_end(key)
            return hit

    def put(self, key: tuple[int, bytes], value: tuple[MerkleTree, dict[int, int]]) -> None:
        with self._lock:
            self._trees[key] = value
            while len(self._trees) > self._size:
                self._trees.popitem(last=False)


_trees = _TreeCache()


def _inconsistent(message: str) -> ApiError:
    return ApiError(500, "commitment_inconsistent", message)


def _tree(session: SessionDep, commitment: CommitmentRow) -> tuple[MerkleTree, dict[int, int]]:
    """The fleet batch's tree, rebuilt from its stored leaf order (each leaf bound to its
    reading's order, device and place), and reading id → leaf index."""
    key = (commitment.batch_seq, commitment.root)
    hit = _trees.get(key)
    if hit is not None:
        return hit
    ids = [int(i) for i in commitment.reading_ids]
    rows = queries.readings_by_ids(session, ids)
    missing = [i for i in ids if i not in rows]
    if missing:
        raise _inconsistent(
            f"fleet batch {commitment.batch_seq} names {len(missing)} reading(s) the "
            "database does not hold"
        )
    tree = fleet_tree([(rows[i].order_id, rows[i].device, rows[i].digest) for i in ids])
    if tree.root != commitment.root:
        raise _inconsistent(
            f"rebuilt root of fleet batch {commitment.batch_seq} differs from the stored root"
        )
    value = (tree, {rid: idx for idx, rid in enumerate(ids)})
    _trees.put(key, value)
    return value


def _log(session: SessionDep, commitment: CommitmentRow) -> FleetLog:
    """The committer's fleet log rebuilt from the indexed roots (index 0, 1, … in order)."""
    assert commitment.committer is not None
    rows = repo.committed_log(session, commitment.committer)
    if [r.log_index for r in rows] != list(range(len(rows))):
        raise _inconsistent(f"the fleet log of {commitment.committer} has gaps in the index")
    log = FleetLog()
    for r in rows:
        log.append(r.batch_seq, r.root, r.reading_count)
    return log


@router.get(
    "/{order_id}/readings/{device}/{seq}/proof",
    response_model=ProofPublic,
    responses=responses(401, 403, 404, 409, 422),
)
async def reading_proof(
    session: SessionDep,
    ctx: ContextDep,
    party: CurrentParty,
    order_id: OrderIdPath,
    device: Annotated[Address, Path()],
    seq: Annotated[int, Path(ge=0, le=2**32 - 1), Digits],
) -> ProofPublic:
    """A proof that a committed reading is in its fleet batch and the batch in the
    oracle's fleet log.

    Pass ``committer``, the order's terms, ``reading``, ``signature``, ``certificate``
    and the ``FleetProof`` (``batch_seq``, ``root``, ``count``, ``log_index``,
    ``log_proof``, ``leaf_index``, ``reading_proof``) to
    ``QualityVerification.verifyFleetReading``. The log proof leads to the log's root
    as indexed now (``log_root``): ask again after a newer root. 409 ``not_committed``
    while the reading waits for its batch or the batch for its place in the log.
    """
    visible_owners(session, party, order_id)
    row: ReadingRow | None = queries.reading_by_seq(session, order_id, device, seq)
    if row is None:
        raise not_found(f"reading {seq} of device {device} on order {order_id}")
    if row.batch_seq is None:
        raise ApiError(409, "not_committed", "the reading is not in a fleet commitment yet")
    commitment = queries.commitment(session, order_id, row.batch_seq)
    if commitment is None or commitment.log_index is None or commitment.committer is None:
        raise ApiError(409, "not_committed", "the reading's fleet batch is not on chain yet")
    tree, index_of = _tree(session, commitment)
    index = index_of.get(row.id)
    if index is None:
        raise _inconsistent(
            f"reading {row.id} claims batch {row.batch_seq} but is not among its leaves"
        )
    log = _log(session, commitment)
    proof = tree.proof(index)
    leaf = fleet_leaf(order_id, row.device, row.digest, index)
    assert verify_proof(proof, tree.root, leaf)
    binding = repo.device_row(session, order_id, row.device)
    certificate = None
    if binding is not None and binding.certificate_signature is not None:
        certificate = CertificatePublic(
            order_id=order_id,
            device=binding.device,
            issuer=str(binding.issuer),
            valid_from=int(binding.valid_from or 0),
            valid_until=int(binding.valid_until or 0),
            signature="0x" + bytes(binding.certificate_signature).hex(),
        )
    return ProofPublic(
        order_id=order_id,
        committer=commitment.committer,
        batch_seq=commitment.batch_seq,
        root="0x" + commitment.root.hex(),
        count=commitment.reading_count,
        log_index=commitment.log_index,
        log_proof=["0x" + p.hex() for p in log.proof(commitment.log_index)],
        log_root="0x" + log.root().hex(),
        leaf_index=index,
        leaf="0x" + leaf.hex(),
        reading_proof=["0x" + p.hex() for p in proof],
        device=row.device,
        reading=ContractReading.model_validate(Reading.of(row).to_wire()),
        signature="0x" + row.signature.hex(),
        certificate=certificate,
        verifying_contract=ctx.verifying_contract,
    )
