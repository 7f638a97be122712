"""The watcher's own record: every reading it accepted, in a SQLite file of its own.

Its schema is its own (not the oracle's store): the readings a party saw with their
signatures, so they can be re-verified by anyone and served as an independent record
(``--serve``), and the outcomes of what the watcher submitted. One connection, used by
the watcher's worker thread and the HTTP server under a lock.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.domain.reading import READING_ATTRS, Reading, SignedReading, StoredReading

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS readings (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    device TEXT NOT NULL,
    {", ".join(f"{a} INTEGER NOT NULL" for a in READING_ATTRS if a != "order_id")},
    signature BLOB NOT NULL,
    digest BLOB NOT NULL,
    received_at REAL NOT NULL,
    UNIQUE (order_id, device, seq)
);
CREATE TABLE IF NOT EXISTS submissions (
    id INTEGER PRIMARY KEY,
    order_id INTEGER NOT NULL,
    kind TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    tx_hash TEXT,
    at REAL NOT NULL
);
"""

_COLUMNS = ("id", "order_id", "device", *[a for a in READING_ATTRS if a != "order_id"])


@dataclass(frozen=True, slots=True)
class Submission:
    order_id: int
    kind: str
    #: ``proven``, ``already done``, ``proven by another``, ``retry later``, ``rejected``
    outcome: str
    detail: str
    tx_hash: str | None
    at: float


class WatcherStore:
    """The readings one watcher holds (``path`` ``:memory:`` for tests)."""

    def __init__(self, path: str | Path) -> None:
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives the process dying, not a power loss (which may
        # cost the newest readings: paho acknowledges QoS 1 on receipt), for a commit
        # without an fsync per reading (bench/watcher.py: about 3x the readings per second).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def add(
        self, signed: SignedReading, digest: bytes, received_at: float | None = None
    ) -> tuple[StoredReading, str]:
        """Store ``signed``; (its view, ``stored`` | ``duplicate`` | ``conflict``): a
        conflict is another signed reading under the same seq (kept: the first)."""
        r = signed.reading
        at = time.time() if received_at is None else received_at
        with self._tx() as db:
            row = db.execute(
                "SELECT id, digest, received_at FROM readings "
                "WHERE order_id = ? AND device = ? AND seq = ?",
                (r.order_id, signed.device, r.seq),
            ).fetchone()
            if row is not None:
                verdict = "duplicate" if bytes(row[1]) == digest else "conflict"
                return StoredReading.of(int(row[0]), signed, float(row[2])), verdict
            values = [
                r.order_id,
                signed.device,
                *[v for a, v in r.values().items() if a != "order_id"],
            ]
            cur = db.execute(
                f"INSERT INTO readings ({', '.join(_COLUMNS[1:])}, signature, digest, received_at) "
                f"VALUES ({', '.join('?' * (len(_COLUMNS) + 2))})",
                (*values, signed.signature, digest, at),
            )
            assert cur.lastrowid is not None
            return StoredReading.of(cur.lastrowid, signed, at), "stored"

    def _rows(self, where: str, args: tuple[Any, ...]) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)}, signature, received_at FROM readings "
                f"WHERE {where} ORDER BY order_id, device, seq",
                args,
            )
            return list(cur.fetchall())

    @staticmethod
    def _signed(row: Any) -> SignedReading:
        fields = dict(zip(_COLUMNS, row, strict=False))
        reading = Reading(*(int(fields[a]) for a in READING_ATTRS))
        return SignedReading(reading, str(fields["device"]), bytes(row[len(_COLUMNS)]))

    def signed(self, ids: list[int]) -> list[SignedReading]:
        """The signed readings ``ids``, in the order given (evidence for the contract)."""
        rows = self._rows(f"id IN ({', '.join('?' * len(ids))})", tuple(ids))
        by_id = {int(r[0]): self._signed(r) for r in rows}
        return [by_id[i] for i in ids]

    def device_readings(self, order_id: int) -> dict[str, list[StoredReading]]:
        """Every stored reading of ``order_id``, by device, in seq order."""
        out: dict[str, list[StoredReading]] = {}
        for row in self._rows("order_id = ?", (order_id,)):
            signed = self._signed(row)
            view = StoredReading.of(int(row[0]), signed, float(row[-1]))
            out.setdefault(signed.device, []).append(view)
        return out

    def listing(self, order_id: int, limit: int = 10_000) -> list[dict[str, Any]]:
        """The record as served: wire names, device, signature (re-verifiable by anyone)."""
        out = []
        for row in self._rows("order_id = ?", (order_id,))[:limit]:
            signed = self._signed(row)
            out.append(
                {
                    **signed.reading.to_wire(),
                    "device": signed.device,
                    "signature": "0x" + signed.signature.hex(),
                    "receivedAt": float(row[-1]),
                }
            )
        return out

    def record(self, s: Submission) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO submissions (order_id, kind, outcome, detail, tx_hash, at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (s.order_id, s.kind, s.outcome, s.detail, s.tx_hash, s.at),
            )

    def submissions(self, order_id: int | None = None) -> list[Submission]:
        with self._lock:
            cur = self._db.execute(
                "SELECT order_id, kind, outcome, detail, tx_hash, at FROM submissions "
                + ("WHERE order_id = ? " if order_id is not None else "")
                + "ORDER BY id",
                (order_id,) if order_id is not None else (),
            )
            return [Submission(int(a), b, c, d, e, float(f)) for a, b, c, d, e, f in cur]
