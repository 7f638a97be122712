"""The scenario file format (docs/scenarios.md) and its loader.

A scenario is YAML validated by the pydantic models below (``extra="forbid"``
everywhere: a misspelt field is an error, never silently ignored). Loading
turns every problem into a :class:`ScenarioError` whose message names the file,
the field (``orders[cold_box].terms.max_temp_centi_c``) and why it is wrong.

Top-level keys starting with ``x-`` are ignored, so a file can hold YAML
anchors for shared blocks (as in docker-compose files).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from backend.telemetry import AddressError, TrustShipError, parse_address
from iot_simulator.geo import PLACES, Trajectory, to_e6
from iot_simulator.geo import Path as GeoPath

INT32 = (-(2**31), 2**31 - 1)
UINT16_MAX = 2**16 - 1
UINT32_MAX = 2**32 - 1
MAX_SPEED_KMH = 1000.0  # faster than air freight is a typo, not a scenario
MAX_DEVICES_PER_ORDER = 64


class ScenarioError(TrustShipError):
    """Raised when a scenario file cannot be read or does not follow the format."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


NonNegInt = Annotated[int, Field(ge=0, strict=True)]
PosInt = Annotated[int, Field(gt=0, strict=True)]
Bps = Annotated[int, Field(ge=0, le=10_000, strict=True)]
Int32 = Annotated[int, Field(ge=INT32[0], le=INT32[1], strict=True)]
Uint32 = Annotated[int, Field(ge=0, le=UINT32_MAX, strict=True)]

#: The order states a scenario may end in (IPurchaseOrders.OrderState's terminal ones).
FinalState = Literal["Settled", "Resolved", "Expired", "Cancelled"]
#: Token symbols the replay drivers know (the dev test stablecoin is TUSD).
TOKEN_SYMBOLS = ("ETH", "TUSD")


def _token(value: str) -> str:
    """A known symbol, or an ERC-20 address (EIP-55 checksum checked when mixed-case)."""
    if value in TOKEN_SYMBOLS:
        return value
    if not value.startswith("0x"):
        raise ValueError(f"{value!r} is neither {' nor '.join(TOKEN_SYMBOLS)} nor an address")
    try:
        return parse_address(value, "token")
    except AddressError as exc:
        raise ValueError(str(exc)) from None


Token = Annotated[str, AfterValidator(_token)]


IssuerName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
ZERO_ADDRESS = "0x" + "0" * 40


class Parties(_Model):
    """Named parties; the demo/replay driver maps each name to an account."""

    buyer: str = Field(min_length=1)
    supplier: str = Field(min_length=1)
    arbiter: str = Field(min_length=1)


class Waypoint(_Model):
    """A point not in the built-in table, in decimal degrees."""

    name: str = ""
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Terms(_Model):
    """The contract's Terms (IPurchaseOrders.Terms), one field each.

    Times are relative to the scenario start t0 (order creation); the
    destination comes from the route's last waypoint; the arbiter from parties.
    """

    price: PosInt
    #: ``ETH``, ``TUSD`` (the dev test stablecoin) or an ERC-20 address.
    token: Token
    deadline_s: PosInt
    expiry_grace_s: Uint32 = 86_400
    geofence_e6: Annotated[int, Field(gt=0, le=10_000_000, strict=True)]
    min_temp_centi_c: Int32
    max_temp_centi_c: Int32
    max_humidity_permille: Annotated[int, Field(ge=0, le=1000, strict=True)] = 0
    max_shock_milli_g: Uint32 = 0
    tolerated_excursion_s: Uint32 = 0
    late_penalty_bps_per_hour: Bps = 0
    late_penalty_cap_bps: Bps = 0
    breach_refund_bps: Bps = 0
    dispute_window_s: Uint32 = 0
    #: Devices (of distinct issuers) that must prove arrival: 0 = the buyer's receipt
    #: only, 1 = any certified device, 2 = one device of each of the order's two issuers.
    arrival_quorum: Annotated[int, Field(ge=0, le=2, strict=True)] = 1

    @model_validator(mode="after")
    def _check(self) -> Terms:
        if self.price >= 2**256:
            raise ValueError("price: does not fit in uint256")
        if self.deadline_s >= 2**63:
            raise ValueError("deadline_s: does not fit in uint64")
        if self.min_temp_centi_c >= self.max_temp_centi_c:
            raise ValueError(
                f"min_temp_centi_c ({self.min_temp_centi_c}) must be below "
                f"max_temp_centi_c ({self.max_temp_centi_c})"
            )
        return self

    def to_contract(
        self,
        *,
        t0: int,
        destination_e6: tuple[int, int],
        token_address: str,
        arbiter: str,
        buyer: str = ZERO_ADDRESS,
        supplier: str = ZERO_ADDRESS,
        issuers: tuple[str, ...] = (ZERO_ADDRESS,),
    ) -> dict[str, Any]:
        """The Solidity ``Terms`` struct as a dict in declaration order.

        ``token_address`` is the zero address for ETH; ``issuers`` the addresses of the
        order's device issuers (one or two); pass ``tuple(d.values())`` to a web3
        contract call.
        """
        second = issuers[1] if len(issuers) > 1 else ZERO_ADDRESS
        return {
            "buyer": buyer,
            "supplier": supplier,
            "token": token_address,
            "price": self.price,
            "deliveryDeadline": t0 + self.deadline_s,
            "expiryGraceSecs": self.expiry_grace_s,
            "destLatE6": destination_e6[0],
            "destLonE6": destination_e6[1],
            "geofenceE6": self.geofence_e6,
            "minTempCentiC": self.min_temp_centi_c,
            "maxTempCentiC": self.max_temp_centi_c,
            "maxHumidityPermille": self.max_humidity_permille,
            "maxShockMilliG": self.max_shock_milli_g,
            "toleratedExcursionSecs": self.tolerated_excursion_s,
            "latePenaltyBpsPerHour": self.late_penalty_bps_per_hour,
            "latePenaltyCapBps": self.late_penalty_cap_bps,
            "breachRefundBps": self.breach_refund_bps,
            "disputeWindowSecs": self.dispute_window_s,
            "arbiter": arbiter,
            "deviceIssuer": issuers[0],
            "secondDeviceIssuer": second,
            "arrivalQuorum": self.arrival_quorum,
        }


class Sensors(_Model):
    """The physics of one order's container (all devices share it)."""

    set_point_centi_c: Int32 = 400
    noise_centi_c: Annotated[int, Field(ge=0, le=500, strict=True)] = 20
    ambient_centi_c: Int32 = 2500
    humidity_permille: Annotated[int, Field(ge=0, le=1000, strict=True)] = 850
    humidity_noise_permille: Annotated[int, Field(ge=0, le=200, strict=True)] = 10
    vibration_milli_g: tuple[NonNegInt, NonNegInt] = (20, 300)
    battery_start_permille: Annotated[int, Field(ge=0, le=1000, strict=True)] = 1000
    battery_drain_permille_per_reading: Annotated[float, Field(ge=0, le=1000)] = 0.05

    @model_validator(mode="after")
    def _check(self) -> Sensors:
        lo, hi = self.vibration_milli_g
        if lo > hi:
            raise ValueError(f"vibration_milli_g: low {lo} is above high {hi}")
        return self


class _Event(_Model):
    at_s: NonNegInt
    device: NonNegInt | None = None  # None = every device of the order


class DoorOpen(_Event):
    """Doors open: flag bit0 on the next reading, temperature and humidity rise."""

    event: Literal["door_open"]
    duration_s: PosInt
    rise_centi_c_per_h: PosInt = 1200
    recover_centi_c_per_h: PosInt = 600
    humidity_rise_permille: NonNegInt = 40


class CompressorFailure(_Event):
    """The reefer stops: temperature drifts toward ambient, then recovers."""

    event: Literal["compressor_failure"]
    duration_s: PosInt
    rise_centi_c_per_h: PosInt = 200
    recover_centi_c_per_h: PosInt = 600


class HumidityExcursion(_Event):
    """Relative humidity held at ``humidity_permille`` for a while."""

    event: Literal["humidity_excursion"]
    duration_s: PosInt
    humidity_permille: Annotated[int, Field(ge=0, le=1000, strict=True)]


class Shock(_Event):
    """One acceleration peak, reported by the first reading at or after ``at_s``."""

    event: Literal["shock"]
    milli_g: Uint32


class ConnectivityGap(_Event):
    """The device is offline: it buffers readings and flushes them in order on reconnect."""

    event: Literal["connectivity_gap"]
    duration_s: PosInt


class Tamper(_Event):
    """Tamper switch (flag bit1) on the readings covering this interval."""

    event: Literal["tamper"]
    duration_s: PosInt


class SensorFault(_Event):
    """Sensor fault (flag bit2) on the readings covering this interval."""

    event: Literal["sensor_fault"]
    duration_s: PosInt


Event = Annotated[
    DoorOpen
    | CompressorFailure
    | HumidityExcursion
    | Shock
    | ConnectivityGap
    | Tamper
    | SensorFault,
    Field(discriminator="event"),
]


class Spoofer(_Model):
    """An unregistered key that publishes (validly signed) readings for the order.

    ``impersonate: false`` publishes on the spoofer's own device topic of the
    order (the oracle must refuse an unbound device); ``true`` publishes on the
    topic of the order's device 0 and claims its address (the signature then
    recovers to another address; a broker ACL refuses it outright).
    """

    at_s: NonNegInt
    count: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 5
    every_s: PosInt | None = None  # default: the order's reading interval
    temperature_centi_c: Int32 = 3000
    humidity_permille: Annotated[int, Field(ge=0, le=1000, strict=True)] = 990
    shock_milli_g: Uint32 = 0
    at_destination: bool = True
    impersonate: bool = False
    #: The supplier holds this key and tries to make it a witness: it offers the device
    #: at shipment with a certificate it signed itself (refused:
    #: ``QualityVerificationUncertifiedDevice``) and proves a fake arrival with its
    #: reading at the destination (refused the same way).
    rogue: bool = False


class Actions(_Model):
    """What the parties do beyond create-and-fund, accept and ship (docs/scenarios.md)."""

    #: The buyer cancels before the supplier accepts, or the supplier after accepting;
    #: nothing ships.
    cancel: Literal["buyer", "supplier"] | None = None
    #: This party disputes the split once delivery is proven (needs a dispute window) ...
    dispute: Literal["buyer", "supplier"] | None = None
    #: ... and the arbiter rules that the buyer gets this much (the supplier the rest).
    ruling_buyer: NonNegInt | None = None
    #: The goods never arrive; the buyer reclaims the deposit once deadline + grace pass.
    expire: bool = False


class Expected(_Model):
    """How the order must end (DESIGN.md §4): its final state and the credited split."""

    state: FinalState = "Settled"
    buyer: NonNegInt
    supplier: NonNegInt
    breach: bool = False
    #: Seconds late at delivery; null for an order that is never delivered.
    late_s: NonNegInt | None = None


class Order(_Model):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    description: str = ""
    parties: Parties | None = None
    devices: Annotated[int, Field(ge=1, le=MAX_DEVICES_PER_ORDER, strict=True)] = 1
    #: The order's device issuers by name (default: the scenario's); device ``i`` is
    #: certified by ``issuers[i % len(issuers)]``. Keys come from the seed.
    issuers: Annotated[list[IssuerName], Field(min_length=1, max_length=2)] | None = None
    route: Annotated[list[str | Waypoint], Field(min_length=2)]
    arrive_after_s: PosInt
    duration_s: PosInt | None = None
    interval_s: PosInt | None = None
    terms: Terms
    sensors: Sensors = Sensors()
    timeline: list[Event] = []
    spoofers: list[Spoofer] = []
    actions: Actions = Actions()
    expected: Expected

    @model_validator(mode="after")
    def _check(self) -> Order:
        for i, wp in enumerate(self.route):
            if isinstance(wp, str) and wp not in PLACES:
                raise ValueError(
                    f"route[{i}]: unknown place {wp!r} (known: {', '.join(sorted(PLACES))}; "
                    "or give {name, lat, lon})"
                )
        if self.expected.buyer + self.expected.supplier != self.terms.price:
            raise ValueError(
                f"expected: buyer + supplier = {self.expected.buyer + self.expected.supplier}"
                f" but terms.price = {self.terms.price}"
            )
        for problem in _state_problems(self):
            raise ValueError(problem)
        issuers = self.issuers or []
        if len(set(issuers)) != len(issuers):
            raise ValueError(f"issuers: {issuers} names an issuer twice")
        for i, ev in enumerate(self.timeline):
            if ev.device is not None and ev.device >= self.devices:
                raise ValueError(
                    f"timeline[{i}].device: {ev.device} but the order has {self.devices} device(s)"
                )
        return self

    def waypoints(self) -> list[tuple[float, float]]:
        out = []
        for wp in self.route:
            if isinstance(wp, str):
                p = PLACES[wp]
                out.append((p.lat, p.lon))
            else:
                out.append((wp.lat, wp.lon))
        return out

    def waypoint_names(self) -> list[str]:
        return [
            PLACES[wp].name if isinstance(wp, str) else (wp.name or f"{wp.lat},{wp.lon}")
            for wp in self.route
        ]

    @property
    def destination_e6(self) -> tuple[int, int]:
        lat, lon = self.waypoints()[-1]
        return to_e6(lat), to_e6(lon)


def _state_problems(o: Order) -> list[str]:
    """The expected final state must be one the order's actions lead to."""
    e, a, t = o.expected, o.actions, o.terms
    out: list[str] = []
    reaching = {
        "Cancelled": a.cancel is not None,
        "Expired": a.expire,
        "Resolved": a.dispute is not None,
    }
    chosen = [state for state, yes in reaching.items() if yes]
    if len(chosen) > 1:
        out.append(f"actions: {' and '.join(chosen)} cannot both happen to one order")
    wanted = chosen[0] if chosen else "Settled"
    if e.state != wanted:
        how = {
            "Settled": "no actions (the terms settle it)",
            "Cancelled": "actions.cancel: buyer | supplier",
            "Expired": "actions.expire: true",
            "Resolved": "actions.dispute and actions.ruling_buyer",
        }
        out.append(f"expected.state: {e.state} needs {how[e.state]}; the actions lead to {wanted}")
        return out
    delivered = e.state in ("Settled", "Resolved")
    if delivered and e.late_s is None:
        out.append(f"expected.late_s: a {e.state} order was delivered: say how late (0 if on time)")
    if not delivered and e.late_s is not None:
        out.append(f"expected.late_s: a {e.state} order is never delivered: leave it out")
    if e.state in ("Cancelled", "Expired") and (e.buyer, e.supplier) != (t.price, 0):
        out.append(f"expected: a {e.state} order refunds the buyer in full (buyer = price)")
    if e.state == "Cancelled" and e.breach:
        out.append("expected.breach: nothing ships, so nothing can breach")
    if a.dispute is not None:
        if a.ruling_buyer is None:
            out.append("actions.ruling_buyer: a dispute needs the arbiter's ruling")
        elif a.ruling_buyer != e.buyer:
            out.append(f"expected.buyer: the ruling gives the buyer {a.ruling_buyer}")
        if t.dispute_window_s == 0:
            out.append("actions.dispute: terms.dispute_window_s is 0 (the split is final at once)")
    elif a.ruling_buyer is not None:
        out.append("actions.ruling_buyer: there is no dispute to rule on")
    return out


class Scenario(_Model):
    name: str = ""
    description: str = ""
    seed: int | str
    speed: Annotated[float, Field(gt=0)] = 3600.0
    interval_s: PosInt = 600
    status_interval_s: PosInt = 3600
    parties: Parties
    #: Who certifies the devices when an order names no issuers of its own.
    issuers: Annotated[list[IssuerName], Field(min_length=1, max_length=2)] = ["carrier"]
    orders: Annotated[list[Order], Field(min_length=1)]

    @model_validator(mode="before")
    @classmethod
    def _drop_extensions(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {
                k: v for k, v in data.items() if not (isinstance(k, str) and k.startswith("x-"))
            }
        return data

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        seen: set[str] = set()
        for o in self.orders:
            if o.name in seen:
                raise ValueError(f"orders: order name {o.name!r} appears twice")
            seen.add(o.name)
            if o.terms.arrival_quorum == 2 and (len(self.issuers_for(o)) != 2 or o.devices < 2):
                raise ValueError(
                    f"orders[{o.name}].terms.arrival_quorum: 2 needs two issuers and a device "
                    "of each"
                )
        if len(set(self.issuers)) != len(self.issuers):
            raise ValueError(f"issuers: {self.issuers} names an issuer twice")
        return self

    # -- derived facts ------------------------------------------------------

    def order(self, name: str) -> Order:
        for o in self.orders:
            if o.name == name:
                return o
        raise KeyError(name)

    def interval_for(self, order: Order) -> int:
        return order.interval_s or self.interval_s

    def parties_for(self, order: Order) -> Parties:
        return order.parties or self.parties

    def issuers_for(self, order: Order) -> list[str]:
        """The names of the order's device issuers (one or two)."""
        return list(order.issuers or self.issuers)

    def issuer_of(self, order: Order, device_index: int) -> str:
        """The name of the issuer that certifies device ``device_index`` of ``order``."""
        issuers = self.issuers_for(order)
        return issuers[device_index % len(issuers)]

    def reading_count(self, order: Order) -> int:
        return self.duration_for(order) // self.interval_for(order)

    def arrival_offset(self, order: Order) -> int:
        """The offset of the first reading inside the destination geofence."""
        interval = self.interval_for(order)
        return math.ceil(order.arrive_after_s / interval) * interval

    def duration_for(self, order: Order) -> int:
        return order.duration_s if order.duration_s is not None else self.arrival_offset(order)

    def trajectory(self, order: Order) -> Trajectory:
        return Trajectory(GeoPath(order.waypoints()), order.terms.geofence_e6, order.arrive_after_s)

    @property
    def end_offset_s(self) -> int:
        return max(self.duration_for(o) for o in self.orders)


def _check_physics(sc: Scenario) -> list[tuple[str, str]]:
    """Cross-field checks that need the whole scenario; returns (field, why) pairs."""
    problems: list[tuple[str, str]] = []
    for o in sc.orders:
        at = f"orders[{o.name}]"
        interval = sc.interval_for(o)
        t, s = o.terms, o.sensors
        if o.actions.expire:
            if sc.duration_for(o) >= sc.arrival_offset(o):
                problems.append(
                    (
                        f"{at}.duration_s",
                        f"an order that expires must never arrive: end the voyage before the "
                        f"arrival reading at {sc.arrival_offset(o)}",
                    )
                )
        elif o.duration_s is not None and o.duration_s < sc.arrival_offset(o):
            problems.append(
                (
                    f"{at}.duration_s",
                    f"{o.duration_s} ends before the arrival reading at {sc.arrival_offset(o)}"
                    f" (arrive_after_s {o.arrive_after_s} rounded up to the {interval}s interval)",
                )
            )
        if sc.reading_count(o) >= 2**32 - 1:
            problems.append((f"{at}.duration_s", "more readings than a uint32 seq can number"))
        lo, hi = s.set_point_centi_c - s.noise_centi_c, s.set_point_centi_c + s.noise_centi_c
        if not (t.min_temp_centi_c <= lo and hi <= t.max_temp_centi_c):
            problems.append(
                (
                    f"{at}.sensors.set_point_centi_c",
                    f"set point {s.set_point_centi_c} ± noise {s.noise_centi_c} leaves"
                    f" [{t.min_temp_centi_c}, {t.max_temp_centi_c}]: a healthy reefer would breach",
                )
            )
        if (
            t.max_humidity_permille
            and s.humidity_permille + s.humidity_noise_permille > t.max_humidity_permille
        ):
            problems.append(
                (
                    f"{at}.sensors.humidity_permille",
                    f"{s.humidity_permille} ± {s.humidity_noise_permille} exceeds"
                    f" max_humidity_permille {t.max_humidity_permille}",
                )
            )
        if t.max_shock_milli_g and s.vibration_milli_g[1] > t.max_shock_milli_g:
            problems.append(
                (
                    f"{at}.sensors.vibration_milli_g",
                    f"everyday vibration up to {s.vibration_milli_g[1]} exceeds max_shock_milli_g"
                    f" {t.max_shock_milli_g}",
                )
            )
        end = sc.duration_for(o)
        for i, ev in enumerate(o.timeline):
            if ev.at_s > end:
                problems.append(
                    (f"{at}.timeline[{i}].at_s", f"{ev.at_s} is after the last reading at {end}")
                )
        for i, sp in enumerate(o.spoofers):
            if sp.at_s > end:
                problems.append(
                    (f"{at}.spoofers[{i}].at_s", f"{sp.at_s} is after the last reading at {end}")
                )
        try:
            traj = sc.trajectory(o)
        except ValueError as exc:
            problems.append((f"{at}.route", str(exc)))
            continue
        if traj.speed_kmh > MAX_SPEED_KMH:
            problems.append(
                (
                    f"{at}.arrive_after_s",
                    f"{o.arrive_after_s}s for {traj.entry_km:.0f} km means"
                    f" {traj.speed_kmh:.0f} km/h"
                    f" (more than {MAX_SPEED_KMH:.0f} km/h)",
                )
            )
    return problems


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen[key] = True
        return super().construct_mapping(node, deep=deep)


_UNION_TAGS = {
    "str",
    "int",
    "Waypoint",
    "door_open",
    "compressor_failure",
    "humidity_excursion",
    "shock",
    "connectivity_gap",
    "tamper",
    "sensor_fault",
}


def _loc(loc: tuple[int | str, ...], data: Any) -> str:
    """A pydantic location as a readable field path, naming orders by their name."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            item = node[part] if isinstance(node, list) and part < len(node) else None
            name = item.get("name") if isinstance(item, dict) else None
            out += f"[{name}]" if name else f"[{part}]"
            node = item
            continue
        if (part in _UNION_TAGS or "[" in part) and not (isinstance(node, dict) and part in node):
            continue  # a union member's tag, not a field
        out += ("." if out else "") + part
        node = node.get(part) if isinstance(node, dict) else None
    return out or "(top level)"


def parse_scenario(data: Any, source: str = "<scenario>") -> Scenario:
    """Validate already-parsed YAML data; raises :class:`ScenarioError`."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: a scenario is a YAML mapping, got {type(data).__name__}")
    try:
        sc = Scenario.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = _loc(tuple(err["loc"]), data)
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"  {where}: {msg}")
        raise ScenarioError(f"{source}: invalid scenario\n" + "\n".join(lines)) from None
    problems = _check_physics(sc)
    if problems:
        raise ScenarioError(
            f"{source}: invalid scenario\n"
            + "\n".join(f"  {field}: {why}" for field, why in problems)
        )
    return sc


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file.

    Raises :class:`ScenarioError` naming the file, the field and the reason.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{p}: cannot read scenario: {exc.strerror or exc}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{p}: not valid YAML: {exc}") from None
    sc = parse_scenario(data, source=str(p))
    if not sc.name:
        sc = sc.model_copy(update={"name": p.stem})
    return sc


def resolve_scenario_path(name_or_path: str | Path, scenarios_dir: Path | None = None) -> Path:
    """``cold_chain_breach`` → ``scenarios/cold_chain_breach.yaml``; a path stays a path."""
    p = Path(name_or_path)
    if p.suffix in {".yaml", ".yml"} or p.exists():
        return p
    base = scenarios_dir or Path(__file__).resolve().parents[1] / "scenarios"
    return base / f"{p.name}.yaml"
