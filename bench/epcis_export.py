"""How long an order's EPCIS 2.0 document takes to build, hash and check against GS1's
schema, for a long voyage (docs/epcis.md). Prints the figures and saves them to
bench/results/epcis_export.json.

    .venv/bin/python bench/epcis_export.py [--days 5] [--devices 2] [--interval 60]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

from backend.core.settings import Settings
from backend.sharing.epcis import EpcisRecords, Identity, build_document
from backend.sharing.schema import load_schema

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "epcis_export.json"
T0 = 1_800_000_000


def voyage(days: int, devices: int, interval: int) -> EpcisRecords:
    order = SimpleNamespace(
        id=1, created_at=T0 - 600, shipped_at=T0, delivered_at=T0 + days * 86400,
        breached=False, late_seconds=0, min_temp_centi_c=200, max_temp_centi_c=800,
        max_humidity_permille=900, max_shock_milli_g=5000,
    )  # fmt: skip
    readings = [
        SimpleNamespace(
            device=f"0x{d + 1:040x}",
            seq=i,
            timestamp=T0 + i * interval,
            temperature_centi_c=500 + (i * 37) % 400,
            humidity_permille=550 + i % 50,
            shock_milli_g=(i * 13) % 6000,
            batch_seq=i // 1000,
        )  # fmt: skip
        for d in range(devices)
        for i in range(days * 86400 // interval)
    ]
    commitments = [
        SimpleNamespace(batch_seq=b, root=b"\x01" * 32, tx_hash=b"\x02" * 32, log_index=b)
        for b in range(len(readings) // 1000 + 1)
    ]
    return EpcisRecords(order, readings, commitments, [])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--interval", type=int, default=60, help="seconds between readings")
    args = parser.parse_args()
    records = voyage(args.days, args.devices, args.interval)
    identity = Identity(31337, "0x5FbDB2315678afecb367f032d93F642f64180aa3")
    schema = load_schema(Settings().EPCIS_SCHEMA_DIR)
    start = time.perf_counter()
    document = build_document(records, identity)
    built = time.perf_counter()
    violations = schema.violations(document)
    checked = time.perf_counter()
    thorough = schema.violations_of(document)
    slow = time.perf_counter()
    figures = {
        "readings": len(records.readings),
        "events": len(document["epcisBody"]["eventList"]),
        "bytes": len(json.dumps(document)),
        "build_and_hash_s": round(built - start, 3),
        "schema_check_s": round(checked - built, 3),
        "schema_check_jsonschema_only_s": round(slow - checked, 3),
        "valid": not violations and not thorough,
    }
    for k, v in figures.items():
        print(f"{k:>30}: {v}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"args": vars(args), **figures}, indent=2) + "\n")


if __name__ == "__main__":
    main()
