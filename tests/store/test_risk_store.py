"""Risk snapshots in the store, on SQLite and PostgreSQL (migration 0004)."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from backend.store import repositories as repo


def snap(order_id: int, at: int, score: float, episodes: dict | None = None) -> dict:
    return {
        "order_id": order_id,
        "at": at,
        "score": score,
        "reasons": [
            {
                "kind": "silence",
                "value": 3600,
                "weight": 35.0,
                "strength": 0.5,
                "points": 17.5,
                "text": "no reading for 1.0 h",
            }
        ],  # fmt: skip
        "eta": {
            "timestamp": 1_800_100_000,
            "confidence": 0.8,
            "late_secs": 0,
            "penalty_bps": 0,
            "penalty_amount": str(10**30),
        },  # fmt: skip
        "breach_in_secs": None,
        "state": {"episodes": episodes or {}, "level_armed": True},
    }


def test_snapshots_newest_per_order_and_history(engine: Engine) -> None:
    with Session(engine) as s, s.begin():
        assert repo.insert_risk_snapshots(s, []) == 0
        repo.insert_risk_snapshots(s, [snap(1, 100, 10.0), snap(2, 100, 50.0)])
        repo.insert_risk_snapshots(s, [snap(1, 200, 42.5, {"breach:0xabc": 7})])
    with Session(engine) as s:
        latest = repo.latest_risk(s, [1, 2, 3])
        assert set(latest) == {1, 2}
        assert latest[1].score == 42.5 and latest[1].state["episodes"] == {"breach:0xabc": 7}
        assert latest[1].eta is not None and latest[1].eta["penalty_amount"] == str(10**30)
        history = repo.risk_history(s, 1)
        assert [h.at for h in history] == [200, 100]
        assert [h.at for h in repo.risk_history(s, 1, before_id=history[0].id)] == [100]
        assert repo.risk_history(s, 3) == []
        assert repo.latest_risk(s, []) == {}
