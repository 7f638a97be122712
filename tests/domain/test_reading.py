"""The reading has one definition (backend.domain.reading.Reading); the contract's
struct, the database columns, the rules' view and the API schemas must agree with it,
so a field added in one place and not the others fails here."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import BigInteger, Integer, SmallInteger

from backend.api import convert
from backend.api.schemas import ContractReading, ReadingPublic
from backend.domain.fields import FieldSpec, int_range
from backend.domain.reading import (
    EIP712_TYPES,
    READING_ATTRS,
    READING_FIELDS,
    READING_SPEC,
    STORED_READING_ATTRS,
    Reading,
    SignedReading,
    StoredReading,
    signed_reading,
)
from backend.store import repositories as repo
from backend.store.models import ReadingRow
from backend.telemetry import eip712
from tests.domain.abi import struct

READING = Reading(
    order_id=7,
    seq=3,
    timestamp=1_700_000_000,
    temperature_centi_c=-425,
    humidity_permille=551,
    shock_milli_g=1200,
    latitude_e6=51_950_000,
    longitude_e6=4_050_000,
    flags=5,
)
SIGNED = SignedReading(READING, "0x" + "Ab" * 20, b"\x1b" * 65)
#: What a stored reading row holds beyond the reading's own fields.
ROW_EXTRAS = {"id", "device", "signature", "digest", "received_at", "batch_seq"}


def test_fields_match_the_contracts_reading_struct() -> None:
    abi = struct("QualityVerification", "struct IQualityVerification.Reading")
    assert [(name, t) for name, t, _ in abi] == list(EIP712_TYPES)
    assert [f.wire for f in READING_SPEC] == list(READING_FIELDS)


def test_the_eip712_type_string_is_derived_from_the_fields() -> None:
    assert eip712.READING_TYPE == (
        "Reading(uint256 orderId,uint32 seq,uint64 timestamp,int32 temperatureCentiC,"
        "uint16 humidityPermille,uint32 shockMilliG,int32 latitudeE6,int32 longitudeE6,"
        "uint8 flags)"
    )


def test_ranges_lie_within_the_solidity_types() -> None:
    for f in READING_SPEC:
        lo, hi = int_range(f.sol_type)
        assert f.lo is not None and f.hi is not None
        assert lo <= f.lo <= f.hi <= hi, f.attr


def test_store_columns_are_the_reading_fields_plus_what_the_oracle_adds() -> None:
    columns = [c.name for c in ReadingRow.__table__.columns]
    assert set(columns) == set(READING_ATTRS) | ROW_EXTRAS
    in_table = [c for c in columns if c in READING_ATTRS]
    assert in_table == list(READING_ATTRS), "columns out of the struct's order"


#: Reading fields whose column cannot hold the Solidity type's whole range, and why
#: that is safe. Anything else must fit.
NARROWER_COLUMNS = {
    # Orders are numbered 1, 2, 3 ...: a larger id is bound to no order and refused
    # before storage (docs/oracle.md, "Storage").
    "order_id": BigInteger,
    # Unix seconds; ingest refuses readings from the future (future_timestamp).
    "timestamp": BigInteger,
}
CAPACITY = {
    SmallInteger: (-(2**15), 2**15 - 1),
    Integer: (-(2**31), 2**31 - 1),
    BigInteger: (-(2**63), 2**63 - 1),
}


@pytest.mark.parametrize("f", READING_SPEC, ids=lambda s: s.attr)
def test_each_column_holds_its_fields_range(f: FieldSpec) -> None:
    column = ReadingRow.__table__.columns[f.attr]
    kind = type(column.type)  # exact: BigInteger and SmallInteger subclass Integer
    if f.attr in NARROWER_COLUMNS:
        assert kind is NARROWER_COLUMNS[f.attr]
        return
    lo, hi = CAPACITY[kind]
    assert f.lo is not None and f.hi is not None
    assert lo <= f.lo and f.hi <= hi, f"{f.attr} does not fit {column.type}"


def test_rows_are_built_from_the_reading() -> None:
    row = repo.reading_row(SIGNED, b"\x02" * 32, 12.5)
    assert set(row) == set(repo.READING_INSERT_COLUMNS)
    assert set(repo.READING_INSERT_COLUMNS) == set(READING_ATTRS) | ROW_EXTRAS - {"id", "batch_seq"}
    assert Reading.of(_Row(row)) == READING


class _Row:
    def __init__(self, values: dict[str, object]) -> None:
        self.__dict__.update(values)


def test_the_rules_view_is_the_reading_plus_id_device_and_arrival() -> None:
    names = tuple(f.name for f in dataclasses.fields(StoredReading))
    assert names == STORED_READING_ATTRS
    assert set(names) <= set(READING_ATTRS) | ROW_EXTRAS
    values = repo.reading_row(SIGNED, b"\x02" * 32, 12.5) | {"id": 41, "batch_seq": None}
    from_row = StoredReading.from_row(_Row(values))
    assert from_row == StoredReading.of(41, SIGNED, 12.5)
    assert Reading.of(from_row) == READING


def test_a_stored_row_gives_back_the_signed_reading() -> None:
    values = repo.reading_row(SIGNED, b"\x02" * 32, 12.5) | {"id": 41, "batch_seq": None}
    assert signed_reading(_Row(values)) == SIGNED


def test_api_schemas_show_every_reading_field() -> None:
    public = list(ReadingPublic.model_fields)
    assert set(public) == set(READING_ATTRS) | ROW_EXTRAS - {"id"}
    assert [p for p in public if p in READING_ATTRS] == list(READING_ATTRS)
    assert tuple(ContractReading.model_fields) == READING_FIELDS
    values = repo.reading_row(SIGNED, b"\x02" * 32, 12.5) | {"id": 41, "batch_seq": 2}
    shown = ReadingPublic.model_validate(convert.reading(_Row(values)))
    assert Reading.of(shown) == READING
    assert shown.signature == "0x" + "1b" * 65 and shown.batch_seq == 2
