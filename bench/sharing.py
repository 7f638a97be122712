"""The sharing policy's cost per answer: the filter alone, in process.

    .venv/bin/python bench/sharing.py [--readings 100] [--rounds 300]

Filters one ``GET /orders/{id}/telemetry`` page (``ReadingsPublic`` of ``--readings``
readings) as three viewers see it — the supplier (its own data), an auditor in the
same jurisdiction, an auditor elsewhere under an approved grant (medium released, the
device pseudonymised, positions coarsened, the signature withheld) — with the owners
and grants looked up in memory (the API adds one indexed query for the order's owners
and one for the viewer's grants). Prints the median microseconds per page and saves
bench/results/sharing.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

from backend.api.schemas import ReadingPublic, ReadingsPublic
from backend.api.sharing import shape_of
from backend.domain.sharing import Grant
from backend.sharing.policy import OrderOwners, Pseudonyms, Release, Viewer
from testkit import REPO

RESULTS = REPO / "bench" / "results" / "sharing.json"
SUPPLIER, BUYER, AUDITOR = "0x" + "5" * 40, "0x" + "b" * 40, "0x" + "a" * 40
OWNERS = OrderOwners(1, BUYER, SUPPLIER, "EU", "EU")
GRANT = Grant(
    1,
    1,
    "medium",
    "a",
    AUDITOR,
    "US",
    "audit",
    "approved",
    0,
    "s",
    "supplier",
    1,
    None,
    2**40,
    None,
)


def page(n: int) -> dict[str, object]:
    reading = {
        "order_id": 1,
        "device": "0x" + "d" * 40,
        "seq": 0,
        "timestamp": 1_800_000_000,
        "temperature_centi_c": 450,
        "humidity_permille": 500,
        "shock_milli_g": 10,
        "latitude_e6": 51_950_000,
        "longitude_e6": 4_050_000,
        "flags": 0,
        "signature": "0x" + "11" * 65,
        "digest": "0x" + "22" * 32,
        "batch_seq": 1,
        "received_at": 1.0,
    }
    assert set(reading) == set(ReadingPublic.model_fields)
    return {"data": [dict(reading, seq=i) for i in range(n)], "count": n}


def per_page(viewer: Viewer, body: dict[str, object], rounds: int) -> float:
    shape = shape_of(ReadingsPublic)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        r = Release(
            viewer,
            10,
            lambda _o: OWNERS,
            lambda _o: [GRANT],
            scoped_order=1,
            pseudonyms=Pseudonyms.for_viewer("bench-pseudonym-key-" * 2, viewer),
        )
        r.apply(body, shape)
        r.statement()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readings", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()
    body = page(args.readings)
    viewers = {
        "supplier (own data)": Viewer("supplier", SUPPLIER, frozenset({"supplier"}), "EU"),
        "auditor, same jurisdiction": Viewer("auditor", AUDITOR, frozenset({"auditor"}), "EU"),
        "auditor elsewhere, under a grant": Viewer("a", AUDITOR, frozenset({"auditor"}), "US"),
    }
    figures = {name: round(per_page(v, body, args.rounds), 1) for name, v in viewers.items()}
    for name, us in figures.items():
        print(f"{name:36} {us:10.1f} µs per page of {args.readings} readings")
    RESULTS.write_text(
        json.dumps(
            {
                "readings_per_page": args.readings,
                "median_us_per_page": figures,
                "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
