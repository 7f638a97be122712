"""A reset chain must not look healthy; a reorganised one is followed (hardening
finding 5), on a real anvil.

* Reset: ``trustship serve`` runs against anvil + PostgreSQL; anvil is killed and a
  fresh one (no state) takes its port. ``/health`` must say ``error`` with the
  reason, writes must be refused with ``chain_reset`` instead of failing with
  "insufficient funds", and nothing more is sent. Redeploying the contracts on the
  fresh node lands them at the same addresses (same deployer, same nonces): the
  deployment block's hash still tells the chains apart.
* Reorganisation: the indexer has indexed two orders; the chain is reverted to
  before them and a different order is created in their place. The indexer rewinds
  to the fork point and its database matches the chain again.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.chain.connection import connect
from backend.chain.deploy import Deployment, deploy_all, load_deployment
from backend.chain.errors import DeploymentError
from backend.chain.guard import ChainGuard, ChainReset
from backend.chain.testing import build_stack, default_terms
from backend.domain.order import TERMS_BODY_ATTRS
from backend.indexer import ChainIndexer
from backend.indexer.metrics import IndexerMetrics
from backend.store.db import upgrade_to_head
from backend.store.models import ChainEventRow, OrderRow
from testkit.databases import fresh_postgres_database
from testkit.serve import start_serve
from testkit.servers import free_port, start_anvil, start_mosquitto
from testkit.settings import dev_settings
from testkit.waiting import wait_until
from tests.integration.test_api_serve import call

pytestmark = pytest.mark.integration


@pytest.fixture
def serve_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    broker = start_mosquitto("allow_anonymous true")
    with fresh_postgres_database() as database_url:
        yield {
            **os.environ,
            "MQTT_URL": broker.extra["url"],
            "DATABASE_URL": database_url,
            "DEPLOYMENT_FILE": str(tmp_path / "deployment.json"),
            "API_HOST": "127.0.0.1",
            "API_PORT": str(free_port()),
            "DEV_MODE": "true",
            "ORACLE_CLIENT_ID": "reset-test-" + uuid.uuid4().hex[:6],
        }
    broker.stop()


def test_a_reset_chain_is_an_error_and_nothing_is_sent(
    tmp_path: Path, serve_env: dict[str, str]
) -> None:
    port = free_port()
    anvil = start_anvil("--block-time", "1", port=port)
    env = {**serve_env, "RPC_URL": anvil.extra["url"]}
    env.pop("API_KEYS", None)
    base = f"http://127.0.0.1:{env['API_PORT']}"
    log = tmp_path / "serve.log"
    proc = start_serve(env, tmp_path, log)
    fresh = None
    try:

        def health() -> dict[str, Any] | None:
            try:
                return httpx.get(f"{base}/health", timeout=2).json()  # type: ignore[no-any-return]
            except (httpx.HTTPError, ValueError):
                return None

        wait_until(lambda: (health() or {}).get("status") == "ok", 90, "a healthy serve")
        supplier = call(base, "GET", "/account", "dev-supplier").json()["party"]["address"]
        arbiter = call(base, "GET", "/account", "dev-arbiter").json()["party"]["address"]
        deadline = call(base, "GET", "/deployment", "dev-buyer").json()["oracle_clock"] + 86400
        buyer = call(base, "GET", "/account", "dev-buyer").json()["party"]["address"]
        terms = default_terms(deadline - 86400, arbiter, buyer=buyer, supplier=supplier)
        body = {
            "supplier": supplier,
            "terms": {
                k: str(getattr(terms, k)) if k == "price" else getattr(terms, k)
                for k in TERMS_BODY_ATTRS
            },
        }
        assert call(base, "POST", "/orders", "dev-buyer", json=body).status_code == 201

        anvil.stop()  # the node loses its state ...
        fresh = start_anvil("--block-time", "1", port=port)  # ... and comes back empty
        # ... and even with the contracts redeployed at the same addresses
        chain = connect(dev_settings(fresh.extra["url"]))
        again = deploy_all(chain)
        old = Deployment.read(Path(env["DEPLOYMENT_FILE"]))
        assert again.addresses == old.addresses and again.block_hash != old.block_hash

        report = wait_until(
            lambda: (h := health()) and h["status"] == "error" and h, 30, "health to say error"
        )
        chain_health = report["components"]["chain"]
        assert chain_health["status"] == "error", report
        assert "reset" in chain_health["detail"] and "fresh database" in chain_health["detail"]
        assert httpx.get(f"{base}/health", timeout=2).status_code == 503
        refused = call(base, "POST", "/orders", "dev-buyer", json=body)
        assert refused.status_code == 503 and refused.json()["code"] == "chain_reset"
        time.sleep(3)  # nothing retried against the new chain meanwhile
        text = log.read_text()
        assert text.count("CHAIN RESET") == 1, text[-3000:]
        assert "will be retried" not in text
        # a restart refuses the manifest rather than serving a chain it does not match
        with pytest.raises(DeploymentError, match="reset"):
            load_deployment(Path(env["DEPLOYMENT_FILE"]), chain)
    finally:
        proc.kill()
        proc.wait(10)
        if fresh is not None:
            fresh.stop()
        anvil.stop()


def test_the_indexer_follows_a_reorganisation(tmp_path: Path) -> None:
    anvil = start_anvil()
    try:
        chain = connect(dev_settings(anvil.extra["url"]))
        stack = build_stack(chain, "anvil")
        engine = upgrade_to_head(f"sqlite:///{tmp_path / 'db.sqlite'}")
        metrics = IndexerMetrics()
        rewound: list[int] = []
        indexer = ChainIndexer(
            engine,
            chain,
            stack.contracts,
            start_block=stack.deployment.block_number,
            metrics=metrics,
            guard=ChainGuard(chain, stack.deployment),
            on_rewind=rewound.append,
        )
        indexer.run_once()
        fork = chain.block_number
        snap = chain.snapshot()
        arbiter, buyer, supplier = (stack.accounts.arbiter, stack.accounts.buyer,
                                    stack.accounts.supplier)  # fmt: skip
        terms = default_terms(
            chain.now(), arbiter.address, buyer=buyer.address, supplier=supplier.address
        )
        first = stack.po.create_order(terms, by=buyer).value
        second = stack.po.create_order(terms, by=buyer).value
        indexer.run_once()
        with Session(engine) as s:
            assert set(s.scalars(select(OrderRow.id))) == {first, second}

        chain.revert(snap)  # the two blocks are replaced by a longer branch ...
        other = terms.replace(price=terms.price * 3)
        replaced = stack.po.create_order(other, by=buyer).value
        chain.mine(3)
        assert replaced == first  # ... in which order 1 has other terms and order 2 is none
        indexer.run_once()

        assert rewound == [fork] and metrics.get("trustship_indexer_rewinds_total") == 1
        with Session(engine) as s:
            rows = {r.id: r for r in s.scalars(select(OrderRow))}
            assert set(rows) == {first} and rows[first].price == other.price
            created = s.scalars(
                select(ChainEventRow).where(ChainEventRow.event == "OrderCreated")
            ).all()
            assert [int(e.args["orderId"]) for e in created] == [first]
        # no further rewind while the chain stays as it is
        chain.mine(2)
        indexer.run_once()
        assert metrics.get("trustship_indexer_rewinds_total") == 1
    finally:
        anvil.stop()


def test_a_database_of_another_deployment_is_refused(tmp_path: Path) -> None:
    anvil = start_anvil()
    try:
        chain = connect(dev_settings(anvil.extra["url"]))
        engine = upgrade_to_head(f"sqlite:///{tmp_path / 'db.sqlite'}")
        for attempt in range(2):  # the second deployment finds the first one's database
            stack = build_stack(chain, f"anvil-{attempt}")
            guard = ChainGuard(chain, stack.deployment)
            indexer = ChainIndexer(
                engine, chain, stack.contracts, start_block=stack.deployment.block_number,
                guard=guard,
            )  # fmt: skip
            if attempt == 0:
                indexer.run_once()
                continue
            with pytest.raises(ChainReset, match="point DATABASE_URL at a fresh database"):
                indexer.run_once()
            assert guard.is_reset
    finally:
        anvil.stop()


def test_contracts_redeployed_at_the_same_addresses_are_still_another_chain() -> None:
    port = free_port()
    anvil = start_anvil(port=port)
    try:
        old = deploy_all(connect(dev_settings(anvil.extra["url"])))
        anvil.stop()
        anvil = start_anvil(port=port)
        chain = connect(dev_settings(anvil.extra["url"]))
        chain.mine()  # the new chain's history differs (a byte-identical one would not)
        new = deploy_all(chain)
        assert new.addresses == old.addresses  # same deployer, same nonces
        assert ChainGuard(chain, new).check(force=True).status == "ok"
        state = ChainGuard(chain, old).check(force=True)
        assert state.status == "reset"
        found = chain.block_hash(old.block_number)
        assert f"block {old.block_number} (the deployment's) is {found}" in state.detail
    finally:
        anvil.stop()
