"""What a scenario will do, worked out from its readings (for ``--dry-run``).

:func:`summarize` walks every bound device's signed readings and reports, per
order: the ticks, the first reading inside the destination geofence (the
delivery time), the runs of out-of-range readings (with their span against the
tolerance), the shocks over the limit, connectivity gaps, spoofed readings,
and the settlement those facts imply under DESIGN.md §4 — next to the
scenario's stated expectation. Only readings taken before the delivery reading
count towards a breach: once delivery is confirmed with a zero dispute window
the split is final (docs/scenarios.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.telemetry import SignedReading
from iot_simulator.fleet import Fleet
from iot_simulator.geo import in_box
from iot_simulator.scenario import ConnectivityGap, Order, Shock


@dataclass(frozen=True)
class Excursion:
    device: str
    first_seq: int
    last_seq: int
    start_offset_s: int
    end_offset_s: int
    low: int
    high: int

    @property
    def span_s(self) -> int:
        return self.end_offset_s - self.start_offset_s


@dataclass(frozen=True)
class ShockReading:
    device: str
    seq: int
    offset_s: int
    milli_g: int


@dataclass(frozen=True)
class Settlement:
    state: str
    buyer: int
    supplier: int
    breach: bool
    late_s: int | None


@dataclass
class OrderTimeline:
    order: Order
    interval_s: int
    readings_per_device: int
    devices: list[str]
    arrive_after_s: int
    delivered_offset_s: int | None
    deadline_offset_s: int
    speed_kmh: float
    route_km: float
    excursions: list[Excursion] = field(default_factory=list)
    shocks: list[ShockReading] = field(default_factory=list)
    gaps: list[tuple[int, int, int | None]] = field(default_factory=list)
    spoofed_readings: int = 0
    warnings: list[str] = field(default_factory=list)
    predicted: Settlement | None = None

    @property
    def breached(self) -> bool:
        return bool(self.shocks) or any(
            e.span_s > self.order.terms.tolerated_excursion_s for e in self.excursions
        )

    @property
    def matches_expectation(self) -> bool:
        e = self.order.expected
        return self.predicted == Settlement(e.state, e.buyer, e.supplier, e.breach, e.late_s)


def settle(order: Order, late_s: int, breach: bool) -> Settlement:
    """The split the terms give (DESIGN.md §4), or the arbiter's when the order is
    disputed (its actions say so)."""
    t = order.terms
    ruling = order.actions.ruling_buyer
    if order.actions.dispute is not None and ruling is not None:
        return Settlement("Resolved", ruling, t.price - ruling, breach, late_s)
    late_bps = min(t.late_penalty_cap_bps, -(-late_s // 3600) * t.late_penalty_bps_per_hour)
    refund_bps = min(10_000, late_bps + (t.breach_refund_bps if breach else 0))
    buyer = t.price * refund_bps // 10_000
    return Settlement("Settled", buyer, t.price - buyer, breach, late_s)


def never_delivered(order: Order, breach: bool) -> Settlement | None:
    """A cancelled or expired order refunds the buyer in full; None otherwise."""
    t = order.terms
    if order.actions.cancel is not None:
        return Settlement("Cancelled", t.price, 0, False, None)
    if order.actions.expire:
        return Settlement("Expired", t.price, 0, breach, None)
    return None


def _out_of_range(order: Order, sr: SignedReading) -> bool:
    r, t = sr.reading, order.terms
    if not t.min_temp_centi_c <= r.temperature_centi_c <= t.max_temp_centi_c:
        return True
    return bool(t.max_humidity_permille) and r.humidity_permille > t.max_humidity_permille


def summarize(fleet: Fleet) -> list[OrderTimeline]:
    sc = fleet.scenario
    out: list[OrderTimeline] = []
    for order in sc.orders:
        traj = fleet.trajectories[order.name]
        devs = [d for d in fleet.devices if d.order == order.name]
        tl = OrderTimeline(
            order=order,
            interval_s=sc.interval_for(order),
            readings_per_device=sc.reading_count(order),
            devices=[d.address for d in devs],
            arrive_after_s=order.arrive_after_s,
            delivered_offset_s=None,
            deadline_offset_s=order.terms.deadline_s,
            speed_kmh=traj.speed_kmh,
            route_km=traj.path.length_km,
        )
        per_device = {d.address: [sr for _, sr in fleet.readings(d)] for d in devs}
        dest, g = traj.destination_e6, order.terms.geofence_e6
        arrivals = [
            sr.reading.timestamp
            for rs in per_device.values()
            for sr in rs
            if in_box((sr.reading.latitude_e6, sr.reading.longitude_e6), dest, g)
        ]
        delivered = min(arrivals) if arrivals else None
        tl.delivered_offset_s = None if delivered is None else delivered - fleet.t0
        cutoff = delivered if delivered is not None else 2**64
        for addr, rs in per_device.items():
            run: list[SignedReading] = []
            for sr in [*rs, None]:
                if sr is not None and sr.reading.timestamp < cutoff and _out_of_range(order, sr):
                    run.append(sr)
                    continue
                if run:
                    temps = [x.reading.temperature_centi_c for x in run]
                    tl.excursions.append(
                        Excursion(
                            addr,
                            run[0].reading.seq,
                            run[-1].reading.seq,
                            run[0].reading.timestamp - fleet.t0,
                            run[-1].reading.timestamp - fleet.t0,
                            min(temps),
                            max(temps),
                        )
                    )
                    run = []
            for sr in rs:
                r = sr.reading
                limit = order.terms.max_shock_milli_g
                if limit and r.shock_milli_g > limit and r.timestamp < cutoff:
                    tl.shocks.append(
                        ShockReading(addr, r.seq, r.timestamp - fleet.t0, r.shock_milli_g)
                    )
            # an excursion still open at delivery is decided by who reports first: warn
            if delivered is not None:
                before = [sr for sr in rs if sr.reading.timestamp < delivered]
                at = [sr for sr in rs if sr.reading.timestamp == delivered]
                if (
                    before
                    and _out_of_range(order, before[-1])
                    or any(_out_of_range(order, sr) for sr in at)
                ):
                    tl.warnings.append(
                        f"device {addr} is out of range at arrival: keep excursions clear of the"
                        " delivery reading, the outcome would depend on processing order"
                    )
        for ev in order.timeline:
            if isinstance(ev, ConnectivityGap):
                tl.gaps.append((ev.at_s, ev.at_s + ev.duration_s, ev.device))
                if (
                    delivered is not None
                    and ev.at_s <= delivered - fleet.t0 < ev.at_s + ev.duration_s
                ):
                    tl.warnings.append(
                        f"connectivity gap at {ev.at_s}s covers the delivery reading:"
                        " it reaches the oracle only on reconnect"
                    )
            if isinstance(ev, Shock) and order.terms.max_shock_milli_g == 0:
                tl.warnings.append(f"shock at {ev.at_s}s but max_shock_milli_g is 0 (not checked)")
        tl.spoofed_readings = sum(sp.count for sp in order.spoofers)
        refund = never_delivered(order, tl.breached)
        if refund is not None:
            tl.predicted = refund
        elif delivered is None:
            tl.warnings.append(
                "no reading inside the destination geofence: the order never delivers"
            )
        else:
            late = max(0, delivered - fleet.deadline(order.name))
            tl.predicted = settle(order, late, tl.breached)
        out.append(tl)
    return out
