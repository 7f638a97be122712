"""The API findings of issue 8 on the stack they were made on: `trustship serve` as a
subprocess against anvil --block-time 1, mosquitto with the shipped config and ACL, and
PostgreSQL; requests over real sockets, as curl or schemathesis sent them.

* finding 4: a NUL byte in a query (PostgreSQL refuses it), a price beyond 2^256 - 1
  (the ABI encoder refuses it), funding beyond the buyer's balance (anvil refuses it at
  gas estimation, -32003), and a keep-alive connection after a 500;
* findings 3 and 6 on the same server: a mistyped address, coerced types, a body that
  is not UTF-8, and /deployment as a public route.
"""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from backend.store.db import make_engine
from testkit.databases import POSTGRES_URL, postgres_schema, schema_url
from testkit.serve import order_terms, serve_env, start_serve, wait_healthy
from testkit.servers import free_port, start_anvil, start_secured_mosquitto

pytestmark = pytest.mark.integration

ORACLE_PW = "oracle-hardening-password"
MISTYPED = "0x05B1f6fCF6B7c1a62dE3140e1F3efc98BCC34c7A"


@dataclass
class Served:
    base: str
    port: int
    schema: str
    log: Path

    def call(
        self, method: str, path: str, key: str | None = "dev-buyer", **kw: Any
    ) -> httpx.Response:
        headers = {**({"X-API-Key": key} if key else {}), **kw.pop("headers", {})}
        return httpx.request(method, self.base + path, headers=headers, timeout=60, **kw)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("api-hardening")
    database = ExitStack()
    schema = database.enter_context(postgres_schema("trustship_api_hardening_"))
    anvil = start_anvil("--block-time", "1")
    broker = start_secured_mosquitto({}, oracles={"oracle": ORACLE_PW})
    port = free_port()
    log = tmp / "serve.log"
    env = serve_env(
        rpc_url=anvil.extra["url"],
        mqtt_url=f"mqtt://oracle:{ORACLE_PW}@127.0.0.1:{broker.port}",
        database_url=schema_url(schema),
        workdir=tmp,
        port=port,
        client_prefix="api-hardening-",
        drop=frozenset({"API_KEYS", "DEPLOYER_PRIVATE_KEY"}),
    )
    proc = start_serve(env, tmp, log)
    served = Served(f"http://127.0.0.1:{port}", port, schema, log)
    try:
        wait_healthy(served.base, proc, log)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        broker.stop()
        anvil.stop()
        database.close()


def terms(served: Served, **overrides: Any) -> dict[str, Any]:
    arbiter = served.call("GET", "/account", "dev-arbiter").json()["party"]["address"]
    now = int(served.call("GET", "/deployment", None).json()["oracle_clock"])
    return order_terms(now, arbiter, **overrides)


def supplier(served: Served) -> str:
    address: str = served.call("GET", "/account", "dev-supplier").json()["party"]["address"]
    return address


def assert_refused(r: httpx.Response, *loc: Any) -> dict[str, Any]:
    assert r.status_code == 422, r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == "validation_error" and body["details"][0]["loc"] == list(loc), body
    return body


def no_tracebacks(served: Served) -> None:
    assert "Traceback" not in served.log.read_text(errors="replace")


# --- finding 4 ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["\x00", "temperature\x00warning", "\x01", "a\nb"])
def test_a_nul_byte_or_control_character_in_a_query_is_422_naming_it(
    served: Served, kind: str
) -> None:
    r = served.call("GET", "/alerts", params={"kind": kind})
    assert_refused(r, "query", "kind", "0")
    assert served.call("GET", "/alerts", params={"kind": "trend"}).status_code == 200
    no_tracebacks(served)


@pytest.mark.parametrize("price", [2**256, 10**78 - 1, 2**88])
def test_a_price_beyond_max_price_is_422_before_any_transaction(served: Served, price: int) -> None:
    body = {"supplier": supplier(served), "terms": terms(served, price=str(price)), "fund": True}
    assert_refused(served.call("POST", "/orders", json=body), "body", "terms", "price")
    no_tracebacks(served)


def test_funding_beyond_the_buyers_balance_is_502_tx_rejected(served: Served) -> None:
    buyer = served.call("GET", "/account").json()["party"]["address"]
    price = 2**87  # far beyond the dev buyer's 1,000,000 ETH, below MAX_PRICE
    body = {"supplier": supplier(served), "terms": terms(served, price=str(price)), "fund": True}
    r = served.call("POST", "/orders", json=body)
    assert r.status_code == 502, r.text
    answer = r.json()
    assert answer["code"] == "tx_rejected"
    assert answer["args"]["account"] == buyer and answer["args"]["value"] == str(price)
    balance = int(answer["args"]["balance"])
    assert 0 < balance < price
    assert "Insufficient funds" in answer["message"]  # anvil's own words
    assert f"{buyer} holds {balance} wei" in answer["message"]
    no_tracebacks(served)


def test_after_a_500_the_keep_alive_connection_serves_the_next_request(served: Served) -> None:
    """A genuine 500 on the real server: the alerts table is missing (damaged database)."""
    admin = make_engine(POSTGRES_URL)
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=30)
    try:
        with admin.begin() as db:
            db.execute(text(f'ALTER TABLE "{served.schema}".alerts RENAME TO alerts_away'))
        try:
            conn.request("GET", "/alerts", headers={"X-API-Key": "dev-buyer"})
            first = conn.getresponse()
            assert first.status == 500 and json.loads(first.read())["code"] == "internal_error"
            sock = conn.sock
            conn.request("GET", "/orders", headers={"X-API-Key": "dev-buyer"})
            second = conn.getresponse()
            assert second.status == 200, second.read()
            second.read()
            assert conn.sock is sock, "the server closed the keep-alive connection after a 500"
        finally:
            with admin.begin() as db:
                db.execute(text(f'ALTER TABLE "{served.schema}".alerts_away RENAME TO alerts'))
    finally:
        conn.close()
        admin.dispose()
    assert served.call("GET", "/alerts").status_code == 200


# --- findings 3 and 6 on the same server ----------------------------------------------------


def test_a_mistyped_supplier_is_422_naming_it(served: Served) -> None:
    body = {"supplier": MISTYPED, "terms": terms(served), "fund": True}
    r = assert_refused(served.call("POST", "/orders", json=body), "body", "supplier")
    assert "wrong EIP-55 checksum" in r["message"]
    lower = {"supplier": supplier(served).lower(), "terms": terms(served), "fund": False}
    assert served.call("POST", "/orders", json=lower).status_code == 201


def test_types_are_not_coerced(served: Served) -> None:
    body = {"supplier": supplier(served), "terms": terms(served), "fund": "yes"}
    assert_refused(served.call("POST", "/orders", json=body), "body", "fund")
    deadline = terms(served)["delivery_deadline"]
    body = {"supplier": supplier(served), "terms": terms(served, delivery_deadline=str(deadline))}
    assert_refused(served.call("POST", "/orders", json=body), "body", "terms", "delivery_deadline")
    assert_refused(served.call("GET", "/orders/1.0"), "path", "order_id")


def test_a_body_that_is_not_utf8_is_a_documented_422(served: Served) -> None:
    r = served.call(
        "POST",
        "/orders",
        content=b'{"supplier": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert_refused(r, "body")
    doc = served.call("GET", "/openapi.json", None).json()
    assert "422" in doc["paths"]["/orders"]["post"]["responses"]


def test_deployment_is_public_as_documented(served: Served) -> None:
    r = served.call("GET", "/deployment", None)
    assert r.status_code == 200 and set(r.json()["contracts"]) >= {"PurchaseOrders", "Escrow"}
    doc = served.call("GET", "/openapi.json", None).json()
    assert "security" not in doc["paths"]["/deployment"]["get"]
    assert "security" in doc["paths"]["/orders"]["get"]
