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

from eth_abi import encode as abi_encode
from eth_utils import keccak

from backend.domain.fields import field_specs, solidity
from backend.domain.sensitivity import HIGH, MEDIUM, Coarsening, classed

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
    """Mirror of ``IPurchaseOrders.Terms``, fields in Solidity order (keyword-only).

    PurchaseOrders stores only :meth:`digest` (the first 25 bytes of the keccak of the
    struct's ABI encoding); every call that needs the terms takes them as calldata and
    the contract checks them against that digest. ``device_issuer`` (and optionally
    ``second_device_issuer``) certify the order's devices; ``arrival_quorum`` is how
    many issuers' devices must prove arrival (0 = buyer receipt only)."""

    buyer: str = field(metadata=solidity("address") | classed(MEDIUM))
    supplier: str = field(metadata=solidity("address") | classed(MEDIUM))
    token: str = field(default=ETH, metadata=solidity("address") | classed(MEDIUM))
    price: int = field(metadata=solidity("uint256") | classed(MEDIUM))
    delivery_deadline: int = field(metadata=solidity("uint64") | classed(MEDIUM))
    expiry_grace_secs: int = field(
        default=7 * 24 * 3600, metadata=solidity("uint32") | classed(MEDIUM)
    )
    dest_lat_e6: int = field(metadata=solidity("int32") | classed(HIGH, Coarsening.REGION))
    dest_lon_e6: int = field(metadata=solidity("int32") | classed(HIGH, Coarsening.REGION))
    geofence_e6: int = field(metadata=solidity("uint32") | classed(MEDIUM))
    min_temp_centi_c: int = field(metadata=solidity("int32") | classed(MEDIUM))
    max_temp_centi_c: int = field(metadata=solidity("int32") | classed(MEDIUM))
    #: 0 = not checked
    max_humidity_permille: int = field(default=0, metadata=solidity("uint16") | classed(MEDIUM))
    #: 0 = not checked
    max_shock_milli_g: int = field(default=0, metadata=solidity("uint32") | classed(MEDIUM))
    tolerated_excursion_secs: int = field(metadata=solidity("uint32") | classed(MEDIUM))
    late_penalty_bps_per_hour: int = field(metadata=solidity("uint16") | classed(MEDIUM))
    late_penalty_cap_bps: int = field(metadata=solidity("uint16") | classed(MEDIUM))
    breach_refund_bps: int = field(metadata=solidity("uint16") | classed(MEDIUM))
    #: 0 = split final at delivery
    dispute_window_secs: int = field(default=0, metadata=solidity("uint32") | classed(MEDIUM))
    arbiter: str = field(metadata=solidity("address") | classed(MEDIUM))
    device_issuer: str = field(metadata=solidity("address") | classed(MEDIUM))
    #: zero = one issuer
    second_device_issuer: str = field(
        default=ZERO_ADDRESS, metadata=solidity("address") | classed(MEDIUM)
    )
    #: 0 = buyer receipt only, 1 = any certified device, 2 = a device of each issuer
    arrival_quorum: int = field(default=1, metadata=solidity("uint8", hi=2) | classed(MEDIUM))

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

    def encode(self) -> bytes:
        """The canonical ABI encoding of the struct (what ``createOrder`` takes and
        hashes: every field one 32-byte word)."""
        return abi_encode([TERMS_ABI_TYPE], [self.as_tuple()])

    def digest(self) -> bytes:
        """What PurchaseOrders stores: the first 25 bytes of keccak256(abi.encode(terms))."""
        return keccak(self.encode())[:25]

    def issuers(self) -> tuple[str, ...]:
        """The issuers named in the terms (one or two)."""
        if int(self.second_device_issuer, 16) == 0:
            return (self.device_issuer,)
        return (self.device_issuer, self.second_device_issuer)

    def replace(self, **changes: Any) -> Terms:
        """A copy with some fields changed."""
        return replace(self, **changes)


TERMS_SPEC = field_specs(Terms)
TERMS_ATTRS: tuple[str, ...] = tuple(f.attr for f in TERMS_SPEC)
Terms.SOLIDITY_ORDER = TERMS_ATTRS
#: The terms' parties: the API shows them beside the terms (``OrderPublic.buyer``, ``.supplier``);
#: at creation the buyer is the caller and the supplier a field of its own.
PARTY_ATTRS: tuple[str, ...] = ("buyer", "supplier")
#: The terms besides the parties (the API's terms schemas).
TERMS_BODY_ATTRS: tuple[str, ...] = tuple(a for a in TERMS_ATTRS if a not in PARTY_ATTRS)
#: The ABI type of ``IPurchaseOrders.Terms`` (for encoding and hashing it as the contract does)
TERMS_ABI_TYPE = "(" + ",".join(f.sol_type for f in TERMS_SPEC) + ")"


@dataclass(frozen=True)
class Order:
    """Mirror of ``IPurchaseOrders.Order`` (what the contract stores: one slot), plus its id.

    ``timestamp`` is when the order entered its phase: creation (Created, Accepted,
    Funded), shipment (Shipped), delivery (Delivered, Settled after delivery, Disputed,
    Resolved); Cancelled and Expired keep the value they had. The terms themselves
    come from ``OrderCreated`` (the indexer's ``orders`` row)."""

    order_id: int
    terms_digest: bytes = field(metadata=solidity("bytes25"))
    state: OrderState = field(metadata=solidity("uint8"))
    funded: bool = field(metadata=solidity("bool"))
    breached: bool = field(metadata=solidity("bool"))
    timestamp: int = field(metadata=solidity("uint64"))

    @property
    def delivered_at(self) -> int | None:
        """The delivery time, once delivered (None before, and for cancelled or expired orders)."""
        delivered = (
            OrderState.DELIVERED,
            OrderState.SETTLED,
            OrderState.DISPUTED,
            OrderState.RESOLVED,
        )
        return self.timestamp if self.state in delivered else None


ORDER_SPEC = field_specs(Order)
#: ``Order``'s attribute names besides the id, in Solidity order.
ORDER_ATTRS: tuple[str, ...] = tuple(f.attr for f in ORDER_SPEC)
