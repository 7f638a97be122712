"""Scorecards anyone can check: after a scenario replay on anvil, every scorecard the API
serves equals the one recomputed from raw ``eth_getLogs``.

`trustship serve` (API, oracle, indexer) runs against anvil, mosquitto and PostgreSQL;
`trustship replay` opens the scenarios' orders through its REST API. The check then
reads the three contracts' logs straight from anvil and decodes them here with
eth_abi and the ABIs in contracts/build (not the product's decoder, not the indexer),
feeds them to the pure computation (backend/scorecard) and compares with
``GET /suppliers`` and every ``GET /suppliers/{address}/scorecard``, exactly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_abi import decode as abi_decode
from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3 import Web3

from backend.api import convert
from backend.domain.order import TERMS_BODY_ATTRS, Terms
from backend.scorecard import ChainEvent, backtests, ranked, scorecards
from testkit.serve import served_stack
from tests.trustship.test_replay import REPO, describe, embedded_env, replay

pytestmark = pytest.mark.integration

#: Every final state (settled on time, late within and past the cap, breached by
#: excursion and by shock, disputed and ruled, expired, cancelled) and a fleet of 50.
SCENARIOS = sorted((REPO / "scenarios").glob("*.yaml"))
KEY = {"X-API-Key": "dev-auditor"}


def _abi_type(inp: dict[str, Any]) -> str:
    t = str(inp["type"])
    if t.startswith("tuple"):
        return "(" + ",".join(_abi_type(c) for c in inp["components"]) + ")" + t[len("tuple") :]
    return t


def _plain(value: Any, t: str) -> Any:
    if t == "address":
        return to_checksum_address(value)
    return value


def event_abis() -> dict[bytes, dict[str, Any]]:
    out = {}
    for name in ("PurchaseOrders", "QualityVerification", "Escrow"):
        abi = json.loads((REPO / "contracts" / "build" / f"{name}.json").read_text())["abi"]
        for entry in abi:
            if entry["type"] == "event":
                out[bytes(event_abi_to_log_topic(entry))] = entry
    return out


def decode(log: Any, abis: dict[bytes, dict[str, Any]], timestamp: int) -> ChainEvent:
    entry = abis[bytes(log["topics"][0])]
    topics = iter(log["topics"][1:])
    plain = [i for i in entry["inputs"] if not i["indexed"]]
    values = iter(abi_decode([_abi_type(i) for i in plain], bytes(log["data"])))
    args: dict[str, Any] = {}
    for inp in entry["inputs"]:
        t = _abi_type(inp)
        raw = abi_decode([t], bytes(next(topics)))[0] if inp["indexed"] else next(values)
        args[inp["name"]] = _plain(raw, t)
    return ChainEvent(entry["name"], log["blockNumber"], log["logIndex"], timestamp, args)


def chain_scorecards(w3: Web3, addresses: list[str], start: int, head: int) -> dict[str, Any]:
    """Every supplier's scorecard from the chain alone, as the API would show it."""
    abis = event_abis()
    logs = w3.eth.get_logs(
        {"fromBlock": start, "toBlock": head, "address": addresses}  # type: ignore[typeddict-item]
    )
    times: dict[int, int] = {}
    events = []
    for log in logs:
        n = log["blockNumber"]
        if n not in times:
            times[n] = int(w3.eth.get_block(n)["timestamp"])
        events.append(decode(log, abis, times[n]))
    cards = scorecards(events)
    as_of = max(times.values(), default=None)
    return {
        "list": convert.suppliers_page(ranked(cards.values()), as_of, 200, 0),
        "cards": {a: convert.scorecard(c) for a, c in cards.items()},
        "events": events,
    }


def proposed_terms(events: list[ChainEvent], buyer: str) -> Terms:
    """A draft like the first breached order's: its supplier, lane and terms, for ``buyer``."""
    breached = {e.args["orderId"] for e in events if e.name == "BreachRecorded"}
    created = next(e for e in events if e.name == "OrderCreated" and e.args["orderId"] in breached)
    t = Terms.from_tuple(created.args["terms"])
    return t.replace(
        buyer=buyer,
        supplier=to_checksum_address(t.supplier),
        late_penalty_bps_per_hour=250,
        breach_refund_bps=4000,
    )


def indexed_block(base: str) -> int:
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith("trustship_indexer_block "):
            return int(float(line.split()[1]))
    return -1


def served_scorecards(base: str, suppliers: list[str]) -> dict[str, Any]:
    listing = httpx.get(f"{base}/suppliers", params={"limit": 200}, headers=KEY, timeout=60)
    assert listing.status_code == 200, listing.text
    cards = {}
    for s in suppliers:
        r = httpx.get(f"{base}/suppliers/{s}/scorecard", headers=KEY, timeout=60)
        assert r.status_code == 200, r.text
        cards[s] = r.json()
    return {"list": listing.json(), "cards": cards}


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Web3]]:
    big_queue = "allow_anonymous true\nmax_queued_messages 200000\n"
    with served_stack(
        tmp_path, "scorecards", anvil_args=("--gas-limit", "100000000"), broker_conf=big_queue
    ) as s:
        replay_env = embedded_env(tmp_path)
        replay_env.update(
            RPC_URL=s.anvil.extra["url"],
            MQTT_URL=s.broker.extra["url"],
            TRUSTSHIP_API_URL=s.base,
            DEPLOYMENT_FILE=s.env["DEPLOYMENT_FILE"],
        )
        yield s.base, replay_env, Web3(Web3.HTTPProvider(s.anvil.extra["url"]))
        s.proc.terminate()
        s.proc.wait(30)


def test_every_scorecard_the_api_serves_is_recomputed_from_the_chain(
    served: tuple[str, dict[str, str], Web3],
) -> None:
    base, env, w3 = served
    code, summary = replay(SCENARIOS, env, timeout=900)
    assert code == 0, describe(summary)
    deployment = httpx.get(f"{base}/deployment", timeout=10).json()
    addresses = [deployment["contracts"][n] for n in ("PurchaseOrders", "QualityVerification",
                                                      "Escrow")]  # fmt: skip
    # The oracle may still commit fleet roots: compare at a head that did not move
    # while the API answered.
    for _ in range(20):
        head = w3.eth.block_number
        deadline = time.monotonic() + 60
        while indexed_block(base) < head:
            assert time.monotonic() < deadline, "the indexer did not reach the head"
            time.sleep(0.2)
        mine = chain_scorecards(w3, addresses, deployment["start_block"], head)
        theirs = served_scorecards(base, sorted(mine["cards"]))
        if w3.eth.block_number == head:
            break
    else:
        raise AssertionError("the chain never stood still long enough to compare")

    orders = [o for sc in summary["scenarios"] for o in sc["orders"]]
    assert sum(c["all_time"]["orders"] for c in mine["cards"].values()) == len(orders)
    assert theirs["list"] == mine["list"]
    assert theirs["cards"] == mine["cards"]
    # a quote: the proposed terms over the chain's history
    buyer = httpx.get(f"{base}/account", headers={"X-API-Key": "dev-buyer"}, timeout=10).json()
    terms = proposed_terms(mine["events"], buyer["party"]["address"])
    body = {name: getattr(terms, name) for name in TERMS_BODY_ATTRS}
    body["price"] = str(body["price"])
    r = httpx.post(f"{base}/orders/quote", json={"supplier": terms.supplier, "terms": body},
                   headers={"X-API-Key": "dev-buyer"}, timeout=60)  # fmt: skip
    assert r.status_code == 200, r.text
    expected = [convert.backtest(b) for b in backtests(mine["events"], terms)]
    assert r.json()["backtests"] == expected
    assert expected[0]["breached"] > 0 and expected[0]["finished"] > 0
    assert r.json()["supplier_record"] == mine["cards"][terms.supplier]
    # the history exercises every figure: not a comparison of empty records
    total = {k: sum(c["all_time"][k] for c in mine["cards"].values())
             for k in ("delivered", "late", "excursions", "shocks", "disputes_opened",
                       "expired", "cancelled")}  # fmt: skip
    assert all(v > 0 for v in total.values()), total
