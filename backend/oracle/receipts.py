"""Storage receipts to devices (:mod:`backend.telemetry.receipts` defines the message).

After each committed batch the ingest worker hands :meth:`ReceiptPublisher.add` the
seqs it stored (or found already stored); every ``interval_secs`` :meth:`flush`
publishes one receipt per (order, device) with everything gathered since, as seq
ranges, QoS 1 on the oracle's own MQTT connection — in a thread of its own
(:meth:`start`), so that publishing a thousand receipts never holds up the store
thread's next commit. Gathering for an interval keeps
the cost down: a fleet of 1,000 devices that each send a reading a second costs
1,000 receipts per interval, however the readings fall into batches.

While the oracle is not connected, or its connection holds
``SubscriberConfig.publish_queue`` receipts the broker has not taken yet (a stalled
or slow broker), receipts are dropped (counted on ``/metrics``) rather than queued
without bound: a device that gets no receipt resends its
unconfirmed readings after its timeout, the oracle finds them stored (duplicates)
and confirms them again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

from backend.oracle.metrics import Metrics
from backend.telemetry.receipts import Receipt

log = logging.getLogger(__name__)

#: publish(topic, payload) → True when handed to the broker connection.
Publish = Callable[[str, bytes], bool]


class ReceiptPublisher:
    """Gathers confirmed seqs per (order, device) and publishes them as receipts."""

    #: At most one warning about dropped receipts per this many seconds (a stalled
    #: broker drops them at every flush; the count is on /metrics all along).
    WARN_EVERY_SECS = 30.0

    def __init__(
        self,
        publish: Publish,
        metrics: Metrics,
        interval_secs: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publish = publish
        self.metrics = metrics
        self.interval_secs = interval_secs
        self._clock = clock
        self._unreported = 0  # dropped since the last warning
        self._warned_at: float | None = None
        self._lock = threading.Lock()
        self._pending: dict[tuple[int, str], list[int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="trustship-receipts", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Publish what is gathered, then stop."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_secs):
            self._flush_logged()
        self._flush_logged()

    def _flush_logged(self) -> None:
        try:
            self.flush()
        except Exception:  # a receipt lost is resent by the device: never stop for it
            log.exception("publishing receipts failed; the devices resend")

    def add(self, confirmed: Mapping[tuple[int, str], list[int]]) -> None:
        with self._lock:
            for key, seqs in confirmed.items():
                self._pending.setdefault(key, []).extend(seqs)

    @property
    def pending_devices(self) -> int:
        with self._lock:
            return len(self._pending)

    def flush(self) -> int:
        """Publish what was gathered; returns the number of receipts handed over."""
        with self._lock:
            pending, self._pending = self._pending, {}
        sent = dropped = 0
        for (order_id, device), seqs in pending.items():
            for receipt in Receipt.split(order_id, device, seqs):
                if self._publish(receipt.topic, receipt.encode()):
                    sent += 1
                else:
                    dropped += 1
        if sent:
            self.metrics.receipts_published.inc(sent)
        if dropped:
            self.metrics.receipts_dropped.inc(dropped)
            self._unreported += dropped
        now = self._clock()
        if self._unreported and (
            self._warned_at is None or now - self._warned_at >= self.WARN_EVERY_SECS
        ):
            log.warning(
                "%d receipt(s) dropped%s: not connected to the broker, or too many waiting "
                "for it (devices resend)",
                self._unreported,
                "" if self._warned_at is None else f" in the last {now - self._warned_at:.0f} s",
            )
            self._unreported, self._warned_at = 0, now
        return sent
