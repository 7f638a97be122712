"""Early warning on real servers: during the cold-chain breach scenario the oracle
(``python -m backend.oracle`` against anvil, mosquitto from deploy/mosquitto.conf and
SQLite) raises the shipment's risk score and warns of the breach before it is proven
on chain, (tests/api/test_risk.py reads such snapshots through GET /orders/{id}/risk).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.domain.alert import AlertKind, ReasonKind
from backend.risk import RiskConfig
from backend.store.models import AlertRow, ChainEventRow, RiskSnapshotRow
from iot_simulator import publish
from tests.integration.oracle_stack import oracle_stack, wait_until_done

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

#: the contract's rule: the warning must leave time to act
MIN_LEAD_SECS = 15 * 60


def test_cold_chain_breach_is_warned_before_it_is_proven(tmp_path: Path) -> None:
    with oracle_stack("sqlite", tmp_path) as stack:
        stack.oracle.start()
        stack.oracle.wait_subscribed()
        (fleet,) = stack.open_and_ship(["cold_chain_breach.yaml"])
        stack.move_clock_past_the_voyages()
        # five days in about six seconds: readings cross the broker in small batches
        stats = publish(fleet, stack.device_url, speed=fleet.scenario.end_offset_s / 6,
                        progress=False, connection="device")  # fmt: skip
        assert stats.refused == 0
        wait_until_done(stack, timeout=120)
        (order_id,) = fleet.order_ids.values()
        with Session(stack.engine) as s:
            alerts = list(
                s.scalars(
                    select(AlertRow).where(AlertRow.order_id == order_id).order_by(AlertRow.id)
                )
            )
            snaps = list(
                s.scalars(
                    select(RiskSnapshotRow)
                    .where(RiskSnapshotRow.order_id == order_id)
                    .order_by(RiskSnapshotRow.id)
                )
            )
            proven = s.scalars(
                select(ChainEventRow).where(
                    ChainEventRow.order_id == order_id, ChainEventRow.event == "ExcursionProven"
                )
            ).all()
        assert len(proven) == 1, "the breach was proven on chain once"
        detected = next(a for a in alerts if a.kind == AlertKind.BREACH_DETECTED)
        breach_at = detected.at  # the evidence's last reading: the breach is provable
        warnings = [a for a in alerts if a.kind == AlertKind.RISK_BREACH]
        assert warnings, [a.kind for a in alerts]
        first = warnings[0]
        lead = breach_at - first.at
        print(
            f"\nrisk_breach at +{first.at - fleet.t0} s ({first.message}); breach provable at "
            f"+{breach_at - fleet.t0} s: lead {lead / 60:.0f} min (forecast "
            f"{first.data['lead_secs'] / 60:.0f} min)"
        )
        assert lead >= MIN_LEAD_SECS
        # raised by the oracle before the breach proof, not reconstructed afterwards
        assert first.id < detected.id and first.created_at <= detected.created_at
        # one warning per device for the episode (two loggers in the container)
        assert len({a.device for a in warnings}) == len(warnings) <= 2
        # the score rose from calm to high before the breach was provable
        before = [x for x in snaps if x.at < breach_at]
        assert before[0].score < 20
        peak = max(before, key=lambda x: x.score)
        # The claim is the model's own: out of calm, above its low level, before the
        # breach (how high exactly depends on where the kept snapshots fall).
        assert peak.score >= RiskConfig().level_low and peak.at < breach_at
        assert ReasonKind.TEMPERATURE_TREND in [r["kind"] for r in peak.reasons]
        after = [x for x in snaps if x.at >= breach_at]
        assert after and max(x.score for x in after) == 100
        level = [a for a in alerts if a.kind == AlertKind.RISK_LEVEL and a.at < breach_at]
        print(
            f"score: {before[0].score:.0f} → {peak.score:.0f} before the breach, then 100"
            + (f"; risk_level {level[0].message!r} {(breach_at - level[0].at) / 60:.0f} min "
               "before the breach" if level else "")
        )  # fmt: skip
