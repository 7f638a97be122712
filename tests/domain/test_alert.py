"""The alert is declared once (backend/domain/alert.py): the rules' intent, the store's
row and the API's schema carry its fields, in its order."""

from __future__ import annotations

from backend.api.schemas import AlertPublic
from backend.domain.alert import ALERT_ATTRS
from backend.oracle.rules import AlertIntent
from backend.store.models import AlertRow


def test_the_api_shows_the_alert_with_its_row_id_and_storage_time() -> None:
    assert tuple(AlertPublic.model_fields) == ("id", *ALERT_ATTRS, "created_at")


def test_the_alerts_table_has_a_column_for_every_field_of_the_rules_intent() -> None:
    intent = AlertIntent(3, None, "door_open", "warning", "door opened", 1_700_000_000, {}, "k")
    row = intent.as_row()
    assert tuple(row) == (*ALERT_ATTRS, "dedup_key")
    assert row["order_id"] == 3 and row["dedup_key"] == "k" and row["device"] is None
    assert set(row) <= set(AlertRow.__table__.columns.keys())
