"""Sensor physics for one device in a reefer container.

Everything is a deterministic function of the scenario (its seed, the order,
the device index): replaying a scenario reproduces every reading bit for bit.

* Temperature: the set point plus excursions plus bounded noise. Noise is an
  AR(1) process clipped to ``±noise_centi_c``, so a healthy reefer never leaves
  ``set point ± noise``. A compressor failure (or open doors) drives the air
  toward ``ambient_centi_c`` at ``rise_centi_c_per_h`` for its duration, then
  the reefer pulls it back at ``recover_centi_c_per_h``. Excursions add up and
  never overshoot ambient. :func:`true_temperature` is the noise-free curve: a
  reading is out of range when that curve is more than the noise amplitude past
  a limit, and never when it is more than the noise amplitude inside.
* Humidity: a base level with bounded noise; open doors add moisture, a
  humidity excursion holds a level for a while.
* Shock: everyday vibration (uniform in ``vibration_milli_g``) plus shock
  events, each reported by the first reading at or after it (a logger reports
  the peak since its last reading).
* Flags latch like a real logger: bit0 if the doors were open at any time since
  the previous reading, bit1 tamper, bit2 sensor fault.
* Battery (permille): drains per reading; reported in the status message, not
  in the signed reading.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from backend.telemetry import FLAG_DOOR_OPEN, FLAG_SENSOR_FAULT, FLAG_TAMPER
from iot_simulator.scenario import (
    CompressorFailure,
    DoorOpen,
    Event,
    HumidityExcursion,
    SensorFault,
    Sensors,
    Shock,
    Tamper,
)

NOISE_MEMORY = 0.6  # AR(1) coefficient: noise is smooth, like a real probe


@dataclass(frozen=True, slots=True)
class Sample:
    """What a device measures at one tick (before it is numbered and signed)."""

    offset_s: int
    temperature_centi_c: int
    humidity_permille: int
    shock_milli_g: int
    flags: int
    battery_permille: int


def _applies(ev: Event, device: int) -> bool:
    return ev.device is None or ev.device == device


def _ramp(
    t: float, start: int, duration: int, rise_per_h: int, recover_per_h: int, cap: float
) -> float:
    """Magnitude of a ramp excursion at ``t``: up during the event, down after."""
    if t <= start:
        return 0.0
    end = start + duration
    if t <= end:
        return min(cap, rise_per_h * (t - start) / 3600)
    peak = min(cap, rise_per_h * duration / 3600)
    return max(0.0, peak - recover_per_h * (t - end) / 3600)


def true_temperature(sensors: Sensors, events: Sequence[Event], device: int, t: float) -> float:
    """The noise-free air temperature (centi-°C) at offset ``t``."""
    span = sensors.ambient_centi_c - sensors.set_point_centi_c
    cap = abs(span)
    direction = 1 if span >= 0 else -1
    excess = 0.0
    for ev in events:
        if isinstance(ev, CompressorFailure | DoorOpen) and _applies(ev, device):
            excess += _ramp(
                t, ev.at_s, ev.duration_s, ev.rise_centi_c_per_h, ev.recover_centi_c_per_h, cap
            )
    return sensors.set_point_centi_c + direction * min(cap, excess)


def _true_humidity(sensors: Sensors, events: Sequence[Event], device: int, t: float) -> float:
    level = float(sensors.humidity_permille)
    for ev in events:
        if not _applies(ev, device):
            continue
        if isinstance(ev, DoorOpen) and ev.at_s < t:
            # moisture comes in while the doors are open and is dried out over an hour
            level += ev.humidity_rise_permille * _ramp(t, ev.at_s, ev.duration_s, 3600, 3600, 1.0)
        elif isinstance(ev, HumidityExcursion) and ev.at_s <= t < ev.at_s + ev.duration_s:
            level = float(ev.humidity_permille)
    return level


def _latched(
    events: Sequence[Event],
    device: int,
    kind: type[DoorOpen] | type[Tamper] | type[SensorFault],
    prev: int,
    t: int,
) -> bool:
    """True when an interval event of ``kind`` overlaps (prev, t]."""
    return any(
        ev.at_s <= t and ev.at_s + ev.duration_s > prev
        for ev in events
        if isinstance(ev, kind) and _applies(ev, device)
    )


class _BoundedNoise:
    def __init__(self, rng: random.Random, amplitude: int) -> None:
        self.rng, self.amp, self.value = rng, amplitude, 0.0

    def next(self) -> float:
        if self.amp == 0:
            return 0.0
        self.value = NOISE_MEMORY * self.value + self.rng.gauss(0.0, self.amp / 2)
        self.value = max(-self.amp, min(self.amp, self.value))
        return self.value


def samples(
    sensors: Sensors,
    events: Sequence[Event],
    device: int,
    offsets: Sequence[int],
    rng: random.Random,
) -> Iterator[Sample]:
    """The device's samples at the given tick offsets (increasing)."""
    temp_noise = _BoundedNoise(rng, sensors.noise_centi_c)
    hum_noise = _BoundedNoise(rng, sensors.humidity_noise_permille)
    vib_lo, vib_hi = sensors.vibration_milli_g
    shocks = sorted(
        (ev.at_s, ev.milli_g) for ev in events if isinstance(ev, Shock) and _applies(ev, device)
    )
    battery = float(sensors.battery_start_permille)
    prev = -1
    for t in offsets:
        temp = round(true_temperature(sensors, events, device, t) + temp_noise.next())
        hum = round(_true_humidity(sensors, events, device, t) + hum_noise.next())
        hum = max(0, min(1000, hum))
        shock = rng.randint(vib_lo, vib_hi)
        while shocks and shocks[0][0] <= t:
            shock = max(shock, shocks.pop(0)[1])
        flags = 0
        if _latched(events, device, DoorOpen, prev, t):
            flags |= FLAG_DOOR_OPEN
        if _latched(events, device, Tamper, prev, t):
            flags |= FLAG_TAMPER
        if _latched(events, device, SensorFault, prev, t):
            flags |= FLAG_SENSOR_FAULT
        yield Sample(t, temp, hum, shock, flags, max(0, int(battery)))
        battery -= sensors.battery_drain_permille_per_reading
        prev = t
