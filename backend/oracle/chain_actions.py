"""The real :class:`~backend.oracle.outbox.ActionExecutor`: chain actions → contract calls.

Transactions go through backend.chain's one sender for the oracle key (nonce
tracking, receipts with a timeout, retries of transport errors only). Each typed
action (:mod:`backend.domain.actions`) becomes one contract call: a fleet root
(``commitFleetRoot``), or evidence with the order's terms (the ``orders`` row: the
contract checks them against its digest) and each device's certificate (the
``devices`` row, read from the shipment by the indexer); what a revert
means for it is classified once, in :data:`backend.domain.contract_errors.ACTION_REVERTS`:

=============================================  ==========================  =============
revert                                         for                         outcome
=============================================  ==========================  =============
QualityVerificationStaleBatch                  commit_batch                already done
QualityVerificationAlreadyBreached             prove_excursion/prove_shock already done
QualityVerificationOrderNotInTransit           evidence, arrival           already done
PurchaseOrdersInvalidState                     arrival, settle             already done
PurchaseOrdersDisputeWindow (still open)       settle                      retry later
PurchaseOrdersInvalidDeliveryTime              arrival (reading ahead of   retry later
                                               the chain's clock)
anything else                                  —                           rejected
=============================================  ==========================  =============
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session

from backend.chain.contracts import Contracts, Terms
from backend.chain.errors import RETRYABLE, ContractRevert, TransactionFailed
from backend.chain.sender import TxResult
from backend.domain.actions import (
    AnchorDisclosures,
    ChainAction,
    CommitBatch,
    ProveArrival,
    ProveExcursion,
    ProveShock,
    Settle,
)
from backend.domain.contract_errors import ActionOutcome, action_outcome
from backend.domain.reading import SignedReading, signed_reading
from backend.oracle.outbox import ActionAlreadyDone, ActionRejected, ActionRetryLater
from backend.sharing import anchor
from backend.sharing.disclosures import Head
from backend.store import repositories as repo
from backend.telemetry.certificates import DeviceCertificate, SignedCertificate

log = logging.getLogger(__name__)

#: How long an arrival proof waits for readings missing from the order's devices.
ARRIVAL_GAP_HOLD_SECS = 20.0
#: How often it looks again meanwhile (each look counts as an outbox attempt).
ARRIVAL_GAP_RETRY_SECS = 2.0


def stored_certificate(session: Session, order_id: int, device: str) -> SignedCertificate:
    """The certificate a device was bound to an order with (its ``devices`` row)."""
    row = repo.device_row(session, order_id, device)
    if row is None or row.issuer is None or row.certificate_signature is None:
        raise ActionRetryLater(f"the certificate of {device} on order {order_id} is not indexed")
    cert = DeviceCertificate(
        order_id=order_id,
        device=row.device,
        issuer=row.issuer,
        valid_from=int(row.valid_from or 0),
        valid_until=int(row.valid_until or 0),
    )
    return SignedCertificate(cert, bytes(row.certificate_signature))


class ChainExecutor:
    """Executes outbox actions as the oracle account."""

    def __init__(self, contracts: Contracts, oracle: LocalAccount) -> None:
        self.contracts = contracts
        self.oracle = oracle

    def _readings(self, session: Session, ids: Sequence[int]) -> list[SignedReading]:
        rows = repo.readings_by_ids(session, list(ids))
        if len(rows) != len(ids):
            raise ActionRejected(f"evidence readings missing from the database: {sorted(ids)}")
        return [signed_reading(r) for r in rows]

    @staticmethod
    def _terms(session: Session, order_id: int) -> Terms:
        row = repo.get_order(session, order_id)
        if row is None:
            raise ActionRetryLater(f"order {order_id} is not indexed yet")
        return Terms.of(row)

    @staticmethod
    def _certificate(session: Session, order_id: int, device: str) -> SignedCertificate:
        return stored_certificate(session, order_id, device)

    @staticmethod
    def _hold_for_missing(session: Session, action: ProveArrival, now: float | None = None) -> None:
        """Delivery ends the time for breach evidence, so an arrival proof waits while
        a device of the order misses readings (a seq gap: readings resent after an
        oracle process died, a store-and-forward flush on its way) or readings of the
        order wait in the handoff table (stored by another oracle process, not yet
        judged by the owner: a gap closed by the resent readings, before the owner
        took them), for at most :data:`ARRIVAL_GAP_HOLD_SECS` after its reading was
        stored."""
        missing = sum(row.missing() for row in repo.order_devices(session, [action.order_id]))
        unjudged = repo.handed_readings(session, action.order_id)
        if not missing and not unjudged:
            return
        rows = repo.readings_by_ids(session, list(action.reading_ids))
        stored_at = max((float(r.received_at) for r in rows), default=0.0)
        waited = (time.time() if now is None else now) - stored_at
        what = f"{missing} reading(s) missing, {unjudged} stored and not yet judged"
        if waited < ARRIVAL_GAP_HOLD_SECS:
            raise ActionRetryLater(
                f"order {action.order_id}: {what}; arrival waits "
                f"(up to {ARRIVAL_GAP_HOLD_SECS:.0f} s) for breach evidence among them",
                delay_secs=ARRIVAL_GAP_RETRY_SECS,
            )
        log.warning("order %d: proving arrival with %s after %.0f s", action.order_id, what, waited)

    def _call(self, action: ChainAction, session: Session) -> TxResult:
        qv, po = self.contracts.quality, self.contracts.purchase_orders
        match action:
            case CommitBatch():
                return qv.commit_fleet_root(
                    action.batch_seq, action.root, action.count, by=self.oracle
                )
            case AnchorDisclosures():
                data = anchor.payload(Head(action.head_seq, action.head_hash))
                return qv.chain.sender(self.oracle).transact(
                    self.oracle.address, data, function="anchorDisclosures"
                )
            case ProveExcursion():
                evidence = self._readings(session, action.reading_ids)
                terms = self._terms(session, action.order_id)
                cert = self._certificate(session, action.order_id, action.device)
                return qv.prove_excursion(action.order_id, terms, evidence, cert, by=self.oracle)
            case ProveShock():
                (reading,) = self._readings(session, [action.reading_id])
                terms = self._terms(session, action.order_id)
                cert = self._certificate(session, action.order_id, action.device)
                return qv.prove_shock(action.order_id, terms, reading, cert, by=self.oracle)
            case ProveArrival():
                self._hold_for_missing(session, action)
                readings = self._readings(session, action.reading_ids)
                terms = self._terms(session, action.order_id)
                certs = [self._certificate(session, action.order_id, d) for d in action.devices]
                return qv.prove_arrival(action.order_id, terms, readings, certs, by=self.oracle)
            case Settle():
                terms = self._terms(session, action.order_id)
                return po.settle_order(action.order_id, terms=terms, by=self.oracle)
        raise ActionRejected(f"unknown action kind {action.kind!r}")

    def head_block(self) -> int:
        return self.contracts.quality.chain.block_number

    def execute(self, action: ChainAction, session: Session) -> bytes | None:
        try:
            result = self._call(action, session)
        except ContractRevert as exc:
            outcome = action_outcome(action, exc.name)
            if outcome is ActionOutcome.ALREADY_DONE:
                raise ActionAlreadyDone(exc.signature) from exc
            if outcome is ActionOutcome.RETRY_LATER:
                raise ActionRetryLater(exc.signature, delay_secs=5.0) from exc
            raise ActionRejected(exc.signature) from exc
        except RETRYABLE as exc:
            raise ActionRetryLater(f"{type(exc).__name__}: {exc}") from exc
        except TransactionFailed as exc:
            raise ActionRejected(f"transaction failed on chain: {exc}") from exc
        return bytes.fromhex(result.tx_hash.removeprefix("0x"))
