"""What the API refuses at its boundary, before any transaction is built or any query
runs (issue 8, findings 3, 4 and 6): 422 ``validation_error`` naming the field."""

from __future__ import annotations

from typing import Any

import pytest

from backend.api.schemas import MAX_PRICE
from tests.api.conftest import ChainApi

#: A real address with its last characters mistyped, keeping a mixed case (the finding).
MISTYPED = "0x05B1f6fCF6B7c1a62dE3140e1F3efc98BCC34c7A"


def mistype(address: str) -> str:
    """``address`` with one letter's case flipped: a mixed-case address, wrong checksum."""
    i = next(i for i, c in enumerate(address) if i > 1 and c.isalpha())
    return address[:i] + address[i].swapcase() + address[i + 1 :]


def refused(r: Any, *loc: str) -> dict[str, Any]:
    """Assert a 422 validation_error whose first problem is at ``loc``; return the body."""
    assert r.status_code == 422, r.text
    body: dict[str, Any] = r.json()
    assert body["code"] == "validation_error", body
    assert body["details"][0]["loc"] == list(loc), body
    return body


def _create(api: ChainApi, supplier: str, fund: Any = False, **terms: Any) -> Any:
    """POST /orders with valid terms, any field replaced (values as JSON gives them)."""
    body = {"supplier": supplier, "terms": {**api.terms_json(), **terms}, "fund": fund}
    return api.call("POST", "/orders", "buyer", json=body)


# --- finding 3: EIP-55 checksums ---------------------------------------------------------


def test_a_supplier_with_a_wrong_checksum_is_refused_and_nothing_is_sent(
    chain_api: ChainApi,
) -> None:
    block = chain_api.stack.chain.block_number
    body = refused(_create(chain_api, MISTYPED), "body", "supplier")
    assert "wrong EIP-55 checksum" in body["message"] and body["message"].startswith(
        "body.supplier"
    )
    supplier = chain_api.stack.accounts.supplier.address
    refused(_create(chain_api, mistype(supplier)), "body", "supplier")
    arbiter = chain_api.stack.accounts.arbiter.address
    refused(_create(chain_api, supplier, arbiter=mistype(arbiter)), "body", "terms", "arbiter")
    assert chain_api.stack.chain.block_number == block  # no transaction was built


def test_lower_case_and_checksummed_addresses_are_accepted(chain_api: ChainApi) -> None:
    supplier = chain_api.stack.accounts.supplier.address
    r = _create(
        chain_api, supplier.lower(), arbiter=chain_api.stack.accounts.arbiter.address.lower()
    )
    assert r.status_code == 201, r.text
    assert r.json()["order"]["supplier"] == supplier  # answered checksummed


def test_wrong_checksums_are_refused_in_every_address_field(chain_api: ChainApi) -> None:
    api = chain_api
    order = _create(api, api.stack.accounts.supplier.address).json()["order"]["id"]
    assert api.call("POST", f"/orders/{order}/accept", "supplier").status_code == 200
    wrong = mistype(api.stack.accounts.stranger.address)
    cert = api.certificate_json(order, 1)
    for field in ("device", "issuer"):
        body = {"certificates": [{**cert, field: wrong}]}
        refused(
            api.call("POST", f"/orders/{order}/ship", "supplier", json=body),
            "body",
            "certificates",
            "0",
            field,
        )
    refused(api.call("POST", "/account/withdraw", "buyer", json={"token": wrong}), "body", "token")
    refused(api.call("GET", "/orders", "buyer", params={"buyer": wrong}), "query", "buyer")
    refused(api.call("GET", "/orders", "buyer", params={"supplier": wrong}), "query", "supplier")
    refused(api.call("GET", "/devices", "buyer", params={"device": wrong}), "query", "device")
    refused(
        api.call("GET", f"/orders/{order}/telemetry", "buyer", params={"device": wrong}),
        "query",
        "device",
    )
    refused(api.call("GET", f"/orders/{order}/readings/{wrong}/1/proof", "buyer"), "path", "device")


@pytest.mark.parametrize("bad", ["0x12", "0x" + "g" * 40, MISTYPED + "0"])
def test_malformed_addresses_are_refused(chain_api: ChainApi, bad: str) -> None:
    refused(_create(chain_api, bad), "body", "supplier")


# --- finding 6: strict types -------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"fund": "yes"}, ("body", "fund")),
        ({"fund": 1}, ("body", "fund")),
        ({"fund": "true"}, ("body", "fund")),
        ({"terms": {"delivery_deadline": "1900000000"}}, ("body", "terms", "delivery_deadline")),
        ({"terms": {"delivery_deadline": 1.9e9}}, ("body", "terms", "delivery_deadline")),
        ({"terms": {"geofence_e6": True}}, ("body", "terms", "geofence_e6")),
        ({"terms": {"price": 10**19}}, ("body", "terms", "price")),
        ({"terms": {"price": "1e19"}}, ("body", "terms", "price")),
    ],
    ids=["fund-yes", "fund-1", "fund-string-true", "deadline-string", "deadline-float",
         "geofence-bool", "price-number", "price-exponent"],
)  # fmt: skip
def test_request_bodies_are_validated_strictly(
    chain_api: ChainApi, change: dict[str, Any], loc: tuple[str, ...]
) -> None:
    body: dict[str, Any] = {
        "supplier": chain_api.stack.accounts.supplier.address,
        "terms": chain_api.terms_json(),
        "fund": False,
    }
    for key, value in change.items():
        if key == "terms":
            body["terms"] = {**body["terms"], **value}
        else:
            body[key] = value
    block = chain_api.stack.chain.block_number
    refused(chain_api.call("POST", "/orders", "buyer", json=body), *loc)
    assert chain_api.stack.chain.block_number == block


@pytest.mark.parametrize(
    ("path", "params", "loc"),
    [
        ("/orders/1.0", {}, ("path", "order_id")),
        ("/orders/+1", {}, ("path", "order_id")),
        ("/orders/1_0", {}, ("path", "order_id")),
        ("/orders/%201", {}, ("path", "order_id")),
        ("/orders", {"limit": "1.0"}, ("query", "limit")),
        ("/orders", {"offset": " 0"}, ("query", "offset")),
        ("/orders/1/settlement-preview", {"delivered_at": "1e9"}, ("query", "delivered_at")),
        (
            "/orders/1/settlement-preview",
            {"delivered_at": "1900000000", "breach": "yes"},
            ("query", "breach"),
        ),
        ("/alerts", {"order_id": "1.0"}, ("query", "order_id")),
        # kinds and severities are the closed sets of backend/domain/alert.py
        ("/alerts", {"kind": "3.402823466e+38"}, ("query", "kind", "0")),
        ("/alerts", {"kind": "temperature_warning"}, ("query", "kind", "0")),
        ("/alerts", {"severity": "urgent"}, ("query", "severity")),
        ("/orders/1/commitments/1.0", {}, ("path", "batch_seq")),
    ],
)
def test_parameters_read_exactly_what_the_document_says(
    chain_api: ChainApi, path: str, params: dict[str, str], loc: tuple[str, ...]
) -> None:
    refused(chain_api.call("GET", path, "buyer", params=params), *loc)


def test_well_formed_parameters_and_bodies_still_work(chain_api: ChainApi) -> None:
    api = chain_api
    r = _create(api, api.stack.accounts.supplier.address, fund=True)
    assert r.status_code == 201 and r.json()["order"]["funded"] is True, r.text
    order = r.json()["order"]["id"]
    assert api.call("GET", f"/orders/{order}", "buyer").status_code == 200
    deadline = r.json()["order"]["terms"]["delivery_deadline"]
    preview = api.call(
        "GET",
        f"/orders/{order}/settlement-preview",
        "buyer",
        params={"delivered_at": str(deadline + 3600), "breach": "true"},
    )
    assert preview.status_code == 200 and preview.json()["breach"] is True, preview.text
    assert (
        api.call("GET", "/orders", "buyer", params={"limit": "5", "offset": "0"}).status_code == 200
    )


# --- finding 4: amounts the contract cannot hold, refusals by the node -------------------


def test_max_price_is_the_contracts(chain_api: ChainApi) -> None:
    assert chain_api.stack.po.max_price() == MAX_PRICE


@pytest.mark.parametrize("price", [MAX_PRICE + 1, 2**256 - 1, 2**256, 10**78 - 1])
@pytest.mark.parametrize("fund", [False, True])
def test_a_price_above_max_price_is_refused_before_a_transaction_is_built(
    chain_api: ChainApi, price: int, fund: bool
) -> None:
    block = chain_api.stack.chain.block_number
    body = refused(
        _create(chain_api, chain_api.stack.accounts.supplier.address, fund=fund, price=str(price)),
        "body",
        "terms",
        "price",
    )
    assert str(MAX_PRICE) in body["message"]
    assert chain_api.stack.chain.block_number == block


def test_a_ruling_above_max_price_is_refused(chain_api: ChainApi) -> None:
    for amount in (MAX_PRICE + 1, 2**256):
        r = chain_api.call(
            "POST", "/orders/1/ruling", "arbiter", json={"buyer_amount": str(amount)}
        )
        refused(r, "body", "buyer_amount")


def test_funding_beyond_the_buyers_balance_is_502_tx_rejected_saying_who_lacks_what(
    chain_api: ChainApi,
) -> None:
    buyer = chain_api.stack.accounts.buyer.address
    balance = chain_api.stack.chain.balance(buyer)
    price = balance + 1
    r = _create(chain_api, chain_api.stack.accounts.supplier.address, fund=True, price=str(price))
    assert r.status_code == 502, r.text
    body = r.json()
    assert body["code"] == "tx_rejected"
    assert body["args"] == {"account": buyer, "balance": str(balance), "value": str(price)}
    assert f"{buyer} holds {balance} wei" in body["message"]


# --- what schemathesis found once the run had every check -------------------------------


def test_an_unknown_query_parameter_is_refused_by_name(chain_api: ChainApi) -> None:
    r = chain_api.call("GET", "/orders", "buyer", params={"stat": "Created", "limit": "5"})
    body = refused(r, "query", "stat")
    assert body["details"][0]["type"] == "extra_forbidden"
    assert chain_api.call("GET", "/orders", "buyer", params={"state": "Created"}).status_code == 200


def test_a_wrong_method_names_every_method_of_the_path(chain_api: ChainApi) -> None:
    r = chain_api.client.request("OPTIONS", "/orders", headers={"X-API-Key": "dev-buyer"})
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
    assert r.headers["allow"] == "GET, POST"  # two routes in FastAPI, one resource
    r = chain_api.client.request("DELETE", "/orders/1", headers={"X-API-Key": "dev-buyer"})
    assert r.status_code == 405 and r.headers["allow"] == "GET"


def test_request_integers_stop_at_2_53_minus_1(chain_api: ChainApi) -> None:
    """Beyond 2^53 a JSON number is not exact in most clients (nor in schemathesis)."""
    refused(chain_api.call("GET", f"/orders/{2**53}", "buyer"), "path", "order_id")
    assert chain_api.call("GET", f"/orders/{2**53 - 1}", "buyer").status_code == 404


def test_a_body_that_is_not_utf8_is_the_documented_422(chain_api: ChainApi) -> None:
    r = chain_api.client.post(
        "/orders",
        content=b'{"supplier": "\xff"}',
        headers={"X-API-Key": "dev-buyer", "content-type": "application/json"},
    )
    body = refused(r, "body")
    assert "not UTF-8" in body["message"]
    assert (
        "400"
        not in chain_api.client.get("/openapi.json").json()["paths"]["/orders"]["post"]["responses"]
    )
