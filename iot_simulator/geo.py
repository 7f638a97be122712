"""Places and routes: real ports and cities, great-circle legs, controllable arrival.

Positions travel along great circles between waypoints at a constant ground
speed chosen so that the shipment reaches the destination geofence *exactly*
at the scenario's ``arrive_after_s``:

* before ``arrive_after_s`` every position is strictly outside the destination
  box (``|lat - dest| > g`` or ``|lon - dest| > g``, micro-degrees);
* from ``arrive_after_s`` on every position is inside it.

So the first reading inside the geofence is the first reading taken at or
after ``arrive_after_s`` — a tick a scenario author can compute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EARTH_RADIUS_KM = 6371.0088
KM_PER_DEGREE = math.pi * EARTH_RADIUS_KM / 180.0


@dataclass(frozen=True, slots=True)
class Place:
    """A named point: a port, an inland city or a sea passage."""

    key: str
    name: str
    lat: float
    lon: float
    kind: str  # "port", "city" or "sea"


def _p(key: str, name: str, lat: float, lon: float, kind: str) -> Place:
    return Place(key, name, lat, lon, kind)


# Coordinates of the container terminals (ports), city centres (inland) and the
# middle of the passages ships actually take (sea), in decimal degrees.
PLACES: dict[str, Place] = {
    p.key: p
    for p in (
        # ports
        _p("rotterdam", "Rotterdam (Maasvlakte)", 51.9490, 4.0530, "port"),
        _p("hamburg", "Hamburg", 53.5330, 9.9350, "port"),
        _p("antwerp", "Antwerp", 51.2810, 4.3220, "port"),
        _p("shanghai", "Shanghai (Yangshan)", 30.6280, 122.0650, "port"),
        _p("singapore", "Singapore (Pasir Panjang)", 1.2700, 103.7600, "port"),
        _p("mumbai", "Mumbai (Nhava Sheva)", 18.9490, 72.9510, "port"),
        _p("santos", "Santos", -23.9600, -46.3100, "port"),
        _p("new_york", "New York / Newark", 40.6840, -74.1510, "port"),
        _p("los_angeles", "Los Angeles", 33.7400, -118.2600, "port"),
        _p("durban", "Durban", -29.8700, 31.0300, "port"),
        _p("jebel_ali", "Dubai (Jebel Ali)", 25.0110, 55.0610, "port"),
        _p("felixstowe", "Felixstowe", 51.9540, 1.3270, "port"),
        _p("valencia", "Valencia", 39.4440, -0.3160, "port"),
        # inland cities
        _p("duisburg", "Duisburg", 51.4344, 6.7623, "city"),
        _p("venlo", "Venlo", 51.3704, 6.1724, "city"),
        _p("cologne", "Cologne", 50.9375, 6.9603, "city"),
        _p("frankfurt", "Frankfurt am Main", 50.1109, 8.6821, "city"),
        _p("munich", "Munich", 48.1351, 11.5820, "city"),
        _p("berlin", "Berlin", 52.5200, 13.4050, "city"),
        _p("brussels", "Brussels", 50.8503, 4.3517, "city"),
        _p("paris", "Paris", 48.8566, 2.3522, "city"),
        _p("lyon", "Lyon", 45.7640, 4.8357, "city"),
        _p("milan", "Milan", 45.4642, 9.1900, "city"),
        _p("madrid", "Madrid", 40.4168, -3.7038, "city"),
        _p("london", "London", 51.5072, -0.1276, "city"),
        _p("chicago", "Chicago", 41.8781, -87.6298, "city"),
        _p("philadelphia", "Philadelphia", 39.9526, -75.1652, "city"),
        _p("riverside", "Riverside (Inland Empire)", 33.9533, -117.3962, "city"),
        _p("sao_paulo", "São Paulo", -23.5505, -46.6333, "city"),
        _p("johannesburg", "Johannesburg", -26.2041, 28.0473, "city"),
        _p("pune", "Pune", 18.5204, 73.8567, "city"),
        _p("suzhou", "Suzhou", 31.2989, 120.5853, "city"),
        _p("kuala_lumpur", "Kuala Lumpur", 3.1390, 101.6869, "city"),
        _p("dubai", "Dubai", 25.2048, 55.2708, "city"),
        _p("abu_dhabi", "Abu Dhabi", 24.4539, 54.3773, "city"),
        # sea passages
        _p("dover_strait", "Strait of Dover", 51.0000, 1.4500, "sea"),
        _p("ushant", "Off Ushant", 48.6000, -5.6000, "sea"),
        _p("finisterre", "Off Cape Finisterre", 43.0000, -9.8000, "sea"),
        _p("gibraltar", "Strait of Gibraltar", 35.9500, -5.6000, "sea"),
        _p("port_said", "Port Said (Suez Canal north)", 31.3000, 32.3300, "sea"),
        _p("suez", "Suez (Suez Canal south)", 29.9000, 32.5600, "sea"),
        _p("bab_el_mandeb", "Bab-el-Mandeb", 12.6000, 43.3500, "sea"),
        _p("socotra", "Off Socotra", 12.0000, 55.0000, "sea"),
        _p("hormuz", "Strait of Hormuz", 26.5600, 56.2500, "sea"),
        _p("dondra_head", "Off Dondra Head (Sri Lanka)", 5.7000, 80.6000, "sea"),
        _p("malacca_north", "Strait of Malacca (north)", 5.8000, 97.8000, "sea"),
        _p("malacca_south", "Strait of Malacca (south)", 2.2000, 101.5000, "sea"),
        _p("south_china_sea", "South China Sea", 12.0000, 112.0000, "sea"),
        _p("taiwan_strait", "Taiwan Strait", 24.5000, 119.8000, "sea"),
        _p("cape_good_hope", "Off the Cape of Good Hope", -35.0000, 18.4000, "sea"),
        _p("cabo_verde", "Off Cabo Verde", 15.0000, -25.0000, "sea"),
        _p("panama", "Panama Canal", 9.0800, -79.6800, "sea"),
        _p("windward_passage", "Windward Passage", 20.0000, -73.8000, "sea"),
        _p("cabo_san_lucas", "Off Cabo San Lucas", 22.6000, -110.2000, "sea"),
        _p("cape_sao_roque", "Off Cape São Roque", -5.0000, -34.5000, "sea"),
    )
}


def place(key: str) -> Place:
    """Look a place up by its key (``rotterdam``, ``new_york``...)."""
    try:
        return PLACES[key]
    except KeyError:
        raise KeyError(
            f"unknown place {key!r}; known places: {', '.join(sorted(PLACES))}"
        ) from None


def to_e6(deg: float) -> int:
    return int(round(deg * 1_000_000))


def _unit(lat: float, lon: float) -> tuple[float, float, float]:
    la, lo = math.radians(lat), math.radians(lon)
    return (math.cos(la) * math.cos(lo), math.cos(la) * math.sin(lo), math.sin(la))


def _latlon(v: tuple[float, float, float]) -> tuple[float, float]:
    x, y, z = v
    return (
        math.degrees(math.atan2(z, math.hypot(x, y))),
        math.degrees(math.atan2(y, x)),
    )


def central_angle(a: tuple[float, float], b: tuple[float, float]) -> float:
    """The angle between two points on the sphere, in radians (haversine)."""
    la1, lo1, la2, lo2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (
        math.sin((la2 - la1) / 2) ** 2
        + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2
    )
    return 2 * math.asin(min(1.0, math.sqrt(h)))


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    return central_angle(a, b) * EARTH_RADIUS_KM


def great_circle_point(
    a: tuple[float, float], b: tuple[float, float], f: float
) -> tuple[float, float]:
    """The point a fraction ``f`` of the way from ``a`` to ``b`` along the great circle."""
    omega = central_angle(a, b)
    if omega < 1e-12:
        return a
    ua, ub = _unit(*a), _unit(*b)
    sa = math.sin((1 - f) * omega) / math.sin(omega)
    sb = math.sin(f * omega) / math.sin(omega)
    return _latlon((sa * ua[0] + sb * ub[0], sa * ua[1] + sb * ub[1], sa * ua[2] + sb * ub[2]))


class Path:
    """Great-circle legs through waypoints (degrees), parametrised by distance."""

    def __init__(self, waypoints: list[tuple[float, float]]) -> None:
        if len(waypoints) < 2:
            raise ValueError("a route needs at least two waypoints")
        self.waypoints = waypoints
        self.legs_km = [distance_km(a, b) for a, b in zip(waypoints, waypoints[1:], strict=False)]
        self.length_km = sum(self.legs_km)
        if self.length_km <= 0:
            raise ValueError("a route must move: its waypoints are all the same point")

    def at_km(self, km: float) -> tuple[float, float]:
        """The position ``km`` kilometres along the path (clamped to its ends)."""
        if km <= 0:
            return self.waypoints[0]
        for i, leg in enumerate(self.legs_km):
            if km <= leg:
                return great_circle_point(
                    self.waypoints[i], self.waypoints[i + 1], km / leg if leg else 1.0
                )
            km -= leg
        return self.waypoints[-1]

    def at_km_e6(self, km: float) -> tuple[int, int]:
        lat, lon = self.at_km(km)
        return to_e6(lat), to_e6(lon)


def in_box(pos: tuple[int, int], centre: tuple[int, int], half_side: int) -> bool:
    """The contract's geofence test: a box of half side ``half_side`` micro-degrees."""
    return abs(pos[0] - centre[0]) <= half_side and abs(pos[1] - centre[1]) <= half_side


class Trajectory:
    """A shipment's position over scenario time, with arrival at an exact time.

    The shipment leaves the first waypoint at offset 0, reaches the edge of the
    destination box at ``arrive_after_s`` and covers the rest of the path inside
    the box at the same ground speed, then stays at the destination.
    """

    def __init__(self, path: Path, geofence_e6: int, arrive_after_s: int) -> None:
        if arrive_after_s <= 0:
            raise ValueError("arrive_after_s must be positive")
        self.path = path
        self.geofence_e6 = geofence_e6
        self.arrive_after_s = arrive_after_s
        dlat, dlon = path.waypoints[-1]
        self.destination_e6 = (to_e6(dlat), to_e6(dlon))
        if in_box(path.at_km_e6(0), self.destination_e6, geofence_e6):
            raise ValueError("the route starts inside the destination geofence: nothing to deliver")
        self.entry_km = self._entry_km()
        self.speed_km_s = self.entry_km / arrive_after_s

    @property
    def speed_kmh(self) -> float:
        return self.speed_km_s * 3600

    def _inside(self, km: float) -> bool:
        return in_box(self.path.at_km_e6(km), self.destination_e6, self.geofence_e6)

    def _entry_km(self) -> float:
        """The distance along the path where it first enters the destination box."""
        g_km = self.geofence_e6 / 1e6 * KM_PER_DEGREE
        # Coarse scan; only stretches near the destination are scanned finely.
        reach_km = g_km * math.sqrt(2) + 1.0
        coarse = max(1.0, min(25.0, reach_km))
        dest = self.path.waypoints[-1]
        lat_scale = max(0.05, math.cos(math.radians(dest[0])))
        fine = max(0.001, g_km * lat_scale / 16)
        km, total = 0.0, self.path.length_km
        while km < total:
            nxt = min(total, km + coarse)
            near = min(
                distance_km(self.path.at_km(km), dest), distance_km(self.path.at_km(nxt), dest)
            )
            if near <= reach_km + coarse:
                x = km
                while x < nxt:
                    y = min(nxt, x + fine)
                    if self._inside(y):
                        lo, hi = x, y  # outside at lo, inside at hi: bisect
                        for _ in range(60):
                            mid = (lo + hi) / 2
                            if self._inside(mid):
                                hi = mid
                            else:
                                lo = mid
                        return hi
                    x = y
            km = nxt
        return total  # the destination itself is always inside its box

    def position_e6(self, offset_s: float) -> tuple[int, int]:
        """The position at ``offset_s`` seconds after departure, in micro-degrees."""
        dest, g = self.destination_e6, self.geofence_e6
        if offset_s < self.arrive_after_s:
            pos = self.path.at_km_e6(self.entry_km * max(0.0, offset_s) / self.arrive_after_s)
            if in_box(pos, dest, g):  # rounding right at the edge: step back outside
                dlat, dlon = pos[0] - dest[0], pos[1] - dest[1]
                if abs(dlat) >= abs(dlon):
                    pos = (dest[0] + (g + 1) * (1 if dlat >= 0 else -1), pos[1])
                else:
                    pos = (pos[0], dest[1] + (g + 1) * (1 if dlon >= 0 else -1))
            return pos
        km = self.entry_km + (offset_s - self.arrive_after_s) * self.speed_km_s
        lat, lon = self.path.at_km_e6(km)
        return (
            min(dest[0] + g, max(dest[0] - g, lat)),
            min(dest[1] + g, max(dest[1] - g, lon)),
        )
