"""Chain actions are a closed set of typed records; their outbox payloads are derived
from their fields and must decode back to the same record, for every kind."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

import pytest
from sqlalchemy.orm import Session

from backend.domain import actions
from backend.domain.actions import (
    ACTIONS,
    COMMIT_LANE,
    KINDS,
    ActionPayloadError,
    ChainAction,
    decode_action,
    lane,
)
from backend.oracle import chain_actions
from backend.store.models import OutboxRow

DEVICE = "0x" + "Ab" * 20
DEVICE2 = "0x" + "Cd" * 20


def sample(cls: type[ChainAction], order_id: int = 12) -> ChainAction:
    """An instance of ``cls`` with a distinct value in every field (built from its types)."""
    values: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for i, f in enumerate(dataclasses.fields(cls)):
        t = hints[f.name]
        values[f.name] = {
            int: 100 + i,
            str: DEVICE,
            bytes: bytes([i]) * 32,
            tuple[int, ...]: (i, i + 1, i + 2),
            tuple[str, ...]: (DEVICE,),
        }[t]
    values["order_id"] = order_id
    return cls(**values)


def test_the_set_is_closed() -> None:
    # By name: a slots dataclass replaces its class, so the first one may linger.
    names = {cls.__qualname__ for cls in _subclasses(ChainAction)}
    assert names == {cls.__qualname__ for cls in ACTIONS.values()}
    assert tuple(cls.kind for cls in ACTIONS.values()) == KINDS
    assert len(set(KINDS)) == len(KINDS)


def _subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_payload_round_trips_through_json(kind: str) -> None:
    action = sample(ACTIONS[kind])
    stored = json.loads(json.dumps(action.payload()))  # what the outbox's JSON column holds
    assert decode_action(kind, action.order_id, stored) == action
    assert "order_id" not in stored  # it has a column of its own


@pytest.mark.parametrize("kind", KINDS)
def test_the_outbox_columns_hold_every_kind(kind: str) -> None:
    action = sample(ACTIONS[kind], order_id=2**62)
    assert len(kind) <= OutboxRow.__table__.columns["kind"].type.length
    assert len(action.dedup_key) <= OutboxRow.__table__.columns["dedup_key"].type.length


def test_payloads_keep_the_format_already_stored() -> None:
    """Entries written before the records existed must still decode (no migration)."""
    stored = {
        "commit_batch": {"batch_seq": 3, "root": "0x" + "ab" * 32, "count": 17},
        "anchor_disclosures": {"head_seq": 4, "head_hash": "0x" + "cd" * 32},
        "prove_excursion": {
            "device": DEVICE,
            "reading_ids": [5, 6, 7],
            "first_seq": 10,
            "last_seq": 12,
            "started_at": 1000,
            "ended_at": 1660,
        },
        "prove_shock": {"reading_id": 9, "device": DEVICE, "seq": 4},
        "prove_arrival": {"reading_ids": [9, 12], "devices": [DEVICE, DEVICE2], "timestamp": 1234},
        "settle": {"dispute_window_closes_at": 99},
    }
    assert set(stored) == set(KINDS)
    for kind, payload in stored.items():
        action = decode_action(kind, 1, payload)
        assert action.payload() == payload
        assert list(action.payload()) == list(payload)  # same key order, same JSON text
    assert decode_action("commit_batch", 1, stored["commit_batch"]) == actions.CommitBatch(
        order_id=1, batch_seq=3, root=bytes.fromhex("ab" * 32), count=17
    )


@pytest.mark.parametrize(
    ("kind", "payload"),
    [
        ("commit_batch", {"batch_seq": 3, "root": "0xab"}),  # missing count
        ("commit_batch", {"batch_seq": 3, "root": "0xab", "count": 1, "x": 1}),  # extra
        ("commit_batch", {"batch_seq": "3", "root": "0xab", "count": 1}),  # a string
        ("commit_batch", {"batch_seq": True, "root": "0xab", "count": 1}),  # a boolean
        ("commit_batch", {"batch_seq": 3, "root": "ab", "count": 1}),  # no 0x
        ("commit_batch", {"batch_seq": 3, "root": "0xzz", "count": 1}),  # not hex
        ("prove_shock", {"reading_id": 9, "device": 5, "seq": 4}),
        ("prove_excursion", {**{"device": DEVICE, "first_seq": 1, "last_seq": 2},
                             "started_at": 1, "ended_at": 2, "reading_ids": [1, "2"]}),
        ("prove_excursion", {**{"device": DEVICE, "first_seq": 1, "last_seq": 2},
                             "started_at": 1, "ended_at": 2, "reading_ids": 1}),
        ("settle", []),
        ("bridge", {}),  # no such kind
    ],
)  # fmt: skip
def test_a_payload_that_does_not_fit_is_refused(kind: str, payload: Any) -> None:
    with pytest.raises(ActionPayloadError):
        decode_action(kind, 1, payload)


def test_lanes_ranks_and_dedup_keys() -> None:
    # the disclosure log's anchor follows its commitment in the commitments' lane
    assert [k for k in KINDS if lane(k) == COMMIT_LANE] == [
        actions.CommitBatch.kind,
        actions.AnchorDisclosures.kind,
    ]
    assert sample(actions.AnchorDisclosures, 0).dedup_key == "anchor:101"  # once per head
    assert lane("bridge") != COMMIT_LANE
    assert (
        actions.ProveExcursion.rank
        == actions.ProveShock.rank
        < actions.ProveArrival.rank
        < actions.Settle.rank
    )
    breach = {sample(actions.ProveExcursion, 4).dedup_key, sample(actions.ProveShock, 4).dedup_key}
    assert breach == {"breach:4"}  # one breach proof per order, whichever comes first
    assert sample(actions.ProveArrival, 4).dedup_key == "arrival:4"
    assert sample(actions.Settle, 4).dedup_key == "settle:4"
    # one fleet root per batch, whatever the order (a fleet commitment's order id is 0)
    assert (
        sample(actions.CommitBatch, 0).dedup_key
        == f"commit:{sample(actions.CommitBatch, 0).batch_seq}"
    )  # type: ignore[attr-defined]


def test_an_earlier_arrival_supersedes_a_later_one() -> None:
    early = actions.ProveArrival(order_id=1, reading_ids=(1,), devices=(DEVICE,), timestamp=10)
    late = actions.ProveArrival(
        order_id=1, reading_ids=(2, 3), devices=(DEVICE, DEVICE2), timestamp=20
    )
    assert early.earlier_than(late) and not late.earlier_than(early)
    assert not early.earlier_than(early)


class _Recorder:
    """Stands in for the contract wrappers: records which function each action calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append(name)
            return type("Result", (), {"tx_hash": "0x" + "00" * 32})()

        return call


@pytest.mark.parametrize("kind", KINDS)
def test_the_executor_has_a_contract_call_for_every_kind(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _Recorder()
    # the disclosure anchor is a plain transaction through the chain's sender
    object.__setattr__(recorder, "chain", type("Chain", (), {"sender": lambda _s, _w: recorder})())
    contracts = type("C", (), {"quality": recorder, "purchase_orders": recorder})()
    monkeypatch.setattr(chain_actions, "signed_reading", lambda row: row)
    monkeypatch.setattr(chain_actions.repo, "readings_by_ids", lambda s, ids: list(ids))
    monkeypatch.setattr(chain_actions.ChainExecutor, "_terms", staticmethod(lambda s, o: None))
    monkeypatch.setattr(chain_actions.ChainExecutor, "_certificate", staticmethod(lambda *a: None))
    # (an arrival's wait for missing readings reads the database: test_several_oracles.py)
    monkeypatch.setattr(
        chain_actions.ChainExecutor, "_hold_for_missing", staticmethod(lambda *a: None)
    )
    oracle = type("Oracle", (), {"address": "0x" + "11" * 20})()
    executor = chain_actions.ChainExecutor(contracts, oracle=oracle)
    assert executor.execute(sample(ACTIONS[kind]), typing.cast(Session, None)) == bytes(32)
    assert len(recorder.calls) == 1
