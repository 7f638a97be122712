"""The ingest path on both databases (PostgreSQL's insert is a different statement)."""

from __future__ import annotations

import json

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from backend.domain.actions import FLEET
from backend.oracle.batcher import CommitmentBatcher
from backend.oracle.ingest import Ingestor
from backend.oracle.metrics import Metrics
from backend.oracle.rules import RulesEngine
from backend.store import repositories as repo
from backend.telemetry.fleet import fleet_tree
from testkit.readings import DEVICES, DOMAIN, KEYS, msg, seed


def test_store_dedup_rules_and_batches_on_each_database(engine: Engine) -> None:
    seed(engine, {1: [0, 1]})
    metrics = Metrics()
    ing = Ingestor(engine, DOMAIN, rules=RulesEngine(), metrics=metrics)
    first = [msg(KEYS[0], 1, s, temperature_centi_c=1000) for s in range(1, 13)]
    first += [msg(KEYS[1], 1, s) for s in range(1, 6)]
    res = ing.ingest(first)
    assert res.stored == 17 and res.actions == 1
    res = ing.ingest([first[0], msg(KEYS[0], 1, 2, temperature_centi_c=999), msg(KEYS[1], 1, 6)])
    assert [(v.status, v.reason) for v in res.verdicts] == [
        ("duplicate", None),
        ("rejected", "seq_reused"),
        ("stored", None),
    ]
    with Session(engine) as s:
        (entry,) = repo.outbox_for(s, 1)
        assert entry.kind == "prove_excursion" and len(entry.payload["reading_ids"]) == 12
        page = repo.telemetry_page(s, 1, device=DEVICES[1], limit=100)
        assert [r.seq for r in page.items] == [1, 2, 3, 4, 5, 6]
        assert bytes(page.items[0].signature) == bytes.fromhex(
            json.loads(msg(KEYS[1], 1, 1).payload)["signature"][2:]
        )
    batcher = CommitmentBatcher(engine, max_readings=10, metrics=metrics)
    assert batcher.tick() == 1  # 18 readings: one full batch of 10 is due, 8 wait
    assert batcher.tick(flush=True) == 1
    with Session(engine) as s:
        batches = repo.commitments_for(s, 1)
        assert [(c.batch_seq, c.reading_count) for c in batches] == [(1, 10), (2, 8)]
        rows = repo.readings_by_ids(s, batches[0].reading_ids)
        leaves = [(r.order_id, r.device, bytes(r.digest)) for r in rows]
        assert fleet_tree(leaves).root == batches[0].root
        assert [o.dedup_key for o in repo.outbox_for(s, FLEET)] == ["commit:1", "commit:2"]
        assert repo.uncommitted_summary(s) == (0, None)
