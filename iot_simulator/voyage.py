"""A voyage that stops: a :class:`~iot_simulator.geo.Trajectory` with delays.

Port congestion, a missed berth window or a traffic jam hold the shipment still
for a while; it then carries on at its planned speed, so it reaches the
destination geofence the total stop time later than planned. Used by the early
warning benchmark (bench/early_warning.py) to produce late deliveries whose
lateness the contract's own definition (first reading inside the geofence
against the deadline) decides.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from iot_simulator.geo import Trajectory


@dataclass(frozen=True, slots=True)
class Stop:
    """Held still from ``at_s`` (offset after departure) for ``duration_s``."""

    at_s: int
    duration_s: int


class DelayedTrajectory:
    """Positions over time of a planned trajectory held up by ``stops``."""

    def __init__(self, planned: Trajectory, stops: Sequence[Stop] = ()) -> None:
        self.planned = planned
        self.stops = sorted(stops, key=lambda s: s.at_s)
        self.arrive_after_s = self._wall(planned.arrive_after_s)

    def moving_secs(self, offset_s: float) -> float:
        """Seconds spent moving in the first ``offset_s`` seconds."""
        held = 0.0
        for s in self.stops:
            if s.at_s >= offset_s:
                break
            held += min(s.duration_s, offset_s - s.at_s)
        return offset_s - held

    def _wall(self, moving_s: int) -> int:
        """The offset at which ``moving_s`` seconds of movement are done."""
        t = moving_s
        for s in self.stops:
            if s.at_s < t:
                t += s.duration_s
        return t

    def position_e6(self, offset_s: float) -> tuple[int, int]:
        return self.planned.position_e6(self.moving_secs(offset_s))
