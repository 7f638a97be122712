"""Alert kinds, severities and reason codes: one definition, and what derives from it."""

from __future__ import annotations

from backend.domain.alert import (
    ALERT_KINDS,
    REASON_KINDS,
    RISK_ALERT_KINDS,
    AlertKind,
    ReasonKind,
    Severity,
)
from backend.store.models import AlertRow
from testkit import REPO


def test_kinds_fit_the_alerts_table() -> None:
    kind_len = AlertRow.__table__.c.kind.type.length
    severity_len = AlertRow.__table__.c.severity.type.length
    assert all(len(k) <= kind_len for k in ALERT_KINDS)
    assert all(len(s.value) <= severity_len for s in Severity)
    assert len(set(ALERT_KINDS)) == len(ALERT_KINDS) == len(AlertKind)
    assert len(set(REASON_KINDS)) == len(ReasonKind)
    assert set(RISK_ALERT_KINDS) <= set(ALERT_KINDS)
    assert all(k.startswith("risk_") for k in RISK_ALERT_KINDS)


def test_the_docs_name_every_alert_kind_and_reason() -> None:
    oracle = (REPO / "docs" / "oracle.md").read_text()
    risk = (REPO / "docs" / "risk.md").read_text()
    for kind in ALERT_KINDS:
        assert f"`{kind}`" in oracle + risk, f"docs do not describe the {kind} alert"
    for reason in REASON_KINDS:
        assert f"`{reason}`" in risk, f"docs/risk.md does not describe the {reason} reason"
