"""The README stays true: its curl walkthrough runs, as written, against `trustship serve`.

The walkthrough block (the one starting ``API=http``) is taken from README.md and run
with bash (`set -euo pipefail`) against a serve process on a free port, with its
broker a mosquitto started for the test.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.serve import start_serve
from testkit.servers import Server, free_port, start_mosquitto, wait_for_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def walkthrough() -> str:
    blocks = re.findall(r"```sh\n(API=http.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) == 1, "README.md must hold exactly one curl walkthrough block"
    return blocks[0]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    broker: Server = start_mosquitto("allow_anonymous true\n")
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RPC_URL", "DATABASE_URL", "TRUSTSHIP_API_URL"}
    }
    env.update(
        API_PORT=str(port),
        MQTT_URL=broker.extra["url"],
        DEPLOYMENT_FILE=str(tmp_path / "deployment.json"),
    )
    log = tmp_path / "serve.log"
    proc = start_serve(env, tmp_path, log)
    try:
        wait_for_port(port, proc, timeout=60)
        yield port, log
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=30) == 0, "serve did not exit cleanly on SIGTERM"
        finally:
            if proc.poll() is None:
                proc.kill()
            broker.stop()


def test_the_readme_curl_walkthrough_runs_as_written(serve: tuple[int, Path]) -> None:
    port, log = serve
    result = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + walkthrough()],
        env={**os.environ, "API_PORT": str(port)},
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    out = result.stdout
    tail = log.read_text(errors="replace")[-4000:]
    assert result.returncode == 0, f"{out}\n{result.stderr}\n--- serve log ---\n{tail}"
    for expected in (
        '"PurchaseOrdersNotSupplier"',
        '"Funded"',
        '"QualityVerificationUncertifiedDevice"',  # the supplier's own device
        '"Shipped"',
        '"not_found"',
        '"read_only"',
        '"refund_bps": 300',  # 3 started hours late at 1 %/h
        '"state": "Settled"',
        '"OrderSettled"',
        '"amount": "1000000000000000000"',  # the supplier withdraws the whole price
        '"bizStep": "shipping"',  # the order's EPCIS 2.0 events (docs/epcis.md)
        '"count": 1',  # a partner's receiving event captured ...
        '"biz_step": "receiving"',  # ... and shown with its order
        '"schemaVersion": "2.0"',  # trustship export, through the API
    ):
        assert expected in out, f"{expected} not in the walkthrough's output:\n{out}"
