"""The real :class:`~backend.oracle.outbox.ActionExecutor`: outbox entries → contract calls.

Transactions go through backend.chain's one sender for the oracle key (nonce
tracking, receipts with a timeout, retries of transport errors only). Reverts
are classified here:

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
from collections.abc import Sequence

from eth_account.signers.local import LocalAccount
from sqlalchemy.orm import Session

from backend.chain.contracts import Contracts
from backend.chain.errors import (
    ContractRevert,
    ReceiptTimeout,
    TransactionFailed,
    TransactionRejected,
    TransportError,
)
from backend.chain.sender import TxResult
from backend.oracle.outbox import ActionAlreadyDone, ActionRejected, ActionRetryLater, ChainAction
from backend.store import repositories as repo
from backend.store.models import ReadingRow
from backend.telemetry import Reading, SignedReading

log = logging.getLogger(__name__)

_ALREADY_DONE: dict[str, frozenset[str]] = {
    "commit_batch": frozenset({"QualityVerificationStaleBatch"}),
    "prove_excursion": frozenset(
        {"QualityVerificationAlreadyBreached", "QualityVerificationOrderNotInTransit"}
    ),
    "prove_shock": frozenset(
        {"QualityVerificationAlreadyBreached", "QualityVerificationOrderNotInTransit"}
    ),
    "prove_arrival": frozenset(
        {"QualityVerificationOrderNotInTransit", "PurchaseOrdersInvalidState"}
    ),
    "settle": frozenset({"PurchaseOrdersInvalidState"}),
}
_RETRY_LATER: dict[str, frozenset[str]] = {
    "settle": frozenset({"PurchaseOrdersDisputeWindow", "PurchaseOrdersArbitrationPending"}),
    "prove_arrival": frozenset({"PurchaseOrdersInvalidDeliveryTime"}),
}


def signed_reading(row: ReadingRow) -> SignedReading:
    reading = Reading(
        order_id=row.order_id,
        seq=row.seq,
        timestamp=row.timestamp,
        temperature_centi_c=row.temperature_centi_c,
        humidity_permille=row.humidity_permille,
        shock_milli_g=row.shock_milli_g,
        latitude_e6=row.latitude_e6,
        longitude_e6=row.longitude_e6,
        flags=row.flags,
    )
    return SignedReading(reading, row.device, bytes(row.signature))


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

    def execute(self, action: ChainAction, session: Session) -> bytes | None:
        qv, po, p = self.contracts.quality, self.contracts.purchase_orders, action.payload
        try:
            result: TxResult
            if action.kind == "commit_batch":
                result = qv.commit_readings(
                    action.order_id,
                    int(p["batch_seq"]),
                    bytes.fromhex(str(p["root"])[2:]),
                    int(p["count"]),
                    by=self.oracle,
                )
            elif action.kind == "prove_excursion":
                evidence = self._readings(session, p["reading_ids"])
                result = qv.prove_excursion(action.order_id, evidence, by=self.oracle)
            elif action.kind == "prove_shock":
                (reading,) = self._readings(session, [p["reading_id"]])
                result = qv.prove_shock(action.order_id, reading, by=self.oracle)
            elif action.kind == "prove_arrival":
                (reading,) = self._readings(session, [p["reading_id"]])
                result = qv.prove_arrival(action.order_id, reading, by=self.oracle)
            elif action.kind == "settle":
                result = po.settle_order(action.order_id, by=self.oracle)
            else:
                raise ActionRejected(f"unknown action kind {action.kind!r}")
        except ContractRevert as exc:
            if exc.name in _ALREADY_DONE.get(action.kind, ()):
                raise ActionAlreadyDone(exc.signature) from exc
            if exc.name in _RETRY_LATER.get(action.kind, ()):
                raise ActionRetryLater(exc.signature, delay_secs=5.0) from exc
            raise ActionRejected(exc.signature) from exc
        except (TransportError, ReceiptTimeout, TransactionRejected) as exc:
            raise ActionRetryLater(f"{type(exc).__name__}: {exc}") from exc
        except TransactionFailed as exc:
            raise ActionRejected(f"transaction failed on chain: {exc}") from exc
        return bytes.fromhex(result.tx_hash.removeprefix("0x"))
