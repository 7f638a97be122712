"""Sensor physics: plausible readings, and compressor failures that cross the
limit when — and only when — the scenario's numbers say so."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from iot_simulator.scenario import CompressorFailure, DoorOpen, Sensors, Shock
from iot_simulator.sensors import samples, true_temperature

INTERVAL = 600
OFFSETS = list(range(INTERVAL, 48 * 3600 + 1, INTERVAL))

sensors_st = st.builds(
    Sensors,
    set_point_centi_c=st.integers(-2500, 1500),
    noise_centi_c=st.integers(0, 100),
    ambient_centi_c=st.integers(-3000, 4000),
    humidity_permille=st.integers(0, 1000),
    humidity_noise_permille=st.integers(0, 50),
    battery_start_permille=st.integers(0, 1000),
)
failure_st = st.builds(
    CompressorFailure,
    event=st.just("compressor_failure"),
    at_s=st.integers(0, 24 * 3600),
    duration_s=st.integers(60, 20 * 3600),
    rise_centi_c_per_h=st.integers(10, 2000),
    recover_centi_c_per_h=st.integers(10, 2000),
)


@settings(max_examples=60, deadline=None)
@given(sensors=sensors_st, failures=st.lists(failure_st, max_size=3), seed=st.integers(0, 2**32))
def test_readings_are_physically_plausible(
    sensors: Sensors, failures: list[CompressorFailure], seed: int
) -> None:
    door = DoorOpen(event="door_open", at_s=7200, duration_s=900)
    shock = Shock(event="shock", at_s=3000, milli_g=25_000)
    events = [*failures, door, shock]
    out = list(samples(sensors, events, 0, OFFSETS, random.Random(seed)))
    lo = min(sensors.set_point_centi_c, sensors.ambient_centi_c) - sensors.noise_centi_c
    hi = max(sensors.set_point_centi_c, sensors.ambient_centi_c) + sensors.noise_centi_c
    battery = [s.battery_permille for s in out]
    assert battery == sorted(battery, reverse=True) and min(battery) >= 0
    for s in out:
        assert lo <= s.temperature_centi_c <= hi  # never beyond set point / ambient (+noise)
        assert 0 <= s.humidity_permille <= 1000
        assert sensors.vibration_milli_g[0] <= s.shock_milli_g <= 25_000
        assert s.flags & ~0b111 == 0
    # the door latches bit0 on the readings covering [7200, 8100); the shock shows once
    assert [s.offset_s for s in out if s.flags & 1] == [7200, 7800, 8400]
    assert [s.offset_s for s in out if s.shock_milli_g == 25_000] == [3000]  # first tick >= 3000


def _closed_form_excess(f: CompressorFailure, cap: int, t: int) -> float:
    """An independent statement of the ramp: up at `rise` during, down at `recover` after."""
    if t <= f.at_s:
        return 0.0
    end = f.at_s + f.duration_s
    up = min(cap, f.rise_centi_c_per_h * (min(t, end) - f.at_s) / 3600)
    if t <= end:
        return up
    return max(0.0, up - f.recover_centi_c_per_h * (t - end) / 3600)


@settings(max_examples=80, deadline=None)
@given(
    set_point=st.integers(200, 600),
    noise=st.integers(0, 80),
    failure=st.one_of(st.none(), failure_st),
    seed=st.integers(0, 2**32),
)
def test_compressor_failure_crosses_the_limit_exactly_when_the_numbers_say(
    set_point: int, noise: int, failure: CompressorFailure | None, seed: int
) -> None:
    limit = 800  # max temperature; min is far below
    sensors = Sensors(set_point_centi_c=set_point, noise_centi_c=noise, ambient_centi_c=3000)
    events = [failure] if failure else []
    out = list(samples(sensors, events, 0, OFFSETS, random.Random(seed)))
    cap = 3000 - set_point
    for s in out:
        true = set_point + (_closed_form_excess(failure, cap, s.offset_s) if failure else 0.0)
        assert abs(true - true_temperature(sensors, events, 0, s.offset_s)) < 1e-6
        if true > limit + noise + 0.5:
            assert s.temperature_centi_c > limit, s  # the scenario says: out of range
        if true < limit - noise - 0.5:
            assert s.temperature_centi_c <= limit, s  # the scenario says: in range
    if failure is None:
        assert all(s.temperature_centi_c <= limit for s in out)
    else:
        peak = min(cap, failure.rise_centi_c_per_h * failure.duration_s / 3600)
        if set_point + peak < limit - noise - 0.5:  # never hot enough: never out of range
            assert all(s.temperature_centi_c <= limit for s in out)


def test_cold_failure_goes_below_the_minimum() -> None:
    """With ambient below the set point (winter) a failure drifts down."""
    sensors = Sensors(set_point_centi_c=500, noise_centi_c=0, ambient_centi_c=-1500)
    f = CompressorFailure(
        event="compressor_failure", at_s=0, duration_s=7200, rise_centi_c_per_h=600
    )
    assert true_temperature(sensors, [f], 0, 3600) == -100
    assert true_temperature(sensors, [f], 0, 7200) == -700
    assert true_temperature(sensors, [f], 0, 7200 + 3600) == -100  # recovering at 600/h


def test_events_can_target_one_device() -> None:
    sensors = Sensors(noise_centi_c=0)
    f = CompressorFailure(event="compressor_failure", at_s=0, duration_s=7200, device=1)
    assert true_temperature(sensors, [f], 0, 3600) == sensors.set_point_centi_c
    assert true_temperature(sensors, [f], 1, 3600) > sensors.set_point_centi_c


def test_samples_are_deterministic() -> None:
    s = Sensors()
    a = list(samples(s, [], 0, OFFSETS, random.Random(7)))
    b = list(samples(s, [], 0, OFFSETS, random.Random(7)))
    c = list(samples(s, [], 0, OFFSETS, random.Random(8)))
    assert a == b and a != c
