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

Callers import from the submodules (``from backend.domain.reading import Reading``):
the package re-exports nothing, so each name is listed once, where it is defined.
"""
