"""Devices, their signed readings and the time-ordered MQTT message stream.

:func:`build_fleet` turns a scenario into a :class:`Fleet` for one chain
(``Domain``), one set of on-chain order ids and one start time ``t0``.
:meth:`Fleet.messages` yields every message the fleet sends, in the order it
sends them, stamped with the scenario time at which it is *sent*: a reading
taken during a connectivity gap keeps its measurement timestamp but is sent
when the device reconnects (store-and-forward), after an ``online`` status and
in seq order.

The stream is lazy (readings are signed as it is consumed), deterministic and
can be iterated any number of times.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

from backend.telemetry import (
    Domain,
    Reading,
    SignedReading,
    encode_message,
    sign_reading,
    status_topic,
    telemetry_topic,
)
from backend.telemetry.certificates import DeviceCertificate, SignedCertificate, sign_certificate
from backend.telemetry.status import StatusMessage
from iot_simulator.geo import Trajectory
from iot_simulator.keys import (
    derive_key,
    derive_rng_seed,
    device_address,
    issuer_key,
    mqtt_password,
)
from iot_simulator.scenario import ConnectivityGap, Order, Scenario, ScenarioError, Spoofer
from iot_simulator.sensors import Sample, samples

#: A device's first seq on an order (its counter starts again on every order).
FIRST_SEQ = 1
MessageKind = Literal["telemetry", "status"]


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT publish. Iterating gives ``(time, topic, payload)``.

    ``time`` is the scenario time (unix seconds, ``t0 + offset_s``) at which
    the device sends it; for a telemetry message ``reading.reading.timestamp``
    is when it was measured (earlier, if it waited out a connectivity gap).
    ``will`` marks the offline status a broker publishes from the device's
    Last Will when the connection drops: a per-device publisher drops the
    connection instead of publishing it.
    """

    offset_s: int
    time: int
    topic: str
    payload: bytes
    kind: MessageKind
    device: str  # the address of the publishing device (its MQTT username)
    order: str  # scenario order name
    retain: bool = False
    will: bool = False
    reading: SignedReading | None = None

    def __iter__(self) -> Iterator[object]:
        return iter((self.time, self.topic, self.payload))


@dataclass(frozen=True)
class Device:
    """A sensor: its key, address and the order it travels with."""

    order: str
    index: int  # -1 - n for spoofers
    order_id: int
    private_key: bytes = field(repr=False)
    address: str
    spoofer: Spoofer | None = None

    @property
    def mqtt_username(self) -> str:
        return self.address

    @property
    def mqtt_password(self) -> str:
        return mqtt_password(self.private_key)

    @property
    def label(self) -> str:
        return (
            f"{self.order}/spoofer{-self.index - 1}"
            if self.spoofer
            else f"{self.order}/{self.index}"
        )

    def status_topic(self) -> str:
        return status_topic(self.order_id, self.address)

    def will_payload(self) -> bytes:
        """The Last Will: retained ``offline`` status on the device's status topic."""
        return StatusMessage(
            self.order_id, self.address, "offline", reason="connection_lost"
        ).encode()


class Fleet:
    """All devices of a scenario, ready to produce signed messages."""

    def __init__(
        self, scenario: Scenario, domain: Domain, order_ids: dict[str, int], t0: int
    ) -> None:
        self.scenario = scenario
        self.domain = domain
        self.t0 = t0
        self.order_ids = dict(order_ids)
        self.trajectories: dict[str, Trajectory] = {
            o.name: scenario.trajectory(o) for o in scenario.orders
        }
        self.devices: list[Device] = []
        self.spoofers: list[Device] = []
        for order in scenario.orders:
            oid = self.order_ids[order.name]
            for i in range(order.devices):
                key = derive_key(scenario.seed, order.name, i)
                self.devices.append(Device(order.name, i, oid, key, device_address(key)))
            for j, sp in enumerate(order.spoofers):
                key = derive_key(scenario.seed, order.name + "/spoofer", j)
                self.spoofers.append(
                    Device(order.name, -1 - j, oid, key, device_address(key), spoofer=sp)
                )

    # -- facts for drivers ----------------------------------------------------

    def devices_of(self, order_name: str) -> list[str]:
        """The addresses to bind to ``order_name`` at shipment (spoofers excluded)."""
        return [d.address for d in self.devices if d.order == order_name]

    def issuer_addresses(self, order_name: str) -> tuple[str, ...]:
        """The addresses of the order's device issuers (for its terms)."""
        return issuer_addresses(self.scenario, order_name)

    def certificate_window(self, order_name: str) -> tuple[int, int]:
        """The validity window of the order's certificates: from a week before the scenario
        start (the issuer certifies the devices before they ship, whatever the chain's
        clock says at shipment) to 30 days past the deadline and its grace (readings of
        the whole run fall in it)."""
        terms = self.scenario.order(order_name).terms
        start = max(0, self.t0 - 7 * 86_400)
        return start, self.t0 + terms.deadline_s + terms.expiry_grace_s + 30 * 86_400

    def certificates_of(self, order_name: str) -> list[SignedCertificate]:
        """One certificate per device of the order, each signed by its issuer (what the
        supplier hands to ``shipOrder``)."""
        order = self.scenario.order(order_name)
        oid = self.order_ids[order_name]
        valid_from, valid_until = self.certificate_window(order_name)
        out = []
        for d in self.devices:
            if d.order != order_name:
                continue
            key = issuer_key(self.scenario.seed, self.scenario.issuer_of(order, d.index))
            cert = DeviceCertificate(
                order_id=oid,
                device=d.address,
                issuer=device_address(key),
                valid_from=valid_from,
                valid_until=valid_until,
            )
            out.append(sign_certificate(cert, self.domain, key))
        return out

    def rogues_of(self, order_name: str) -> list[Device]:
        """The order's rogue devices (spoofers whose key the supplier holds)."""
        return [
            d
            for d in self.spoofers
            if d.order == order_name and d.spoofer is not None and d.spoofer.rogue
        ]

    def self_certificate(self, device: Device, signer_key: bytes | str) -> SignedCertificate:
        """A certificate for ``device`` signed by ``signer_key`` (the supplier vouching for
        its own device: the contract refuses it)."""
        valid_from, valid_until = self.certificate_window(device.order)
        key = (
            bytes.fromhex(signer_key.removeprefix("0x"))
            if isinstance(signer_key, str)
            else signer_key
        )
        cert = DeviceCertificate(
            order_id=device.order_id,
            device=device.address,
            issuer=device_address(key),
            valid_from=valid_from,
            valid_until=valid_until,
        )
        return sign_certificate(cert, self.domain, key)

    def rogue_arrival(self, device: Device) -> SignedReading | None:
        """The rogue's first reading inside the destination geofence (its fake arrival)."""
        for _, signed in self._spoofer_readings(device):
            lat, lon = self.scenario.order(device.order).destination_e6
            half = self.scenario.order(device.order).terms.geofence_e6
            r = signed.reading
            if abs(r.latitude_e6 - lat) <= half and abs(r.longitude_e6 - lon) <= half:
                return signed
        return None

    def deadline(self, order_name: str) -> int:
        return self.t0 + self.scenario.order(order_name).terms.deadline_s

    @property
    def end_time(self) -> int:
        return self.t0 + self.scenario.end_offset_s

    @property
    def all_devices(self) -> list[Device]:
        return self.devices + self.spoofers

    # -- readings ---------------------------------------------------------------

    def samples(self, device: Device) -> list[Sample]:
        order = self.scenario.order(device.order)
        offsets = self._offsets(order)
        rng = random.Random(derive_rng_seed(self.scenario.seed, order.name, str(device.index)))
        return list(samples(order.sensors, order.timeline, device.index, offsets, rng))

    def _offsets(self, order: Order) -> range:
        interval = self.scenario.interval_for(order)
        return range(interval, self.scenario.duration_for(order) + 1, interval)

    def readings(self, device: Device) -> Iterator[tuple[Sample, SignedReading]]:
        """The device's signed readings in seq order (seq starts at 1)."""
        if device.spoofer is not None:
            yield from self._spoofer_readings(device)
            return
        traj = self.trajectories[device.order]
        for seq, s in enumerate(self._iter_samples(device), start=FIRST_SEQ):
            lat, lon = traj.position_e6(s.offset_s)
            yield s, self._sign(device, device.address, seq, s, lat, lon)

    def _iter_samples(self, device: Device) -> Iterator[Sample]:
        order = self.scenario.order(device.order)
        rng = random.Random(derive_rng_seed(self.scenario.seed, order.name, str(device.index)))
        return samples(order.sensors, order.timeline, device.index, self._offsets(order), rng)

    def _sign(
        self, device: Device, claimed: str, seq: int, s: Sample, lat: int, lon: int
    ) -> SignedReading:
        reading = Reading(
            order_id=device.order_id,
            seq=seq,
            timestamp=self.t0 + s.offset_s,
            temperature_centi_c=s.temperature_centi_c,
            humidity_permille=s.humidity_permille,
            shock_milli_g=s.shock_milli_g,
            latitude_e6=lat,
            longitude_e6=lon,
            flags=s.flags,
        )
        return SignedReading(
            reading, claimed, sign_reading(reading, self.domain, device.private_key)
        )

    def _spoofer_readings(self, device: Device) -> Iterator[tuple[Sample, SignedReading]]:
        sp = device.spoofer
        assert sp is not None
        order = self.scenario.order(device.order)
        every = sp.every_s or self.scenario.interval_for(order)
        traj = self.trajectories[order.name]
        victim = self.devices_of(order.name)[0]
        claimed = victim if sp.impersonate else device.address
        for j in range(sp.count):
            off = sp.at_s + j * every
            s = Sample(off, sp.temperature_centi_c, sp.humidity_permille, sp.shock_milli_g, 0, 1000)
            lat, lon = traj.destination_e6 if sp.at_destination else traj.position_e6(off)
            yield s, self._sign(device, claimed, j + 1, s, lat, lon)

    # -- the message stream -------------------------------------------------------

    def _msg(
        self,
        device: Device,
        offset: int,
        topic: str,
        payload: bytes,
        kind: MessageKind,
        *,
        retain: bool = False,
        will: bool = False,
        reading: SignedReading | None = None,
    ) -> Message:
        return Message(
            offset,
            self.t0 + offset,
            topic,
            payload,
            kind,
            device.address,
            device.order,
            retain=retain,
            will=will,
            reading=reading,
        )

    def _status(
        self, device: Device, offset: int, state: str, battery: int, last_seq: int, reason: str
    ) -> Message:
        body = StatusMessage(
            device.order_id,
            device.address,
            state,
            reason=reason,
            timestamp=self.t0 + offset,
            battery_permille=battery,
            first_seq=FIRST_SEQ,
            last_seq=last_seq,
        )
        return self._msg(
            device, offset, device.status_topic(), body.encode(), "status", retain=True
        )

    def _gaps(self, device: Device) -> list[tuple[int, int]]:
        order = self.scenario.order(device.order)
        end = self.scenario.duration_for(order)
        gaps = sorted(
            (ev.at_s, min(end, ev.at_s + ev.duration_s))
            for ev in order.timeline
            if isinstance(ev, ConnectivityGap) and (ev.device is None or ev.device == device.index)
        )
        merged: list[tuple[int, int]] = []
        for a, b in gaps:  # overlapping gaps are one long gap
            if merged and a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], b))
            else:
                merged.append((a, b))
        return merged

    def device_messages(self, device: Device) -> Iterator[Message]:
        """One device's messages in the order it sends them."""
        if device.spoofer is not None:
            for s, sr in self._spoofer_readings(device):
                topic = telemetry_topic(device.order_id, sr.device)
                yield self._msg(
                    device, s.offset_s, topic, encode_message(sr), "telemetry", reading=sr
                )
            return
        order = self.scenario.order(device.order)
        end = self.scenario.duration_for(order)
        status_every = self.scenario.status_interval_s
        gaps = self._gaps(device)
        topic = telemetry_topic(device.order_id, device.address)
        battery, last_seq = order.sensors.battery_start_permille, 0
        yield self._status(device, 0, "online", battery, 0, "boot")
        next_status = status_every
        buffered: list[Message] = []
        gap_i = 0
        for s, sr in self.readings(device):
            # leave / re-enter connectivity gaps that start before this reading
            while gap_i < len(gaps) and gaps[gap_i][1] <= s.offset_s:
                start, stop = gaps[gap_i]
                yield from self._gap(device, start, stop, buffered, battery, last_seq)
                buffered = []
                gap_i += 1
            battery, last_seq = s.battery_permille, sr.reading.seq
            msg = self._msg(device, s.offset_s, topic, encode_message(sr), "telemetry", reading=sr)
            if gap_i < len(gaps) and gaps[gap_i][0] <= s.offset_s < gaps[gap_i][1]:
                buffered.append(msg)
                continue
            yield msg
            if s.offset_s >= next_status:
                yield self._status(device, s.offset_s, "online", battery, last_seq, "periodic")
                next_status = (s.offset_s // status_every + 1) * status_every
        while gap_i < len(gaps):
            start, stop = gaps[gap_i]
            yield from self._gap(device, start, stop, buffered, battery, last_seq)
            buffered = []
            gap_i += 1
        yield self._status(device, end, "offline", battery, last_seq, "shutdown")

    def _gap(
        self,
        device: Device,
        start: int,
        stop: int,
        buffered: list[Message],
        battery: int,
        last_seq: int,
    ) -> Iterator[Message]:
        yield self._msg(
            device,
            start,
            device.status_topic(),
            device.will_payload(),
            "status",
            retain=True,
            will=True,
        )
        yield self._status(device, stop, "online", battery, last_seq, "reconnected")
        for m in buffered:  # store-and-forward: flushed in seq order on reconnect
            yield Message(
                stop,
                self.t0 + stop,
                m.topic,
                m.payload,
                m.kind,
                m.device,
                m.order,
                reading=m.reading,
            )

    def messages(self) -> Iterator[Message]:
        """Every message of the fleet, ordered by send time (ties: order, device, own order)."""

        def keyed(rank: int, dev: Device) -> Iterator[tuple[int, int, int, Message]]:
            for n, m in enumerate(self.device_messages(dev)):
                yield m.offset_s, rank, n, m

        streams = [keyed(rank, dev) for rank, dev in enumerate(self.all_devices)]
        for _, _, _, msg in heapq.merge(*streams):
            yield msg

    def message_count(self) -> int:
        return sum(1 for _ in self.messages())


def issuer_addresses(scenario: Scenario, order_name: str) -> tuple[str, ...]:
    """The addresses of an order's device issuers (keys derived from the scenario seed)."""
    order = scenario.order(order_name)
    return tuple(
        device_address(issuer_key(scenario.seed, name)) for name in scenario.issuers_for(order)
    )


def build_fleet(
    scenario: Scenario, domain: Domain, order_ids: dict[str, int] | None = None, t0: int = 0
) -> Fleet:
    """A fleet for ``scenario`` signing for ``domain``.

    ``order_ids`` maps each scenario order name to its on-chain id; missing
    names are an error (``None``: ids 1, 2, ... in file order, for dry runs).
    ``t0`` is the scenario start (order creation) in unix seconds.
    """
    if order_ids is None:
        order_ids = {o.name: i for i, o in enumerate(scenario.orders, start=1)}
    names = {o.name for o in scenario.orders}
    unknown = [n for n in order_ids if n not in names]
    if unknown:
        raise ScenarioError(
            f"order id given for unknown order(s) {', '.join(sorted(unknown))}; "
            f"the scenario has {', '.join(o.name for o in scenario.orders)}"
        )
    missing = [n for n in names if n not in order_ids]
    if missing:
        raise ScenarioError(
            f"no on-chain order id for order(s) {', '.join(sorted(missing))} (use NAME=ID)"
        )
    for n, oid in order_ids.items():
        if not 0 <= oid < 2**256:
            raise ScenarioError(f"order id {oid} for {n} does not fit in uint256")
    if t0 < 0:
        raise ScenarioError(f"t0 must be a unix time, got {t0}")
    return Fleet(scenario, domain, order_ids, t0)
