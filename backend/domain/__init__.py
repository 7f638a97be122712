"""Typed domain records, one definition per concept (the bottom layer of ``backend``).

* :mod:`~backend.domain.reading` — the reading (:class:`Reading`, :class:`SignedReading`,
  the rules' :class:`StoredReading`) and its fields with their Solidity types;
* :mod:`~backend.domain.order` — an order's :class:`Terms`, :class:`OrderState` and
  :class:`Order`, mirroring ``IPurchaseOrders``;
* :mod:`~backend.domain.actions` — the chain actions the oracle queues in its outbox, a
  closed set of typed records with their payload codec;
* :mod:`~backend.domain.contract_errors` — the contracts' custom errors and what each
  means to the API and to the oracle's actions.

It imports nothing but the standard library and ``backend.core``; every other part
derives its columns, schemas and messages from these records or is tested against
them (tests/domain), and the contracts' side is read from the compiled ABI there.
"""

from backend.domain.actions import (
    ACTIONS,
    KINDS,
    ActionPayloadError,
    ChainAction,
    CommitBatch,
    ProveArrival,
    ProveExcursion,
    ProveShock,
    Settle,
    decode_action,
)
from backend.domain.contract_errors import (
    ActionOutcome,
    ContractError,
    ErrorKind,
    action_outcome,
    error_kind,
)
from backend.domain.order import ETH, ZERO_ADDRESS, Order, OrderState, Terms
from backend.domain.reading import (
    READING_ATTRS,
    READING_FIELDS,
    Reading,
    SignedReading,
    StoredReading,
    signed_reading,
)

__all__ = [
    "ACTIONS",
    "ETH",
    "KINDS",
    "READING_ATTRS",
    "READING_FIELDS",
    "ZERO_ADDRESS",
    "ActionOutcome",
    "ActionPayloadError",
    "ChainAction",
    "CommitBatch",
    "ContractError",
    "ErrorKind",
    "Order",
    "OrderState",
    "ProveArrival",
    "ProveExcursion",
    "ProveShock",
    "Reading",
    "Settle",
    "SignedReading",
    "StoredReading",
    "Terms",
    "action_outcome",
    "decode_action",
    "error_kind",
    "signed_reading",
]
