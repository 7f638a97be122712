"""A trajectory held up by stops arrives the stop time later and stands still meanwhile."""

from __future__ import annotations

from iot_simulator.geo import Path, Trajectory, in_box
from iot_simulator.voyage import DelayedTrajectory, Stop


def test_stops_hold_the_shipment_and_delay_its_arrival() -> None:
    planned = Trajectory(Path([(0.0, 0.0), (0.0, 2.0)]), 10_000, 10_000)
    voyage = DelayedTrajectory(planned, [Stop(2_000, 3_000), Stop(8_000, 500)])
    assert voyage.arrive_after_s == 13_500
    assert voyage.position_e6(2_000) == voyage.position_e6(4_999) == planned.position_e6(2_000)
    assert voyage.position_e6(6_000) == planned.position_e6(3_000)
    dest = planned.destination_e6
    assert not in_box(voyage.position_e6(13_499), dest, 10_000)
    assert in_box(voyage.position_e6(13_500), dest, 10_000)
    assert DelayedTrajectory(planned).arrive_after_s == 10_000
    # a stop after the arrival changes nothing before it
    assert DelayedTrajectory(planned, [Stop(20_000, 5_000)]).arrive_after_s == 10_000
