"""The indexer stage's own interface: catch_up() (what ingest depends on, through
backend.oracle.ingest.ChainFollower) and status() (what /health reads)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from backend.chain.testing import Stack, default_terms
from backend.core.settings import Settings
from backend.indexer import ChainIndexer
from backend.indexer.metrics import IndexerMetrics
from backend.oracle.ingest import ChainFollower
from backend.oracle.service import OracleConfig
from backend.store.models import OrderRow


def make_indexer(deployment: Stack, engine: Engine) -> ChainIndexer:
    return ChainIndexer(
        engine,
        deployment.chain,
        deployment.contracts,
        start_block=deployment.deployment.block_number,
        metrics=IndexerMetrics(),
    )


def test_the_indexer_is_the_follower_ingest_depends_on(
    deployment: Stack, sqlite_engine: Engine
) -> None:
    assert isinstance(make_indexer(deployment, sqlite_engine), ChainFollower)


def test_catch_up_says_whether_it_read_new_blocks(deployment: Stack, sqlite_engine: Engine) -> None:
    indexer = make_indexer(deployment, sqlite_engine)
    before = indexer.status()
    assert (before.block, before.chain_time, before.passes, before.error) == (None, None, 0, None)

    assert indexer.catch_up() is True  # the first pass reads up to the head
    head = deployment.chain.block_number
    first = indexer.status()
    assert first.block == head and first.passes == 1 and first.error is None
    assert first.chain_time == indexer.chain_time is not None

    assert indexer.catch_up() is False  # nothing mined since
    assert indexer.status().passes == 2

    deployment.chain.advance_time(60)  # mines a block
    assert indexer.catch_up() is True
    assert indexer.status().block == deployment.chain.block_number > head


def test_status_reports_a_failed_pass_until_one_succeeds(
    deployment: Stack, sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexer = make_indexer(deployment, sqlite_engine)
    indexer.catch_up()
    block = indexer.status().block

    def unreachable(what: str, fn: object) -> object:
        raise ConnectionError(f"{what}: node unreachable")

    monkeypatch.setattr(indexer, "_rpc", unreachable)
    with pytest.raises(ConnectionError):
        indexer.catch_up()
    failed = indexer.status()
    assert failed.error == "ConnectionError: eth_getBlockByNumber: node unreachable"
    assert failed.block == block and failed.passes == 1

    monkeypatch.undo()
    assert indexer.catch_up() is False
    assert indexer.status().error is None and indexer.status().passes == 2


def test_an_event_is_indexed_only_once_it_is_confirmations_deep(
    deployment: Stack, sqlite_engine: Engine
) -> None:
    settings = Settings(_env_file=None, ORACLE_INDEXER_CONFIRMATIONS=2)  # type: ignore[call-arg]
    depth = OracleConfig.from_settings(settings).indexer_confirmations
    assert depth == 2
    indexer = ChainIndexer(
        sqlite_engine,
        deployment.chain,
        deployment.contracts,
        start_block=deployment.deployment.block_number,
        confirmations=depth,
        metrics=IndexerMetrics(),
    )
    a, chain = deployment.accounts, deployment.chain
    terms = default_terms(chain.now(), a.arbiter.address, buyer=a.buyer.address,
                          supplier=a.supplier.address)  # fmt: skip
    order_id = deployment.contracts.po.create_order(terms, by=a.buyer).value

    def indexed() -> bool:
        indexer.run_once()
        with Session(sqlite_engine) as s:
            return s.get(OrderRow, order_id) is not None

    assert not indexed()  # in the head block: 0 deep
    chain.mine(1)
    assert not indexed()  # 1 deep
    chain.mine(1)
    assert indexed()  # 2 deep: final
    assert indexer.status().block == chain.block_number - depth
