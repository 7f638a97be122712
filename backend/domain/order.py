"""An order: its state and its terms (``IPurchaseOrders.OrderState``, ``.Terms``, ``.Order``).

One definition each, in Solidity's order. The chain wrappers (backend/chain) encode
and decode them, the indexer's ``orders`` table (backend/store) and the API's terms
schema carry the same fields; tests/domain checks all of them, and the Solidity side
through the compiled ABI and the interface's enum.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, ClassVar

from backend.domain.fields import field_specs, solidity

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"
ETH = ZERO_ADDRESS  # the token address of ETH orders
#: ``IPurchaseOrders.MAX_PRICE``: the largest price (what escrow stores, 2^88 - 1).
MAX_PRICE = 2**88 - 1


class OrderState(IntEnum):
    """Mirror of ``IPurchaseOrders.OrderState``."""

    NONE = 0
    CREATED = 1
    ACCEPTED = 2
    FUNDED = 3
    SHIPPED = 4
    DELIVERED = 5
    SETTLED = 6
    CANCELLED = 7
    DISPUTED = 8
    RESOLVED = 9
    EXPIRED = 10

    @property
    def label(self) -> str:
        """The state as Solidity spells it (``Shipped``): stored in ``orders.state`` and
        answered by the API."""
        return self.name.capitalize()

    @classmethod
    def from_label(cls, label: str) -> OrderState:
        return cls[label.upper()]


#: Every state's label, in enum order (``None`` first).
STATE_LABELS: tuple[str, ...] = tuple(s.label for s in OrderState)
#: The states an order can be seen in (all but ``None``: an order that does not exist).
ORDER_STATE_LABELS: tuple[str, ...] = STATE_LABELS[1:]


@dataclass(frozen=True, kw_only=True)
class Terms:
    """Mirror of ``IPurchaseOrders.Terms``, fields in Solidity order (keyword-only)."""

    token: str = field(default=ETH, metadata=solidity("address"))
    price: int = field(metadata=solidity("uint256"))
    delivery_deadline: int = field(metadata=solidity("uint64"))
    expiry_grace_secs: int = field(default=7 * 24 * 3600, metadata=solidity("uint32"))
    dest_lat_e6: int = field(metadata=solidity("int32"))
    dest_lon_e6: int = field(metadata=solidity("int32"))
    geofence_e6: int = field(metadata=solidity("uint32"))
    min_temp_centi_c: int = field(metadata=solidity("int32"))
    max_temp_centi_c: int = field(metadata=solidity("int32"))
    #: 0 = not checked
    max_humidity_permille: int = field(default=0, metadata=solidity("uint16"))
    #: 0 = not checked
    max_shock_milli_g: int = field(default=0, metadata=solidity("uint32"))
    tolerated_excursion_secs: int = field(metadata=solidity("uint32"))
    late_penalty_bps_per_hour: int = field(metadata=solidity("uint16"))
    late_penalty_cap_bps: int = field(metadata=solidity("uint16"))
    breach_refund_bps: int = field(metadata=solidity("uint16"))
    #: 0 = split final at delivery
    dispute_window_secs: int = field(default=0, metadata=solidity("uint32"))
    arbiter: str = field(metadata=solidity("address"))

    #: Solidity field order of the struct (the attribute names)
    SOLIDITY_ORDER: ClassVar[tuple[str, ...]]

    def as_tuple(self) -> tuple[Any, ...]:
        """The struct as the ABI encoder takes it."""
        return tuple(getattr(self, name) for name in self.SOLIDITY_ORDER)

    def values(self) -> dict[str, Any]:
        """The fields by attribute name (the ``orders`` table's terms columns)."""
        return {name: getattr(self, name) for name in self.SOLIDITY_ORDER}

    @classmethod
    def from_tuple(cls, values: Sequence[Any]) -> Terms:
        """The struct's values in Solidity order (addresses taken as given)."""
        return cls(**dict(zip(cls.SOLIDITY_ORDER, values, strict=True)))

    @classmethod
    def of(cls, source: Any) -> Terms:
        """The terms held by any object with the terms' attributes (an order row)."""
        return cls(**{name: getattr(source, name) for name in cls.SOLIDITY_ORDER})

    @property
    def is_eth(self) -> bool:
        return int(self.token, 16) == 0

    def replace(self, **changes: Any) -> Terms:
        """A copy with some fields changed."""
        return replace(self, **changes)


TERMS_SPEC = field_specs(Terms)
TERMS_ATTRS: tuple[str, ...] = tuple(f.attr for f in TERMS_SPEC)
Terms.SOLIDITY_ORDER = TERMS_ATTRS


@dataclass(frozen=True)
class Order:
    """Mirror of ``IPurchaseOrders.Order``, plus its id."""

    order_id: int
    buyer: str = field(metadata=solidity("address"))
    supplier: str = field(metadata=solidity("address"))
    state: OrderState = field(metadata=solidity("uint8"))
    funded: bool = field(metadata=solidity("bool"))
    breached: bool = field(metadata=solidity("bool"))
    created_at: int = field(metadata=solidity("uint64"))
    shipped_at: int = field(metadata=solidity("uint64"))
    delivered_at: int = field(metadata=solidity("uint64"))
    disputed_at: int = field(metadata=solidity("uint64"))
    terms: Terms = field(metadata=solidity("tuple"))


ORDER_SPEC = field_specs(Order)
#: ``Order``'s attribute names besides the id, in Solidity order.
ORDER_ATTRS: tuple[str, ...] = tuple(f.attr for f in ORDER_SPEC)
