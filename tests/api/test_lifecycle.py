"""One order from creation to withdrawal through HTTP alone; the device side is the
oracle's real pipeline (signed readings → ingest/rules → commitment → outbox → chain)."""

from __future__ import annotations

import time

from backend.chain.contracts import FleetProof
from backend.chain.testing import certify, device, device_key, issuer, issuer_key
from backend.domain.order import ETH
from backend.oracle.batcher import CommitmentBatcher
from backend.oracle.chain_actions import ChainExecutor
from backend.oracle.ingest import Inbound, Ingestor
from backend.oracle.metrics import Metrics
from backend.oracle.outbox import OutboxWorker
from backend.oracle.rules import RulesEngine
from backend.telemetry import Reading, SignedReading, device_address
from backend.telemetry.certificates import DeviceCertificate, SignedCertificate
from testkit.readings import wire_message
from tests.api.conftest import ChainApi

ETHER = 10**18
HOUR = 3600


def fee(api: ChainApi, tx_hash: str) -> int:
    receipt = api.stack.chain.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    return int(receipt["gasUsed"]) * int(receipt["effectiveGasPrice"])


def test_create_fund_accept_ship_arrive_settle_withdraw(chain_api: ChainApi) -> None:
    api = chain_api
    stack = api.stack
    supplier = stack.accounts.supplier.address
    buyer = stack.accounts.buyer.address
    key = device_key(4242)
    device = device_address(key)

    # 1. the buyer creates and funds the order in one transaction
    terms = api.terms_json(price=str(10 * ETHER), late_penalty_bps_per_hour=100)
    r = api.call(
        "POST", "/orders", "buyer", json={"supplier": supplier, "terms": terms, "fund": True}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    order_id = created["order"]["id"]
    assert created["tx_hash"].startswith("0x") and len(created["tx_hash"]) == 66
    assert created["order"]["funded"] is True
    assert created["order"]["state"] == "Created"
    assert stack.po.get_order(order_id).funded

    # 2. the supplier accepts, 3. ships with one device
    r = api.call("POST", f"/orders/{order_id}/accept", "supplier")
    assert r.status_code == 200, r.text
    assert r.json()["order"]["state"] == "Funded"
    cert = certify(stack.domain, order_id, device, issuer_key(1))  # the carrier's
    r = api.call(
        "POST",
        f"/orders/{order_id}/ship",
        "supplier",
        json={"certificates": [cert.as_json()]},
    )
    assert r.status_code == 200, r.text
    shipped = r.json()["order"]
    assert shipped["state"] == "Shipped"
    devices = api.call("GET", f"/orders/{order_id}/devices", "buyer").json()
    assert [d["device"] for d in devices["data"]] == [device]

    # 4. the device reports en route and then inside the destination box, 2.5 h late
    deadline = int(terms["delivery_deadline"])
    arrival = deadline + 2 * HOUR + 30 * 60
    stack.chain.time_travel(arrival + 60)
    metrics = Metrics()
    api.sync()
    ingestor = Ingestor(
        api.engine,
        stack.domain,
        rules=RulesEngine(),
        metrics=metrics,
        chain_time=lambda: api.indexer.chain_time,
    )
    shipped_at = int(shipped["shipped_at"])
    stops = [(40_000_000, 0)] * 5 + [(terms["dest_lat_e6"], terms["dest_lon_e6"])]
    times = [shipped_at + 600 * (i + 1) for i in range(5)] + [arrival]
    msgs = []
    for seq, ((lat, lon), ts) in enumerate(zip(stops, times, strict=True), start=1):
        reading = Reading(order_id, seq, ts, 450, 500, 0, lat, lon, 0)
        msgs.append(Inbound(*wire_message(key, reading, stack.domain)))
    assert ingestor.ingest(msgs).stored == 6
    assert CommitmentBatcher(api.engine, metrics=metrics).tick(flush=True) == 1
    outbox = OutboxWorker(api.engine, ChainExecutor(stack.contracts, stack.accounts.oracle))
    for _ in range(6):
        if not outbox.run_once(now=time.time() + 3600):
            break
    api.sync()

    # 5. the API shows the settled order, its telemetry, events and a proof the contract accepts
    order = api.call("GET", f"/orders/{order_id}", "supplier").json()
    assert order["state"] == "Settled"
    assert order["delivered_at"] == arrival
    assert order["late_seconds"] == arrival - deadline
    late_bps = 3 * 100  # three started hours
    buyer_amount = 10 * ETHER * late_bps // 10_000
    assert order["settlement"] == {
        "buyer_amount": str(buyer_amount),
        "supplier_amount": str(10 * ETHER - buyer_amount),
    }
    preview = api.call(
        "GET", f"/orders/{order_id}/settlement-preview", params={"delivered_at": arrival}
    ).json()
    assert preview["buyer_amount"] == str(buyer_amount)
    telemetry = api.call("GET", f"/orders/{order_id}/telemetry", "arbiter").json()
    assert [t["seq"] for t in telemetry["data"]] == [1, 2, 3, 4, 5, 6]
    events = [e["event"] for e in api.call("GET", f"/orders/{order_id}/events").json()["data"]]
    expected_events = {
        "OrderCreated",
        "OrderAccepted",
        "OrderShipped",
        "DeviceBound",
        "ArrivalProven",
        "OrderDelivered",
        "OrderSettled",
    }
    assert expected_events <= set(events)
    commitments = api.call("GET", f"/orders/{order_id}/commitments").json()
    assert commitments["data"][0]["status"] == "done"
    for seq in (1, 6):
        proof = api.call("GET", f"/orders/{order_id}/readings/{device}/{seq}/proof").json()
        rd = proof["reading"]
        reading = Reading(
            rd["orderId"], rd["seq"], rd["timestamp"], rd["temperatureCentiC"],
            rd["humidityPermille"], rd["shockMilliG"], rd["latitudeE6"], rd["longitudeE6"],
            rd["flags"],
        )  # fmt: skip
        signed = SignedReading(reading, proof["device"], bytes.fromhex(proof["signature"][2:]))
        fleet = FleetProof(
            batch_seq=proof["batch_seq"],
            root=bytes.fromhex(proof["root"][2:]),
            count=proof["count"],
            log_index=proof["log_index"],
            log_proof=[bytes.fromhex(p[2:]) for p in proof["log_proof"]],
            leaf_index=proof["leaf_index"],
            reading_proof=[bytes.fromhex(p[2:]) for p in proof["reading_proof"]],
        )
        c = proof["certificate"]
        certificate = SignedCertificate(
            DeviceCertificate(
                order_id=c["order_id"],
                device=c["device"],
                issuer=c["issuer"],
                valid_from=c["valid_from"],
                valid_until=c["valid_until"],
            ),
            bytes.fromhex(c["signature"][2:]),
        )
        chain_terms = stack.po.terms_of(order_id)
        committer = proof["committer"]
        assert stack.qv.verify_fleet_reading(committer, chain_terms, signed, certificate, fleet)
        assert proof["log_root"] == "0x" + stack.qv.fleet_log_root(committer).hex()
        assert proof["verifying_contract"] == stack.qv.address

    # 6. both parties withdraw; balances move on chain by the credited amounts
    credits = api.call("GET", "/account", "supplier").json()["credits"]
    assert credits == [{"token": terms["token"], "amount": str(10 * ETHER - buyer_amount)}]
    for who, address, amount in (
        ("supplier", supplier, 10 * ETHER - buyer_amount),
        ("buyer", buyer, buyer_amount),
    ):
        before = stack.chain.balance(address)
        r = api.call("POST", "/account/withdraw", who, json={})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["amount"] == str(amount)
        assert stack.chain.balance(address) == before + amount - fee(api, body["tx_hash"])
        assert api.call("GET", "/account", who).json()["credits"] == []
        again = api.call("POST", "/account/withdraw", who, json={})
        assert again.status_code == 409
        assert again.json()["error"] == "EscrowNothingToWithdraw"
    assert stack.escrow.total_owed(terms["token"]) == 0


def test_contract_reverts_come_back_named(chain_api: ChainApi) -> None:
    api = chain_api
    supplier = api.stack.accounts.supplier.address
    # invalid terms: the contract's error names the offending field (422)
    bad = api.terms_json(min_temp_centi_c=900, max_temp_centi_c=100)
    r = api.call("POST", "/orders", "buyer", json={"supplier": supplier, "terms": bad})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "contract_revert"
    assert body["error"] == "PurchaseOrdersInvalidTerms"
    assert "field" in body["args"]
    # a state conflict (409) names the current state
    r = api.call("POST", "/orders", "buyer", json={"supplier": supplier, "terms": api.terms_json()})
    order_id = r.json()["order"]["id"]
    assert api.call("POST", f"/orders/{order_id}/cancel", "buyer").status_code == 200
    r = api.call("POST", f"/orders/{order_id}/accept", "supplier")
    assert r.status_code == 409
    assert r.json()["error"] == "PurchaseOrdersInvalidState"
    assert r.json()["args"] == {"orderId": order_id, "current": 7, "current_state": "Cancelled"}
    # an access error (403): the buyer cannot ship
    r = api.call("POST", "/orders", "buyer", json={"supplier": supplier, "terms": api.terms_json()})
    order_id = r.json()["order"]["id"]
    body = {"certificates": [api.certificate_json(order_id, 1)]}
    r = api.call("POST", f"/orders/{order_id}/ship", "buyer", json=body)
    assert r.status_code == 403
    assert r.json()["error"] == "PurchaseOrdersNotSupplier"
    # a refused call changes nothing
    state_before = api.call("GET", f"/orders/{order_id}").json()
    assert api.call("POST", f"/orders/{order_id}/accept", "buyer").status_code == 403
    assert api.call("GET", f"/orders/{order_id}").json() == state_before


def test_deployment_tells_devices_what_to_sign_for(chain_api: ChainApi) -> None:
    """GET /deployment (no key needed): the EIP-712 domain a device signs under, and the
    oracle's clock, which moves with the chain."""
    api = chain_api
    body = api.client.get("/deployment").json()
    stack = api.stack
    assert body["chain_id"] == stack.chain.chain_id
    assert body["contracts"]["QualityVerification"] == stack.qv.address
    assert body["contracts"]["PurchaseOrders"] == stack.po.address
    assert body["start_block"] == stack.deployment.block_number
    later = stack.chain.advance_time(5 * HOUR)
    api.indexer.run_once()
    assert api.client.get("/deployment").json()["oracle_clock"] >= later


def test_funding_an_accepted_order_pays_its_price_in_eth_or_in_tokens(
    chain_api: ChainApi,
) -> None:
    """POST /orders/{id}/fund: an ETH order's price goes with the call; for an ERC-20
    order the custodian first approves the escrow for the price, which it pulls."""
    api = chain_api
    stack = api.stack
    buyer = stack.accounts.buyer.address
    price = 3_000_000
    stack.token.mint(buyer, price, by=stack.accounts.admin)
    for token in (ETH, stack.token.address):
        body = {
            "supplier": stack.accounts.supplier.address,
            "terms": api.terms_json(price=price, token=token),
        }
        r = api.call("POST", "/orders", "buyer", json=body)
        assert r.status_code == 201, r.text
        order_id = int(r.json()["order"]["id"])
        assert api.call("POST", f"/orders/{order_id}/accept", "supplier").status_code == 200
        r = api.call("POST", f"/orders/{order_id}/fund", "buyer")
        assert r.status_code == 200, r.text
        assert r.json()["order"]["state"] == "Funded"
        (deposit,) = stack.escrow.contract.events.FundsDeposited().get_logs(
            from_block=0, argument_filters={"orderId": order_id}
        )
        assert (deposit["args"]["token"], deposit["args"]["amount"]) == (token, price)
    assert stack.token.balance_of(buyer) == 0
    assert stack.token.allowance(buyer, stack.escrow.address) == 0


def _funded_order(api: ChainApi, **terms: object) -> int:
    supplier = api.stack.accounts.supplier.address
    body = {"supplier": supplier, "terms": api.terms_json(**terms), "fund": True}
    r = api.call("POST", "/orders", "buyer", json=body)
    assert r.status_code == 201, r.text
    order_id = int(r.json()["order"]["id"])
    assert api.call("POST", f"/orders/{order_id}/accept", "supplier").status_code == 200
    return order_id


def test_shipping_an_uncertified_device_is_refused_by_name(chain_api: ChainApi) -> None:
    """The supplier cannot choose its own witnesses: a device certified by a key the terms
    do not name (here the supplier's own) is refused with the contract's error, and so
    are a forged signature and another order's certificate; nothing is bound."""
    api = chain_api
    stack = api.stack
    order_id = _funded_order(api)
    own = certify(stack.domain, order_id, device(7), stack.accounts.supplier.key.hex())

    def ship(*certs: dict[str, object]) -> dict[str, object]:
        r = api.call(
            "POST", f"/orders/{order_id}/ship", "supplier", json={"certificates": list(certs)}
        )
        assert r.status_code == 422, r.text
        body: dict[str, object] = r.json()
        assert body["code"] == "contract_revert"
        return body

    refused = ship(api.certificate_json(order_id, 1), own.as_json())
    assert refused["error"] == "QualityVerificationUncertifiedDevice"
    assert refused["args"] == {
        "orderId": order_id,
        "device": device(7),
        "issuer": stack.accounts.supplier.address,
    }
    # the issuer's name on a certificate it never signed
    forged = {**own.as_json(), "issuer": issuer(1)}
    assert ship(forged)["error"] == "QualityVerificationForgedCertificate"
    other = _funded_order(api)
    assert ship(api.certificate_json(other, 1))["error"] == (
        "QualityVerificationCertificateWrongOrder"
    )
    api.sync()
    order = api.call("GET", f"/orders/{order_id}", "buyer").json()
    assert order["state"] == "Funded"
    assert api.call("GET", f"/orders/{order_id}/devices", "buyer").json()["count"] == 0
    # with its carrier's certificate the same device ships
    r = api.call(
        "POST",
        f"/orders/{order_id}/ship",
        "supplier",
        json={"certificates": [api.certificate_json(order_id, 7)]},
    )
    assert r.status_code == 200, r.text
    bound = api.call("GET", f"/orders/{order_id}/devices", "buyer").json()["data"]
    assert [d["device"] for d in bound] == [device(7)]
