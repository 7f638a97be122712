"""Routes: great-circle positions and an arrival time the scenario controls exactly."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from iot_simulator.geo import PLACES, Path, Trajectory, distance_km, great_circle_point, in_box

KEYS = sorted(PLACES)


def _ll(key: str) -> tuple[float, float]:
    return PLACES[key].lat, PLACES[key].lon


def test_known_distances() -> None:
    # Maasvlakte–Hamburg ≈ 433 km, Shanghai–Los Angeles ≈ 10,460 km (great circle)
    assert 420 < distance_km(_ll("rotterdam"), _ll("hamburg")) < 445
    assert 10_300 < distance_km(_ll("shanghai"), _ll("los_angeles")) < 10_600


def test_great_circle_midpoint_is_equidistant() -> None:
    a, b = _ll("santos"), _ll("durban")
    m = great_circle_point(a, b, 0.5)
    assert distance_km(a, m) == pytest.approx(distance_km(m, b), rel=1e-9)
    assert distance_km(a, m) + distance_km(m, b) == pytest.approx(distance_km(a, b), rel=1e-9)


@settings(max_examples=60, deadline=None)
@given(
    a=st.sampled_from(KEYS),
    b=st.sampled_from(KEYS),
    via=st.lists(st.sampled_from(KEYS), max_size=2),
    geofence=st.integers(500, 300_000),
    arrive=st.integers(600, 30 * 86400),
    interval=st.sampled_from([60, 300, 600, 900, 3600]),
)
def test_first_reading_inside_the_geofence_is_the_first_at_or_after_arrival(
    a: str, b: str, via: list[str], geofence: int, arrive: int, interval: int
) -> None:
    assume(a != b)
    path = Path([_ll(k) for k in [a, *via, b]])
    try:
        traj = Trajectory(path, geofence, arrive)
    except ValueError:
        dest = (round(PLACES[b].lat * 1e6), round(PLACES[b].lon * 1e6))
        assert in_box(path.at_km_e6(0), dest, geofence)  # refused only when it starts inside
        return
    dest = traj.destination_e6
    ticks = range(interval, arrive + 3 * interval, interval)
    inside = [t for t in ticks if in_box(traj.position_e6(t), dest, geofence)]
    assert inside and inside[0] == math.ceil(arrive / interval) * interval
    assert all(in_box(traj.position_e6(t), dest, geofence) == (t >= arrive) for t in ticks)
    # just before and exactly at the arrival time
    assert not in_box(traj.position_e6(arrive - 1), dest, geofence)
    assert in_box(traj.position_e6(arrive), dest, geofence)


def test_positions_move_at_a_constant_speed() -> None:
    traj = Trajectory(Path([_ll("rotterdam"), _ll("hamburg")]), 10_000, 8 * 3600)
    pts = [traj.position_e6(t) for t in range(0, 8 * 3600, 1800)]
    steps = [
        distance_km((p[0] / 1e6, p[1] / 1e6), (q[0] / 1e6, q[1] / 1e6))
        for p, q in zip(pts, pts[1:], strict=False)
    ]
    assert max(steps) - min(steps) < 0.01
    assert traj.speed_kmh * 0.5 == pytest.approx(steps[0], rel=1e-3)
    assert 45 < traj.speed_kmh < 55  # ~400 km in 8 h
