"""The sharing records and their tables: a column for every field, the grant states."""

from __future__ import annotations

import dataclasses

import pytest

from backend.domain.alert import Alert
from backend.domain.order import Terms
from backend.domain.reading import ReadingFields
from backend.domain.sensitivity import HIGH, Coarsening, classed, field_classes
from backend.domain.sharing import (
    DISCLOSURE_FIELDS,
    GRANT_FIELDS,
    STORED_GRANT_STATES,
    GrantState,
)
from backend.store.models import DisclosureRow, GrantRow


def test_the_tables_have_a_column_for_every_field() -> None:
    assert set(GrantRow.__table__.columns.keys()) == set(GRANT_FIELDS)
    assert set(DisclosureRow.__table__.columns.keys()) == set(DISCLOSURE_FIELDS)


def test_the_state_column_holds_every_stored_state() -> None:
    width = GrantRow.__table__.c.state.type.length
    assert all(len(s.value) <= width for s in STORED_GRANT_STATES)
    assert GrantState.EXPIRED not in STORED_GRANT_STATES


@pytest.mark.parametrize("record", [ReadingFields, Terms, Alert])
def test_every_domain_field_declares_its_class(record: type) -> None:
    classes = field_classes(record)
    assert set(classes) == {f.name for f in dataclasses.fields(record)}


def test_a_field_without_a_class_is_an_error() -> None:
    @dataclasses.dataclass
    class Bare:
        x: int = dataclasses.field(metadata=classed(HIGH, Coarsening.REGION))
        y: int = 0

    with pytest.raises(TypeError, match=r"Bare\.y"):
        field_classes(Bare)
    with pytest.raises(ValueError):
        classed(HIGH.__class__("medium"), Coarsening.REGION)
