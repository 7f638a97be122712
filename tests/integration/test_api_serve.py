"""`trustship serve` as a user runs it: a subprocess against a real anvil, mosquitto and
PostgreSQL. Parties act over HTTP; the device publishes signed readings over MQTT; the
oracle in the same process proves arrival; SIGTERM stops everything cleanly."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from backend.chain.testing import certify, device_key, issuer_key
from backend.telemetry import Domain, Reading, device_address
from testkit.readings import wire_message
from testkit.serve import order_terms, served_stack

pytestmark = pytest.mark.integration


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, str, subprocess.Popen[bytes], Path]]:
    # chain time advances while idle
    with served_stack(tmp_path, "api_serve", anvil_args=("--block-time", "1")) as s:
        yield s.base, s.broker.extra["url"], s.proc, s.log


def call(base: str, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, base + path, headers={"X-API-Key": key}, timeout=60, **kw)


def test_serve_end_to_end_and_clean_shutdown(
    served: tuple[str, str, subprocess.Popen[bytes], Path], tmp_path: Path
) -> None:
    base, mqtt_url, proc, log = served
    supplier = call(base, "GET", "/account", "dev-supplier").json()["party"]["address"]
    arbiter = call(base, "GET", "/account", "dev-arbiter").json()["party"]["address"]
    import json

    manifest = json.loads((tmp_path / "deployment.json").read_text())  # dev mode deployed
    domain = Domain(manifest["chain_id"], manifest["addresses"]["QualityVerification"])
    now = int(time.time())
    terms = order_terms(
        now, arbiter, price=str(2 * 10**18), tolerated_excursion_secs=1800, breach_refund_bps=3000
    )
    r = call(
        base,
        "POST",
        "/orders",
        "dev-buyer",
        json={"supplier": supplier, "terms": terms, "fund": True},
    )
    assert r.status_code == 201, r.text
    oid = r.json()["order"]["id"]
    assert call(base, "POST", f"/orders/{oid}/accept", "dev-supplier").status_code == 200
    key = device_key(777)
    dev = device_address(key)
    c = certify(domain, oid, dev, issuer_key(1)).certificate
    cert = {
        "order_id": oid,
        "device": dev,
        "issuer": c.issuer,
        "valid_from": c.valid_from,
        "valid_until": c.valid_until,
        "signature": "0x" + certify(domain, oid, dev, issuer_key(1)).signature.hex(),
    }
    shipped = call(
        base, "POST", f"/orders/{oid}/ship", "dev-supplier", json={"certificates": [cert]}
    )
    assert shipped.status_code == 200 and shipped.json()["order"]["state"] == "Shipped"
    shipped_at = shipped.json()["order"]["shipped_at"]

    # the device publishes over MQTT: en route, then inside the destination box
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(host, int(port))
    client.loop_start()
    for seq, (lat, lon) in enumerate(
        [(40_000_000, 0), (45_000_000, 2_000_000), (51_950_000, 4_050_000)], 1
    ):
        reading = Reading(oid, seq, shipped_at + seq, 450, 500, 0, lat, lon, 0)
        client.publish(*wire_message(key, reading, domain), qos=1).wait_for_publish(10)
    client.loop_stop()
    client.disconnect()

    deadline = time.monotonic() + 60
    while True:
        order = call(base, "GET", f"/orders/{oid}", "dev-buyer").json()
        if order["state"] == "Settled":
            break
        assert time.monotonic() < deadline, (order, log.read_text()[-3000:])
        time.sleep(0.5)
    assert order["delivered_at"] == shipped_at + 3
    assert order["settlement"] == {"buyer_amount": "0", "supplier_amount": str(2 * 10**18)}
    telemetry = call(base, "GET", f"/orders/{oid}/telemetry", "dev-auditor").json()
    assert telemetry["count"] == 3
    metrics = httpx.get(base + "/metrics").text.splitlines()  # the API's and the oracle's
    assert "trustship_ingest_accepted_total 3.0" in metrics
    assert 'trustship_api_requests_total{method="POST",route="/orders",status="201"} 1.0' in metrics
    withdrawn = call(base, "POST", "/account/withdraw", "dev-supplier", json={})
    assert withdrawn.status_code == 200 and withdrawn.json()["amount"] == str(2 * 10**18)

    # SIGTERM: uvicorn, then the oracle stop; the process exits 0 promptly
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]
    text_log = log.read_text()
    assert "oracle stopped" in text_log
    assert "Traceback" not in text_log
