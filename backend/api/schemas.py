"""Request and response models (``OrderCreate``, ``OrderPublic``, ``OrdersPublic`` …).

Conventions (docs/api.md): snake_case fields; integers in the units of
DESIGN.md §2; money (``uint256``) as a decimal string, because JSON numbers
beyond 2^53 are lost by many clients; addresses checksummed; hashes and
signatures 0x-hex.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_type_hints

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from backend.core.errors import AddressError
from backend.domain.alert import Alert
from backend.domain.order import MAX_PRICE, TERMS_BODY_ATTRS, ZERO_ADDRESS
from backend.domain.order import Terms as DomainTerms
from backend.domain.reading import READING_ATTRS, READING_FIELDS, READING_SPEC, ReadingFields
from backend.domain.sensitivity import (
    HIGH,
    LOW,
    MEDIUM,
    ORDER_FIELD_CLASSES,
    Classified,
    Coarsening,
    FieldClass,
    Owner,
    Sensitivity,
    field_classes,
    fields_of,
)
from backend.domain.sharing import Disclosure, Grant
from backend.telemetry.address import parse_address

#: backend.domain.order.ORDER_STATE_LABELS as a type for the document (tests/domain
#: checks that the two agree).
OrderState = Literal[
    "Created",
    "Accepted",
    "Funded",
    "Shipped",
    "Delivered",
    "Settled",
    "Cancelled",
    "Disputed",
    "Resolved",
    "Expired",
]
PartyRole = Literal["buyer", "supplier", "arbiter"]

UINT256_MAX = 2**256 - 1


def _address(value: str) -> str:
    try:
        return parse_address(value)
    except AddressError as exc:  # the message without pydantic's "Value error, " prefix
        raise PydanticCustomError("eth_address", str(exc)) from None


Address = Annotated[
    str,
    Field(
        pattern=r"^0x[0-9a-fA-F]{40}$",
        examples=["0x5FbDB2315678afecb367f032d93F642f64180aa3"],
        description="An Ethereum address: EIP-55 checksummed, or all lower case (no "
        "checksum). A mixed-case address with a wrong checksum is refused (422). Answers "
        "are checksummed.",
        # A format of its own: the pattern cannot say that mixed case must be a checksum.
        json_schema_extra={"format": "eth-address"},
    ),
    AfterValidator(_address),
]
Wei = Annotated[
    str,
    Field(
        pattern=r"^(0|[1-9][0-9]{0,77})$",
        examples=["1000000000000000000"],
        description="A uint256 amount in token base units, as a decimal string.",
    ),
]


def _at_most_max_price(value: Any) -> Any:
    # Before the pattern, so an amount that is merely too large says so (not "should
    # match pattern"); anything else is left to the pattern and the strict str check.
    digits = isinstance(value, str) and len(value) <= 80 and value.isascii() and value.isdigit()
    if digits and int(value) > MAX_PRICE:
        raise PydanticCustomError(
            "max_price",
            "at most {max_price} (PurchaseOrders.MAX_PRICE, 2^88 - 1: what escrow can hold)",
            {"max_price": str(MAX_PRICE)},
        )
    return value


#: An amount an order can hold (a price, a ruling's share): 0 … MAX_PRICE, refused
#: above before any transaction is built.
OrderAmount = Annotated[
    str,
    Field(
        pattern=r"^(0|[1-9][0-9]{0,26})$",
        examples=["1000000000000000000"],
        description="Token base units as a decimal string, at most PurchaseOrders.MAX_PRICE "
        f"= 2^88 - 1 = {MAX_PRICE}.",
    ),
    BeforeValidator(_at_most_max_price),
]


def _hex_of_bytes(value: Any) -> Any:
    # A stored hash (bytes) read from a row becomes its 0x-hex form.
    return "0x" + bytes(value).hex() if isinstance(value, bytes | bytearray) else value


#: 32 bytes as 0x-hex (response models; built from a row's bytes too).
Hex32 = Annotated[
    str,
    Field(pattern=r"^0x[0-9a-f]{64}$", description="32 bytes, 0x-hex."),
    BeforeValidator(_hex_of_bytes),
]
Uint16 = Annotated[int, Field(ge=0, le=2**16 - 1)]
Uint32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
#: The largest integer a request may carry where the contract or the database takes more
#: (uint64, bigint ids): 2^53 - 1, the largest that every JSON implementation reads
#: exactly (a double's integers), so the bound in the document means the same to all.
MAX_JSON_INT = 2**53 - 1
Uint64 = Annotated[int, Field(ge=0, le=MAX_JSON_INT)]
OrderId = Annotated[int, Field(ge=1, le=MAX_JSON_INT)]


# --- request parameters (query, path, header) ------------------------------------------
#
# Parameters arrive as text. pydantic's lax parsing would read "1.0", " 1", "+1" and
# "1_000" as integers and "yes", "on", "t" as true; the API reads exactly what its
# OpenAPI document says (docs/api.md, "Conventions"): decimal digits for integers,
# true/false for booleans, and free text without control characters (PostgreSQL
# refuses NUL in text; no control character belongs in a query).


def _decimal_digits(value: Any) -> Any:
    if isinstance(value, str) and not (
        0 < len(value) <= 20 and value.isascii() and value.isdigit()
    ):
        raise PydanticCustomError(
            "int_parsing", "Input should be an integer in decimal digits (no sign, point or space)"
        )
    return value


def _true_or_false(value: Any) -> Any:
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise PydanticCustomError("bool_parsing", "Input should be true or false")
        return value == "true"
    return value


#: Put after ``Query``/``Path``/``Header`` in an integer parameter's ``Annotated``:
#: decimal digits only. (After, not inside the type: a validator inside a nested
#: ``Annotated`` makes FastAPI write the bounds as raw ``ge``/``le`` into the document.)
Digits = BeforeValidator(_decimal_digits)
#: The same for a boolean parameter: ``true`` or ``false``.
TrueOrFalse = BeforeValidator(_true_or_false)
#: Free text in a query parameter: what every such parameter is declared as.
QueryText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[^\x00-\x1F\x7F]+$",
        description="Text without control characters (NUL, tabs, line breaks ...).",
    ),
]


def reading_position(cursor: str) -> tuple[int, int]:
    """(timestamp, reading id) of a reading cursor ("<timestamp>-<n>", the pattern of
    :data:`ReadingCursor`; backend.api.convert.reading_cursor writes it)."""
    timestamp, _, reading_id = cursor.partition("-")
    return int(timestamp), int(reading_id)


def _reading_cursor(value: str) -> str:
    if max(reading_position(value)) > MAX_JSON_INT:
        raise PydanticCustomError(
            "cursor", "Input should be the `next` of a page: each number at most 2^53 - 1"
        )
    return value


#: ``after`` of a page of readings: the ``next`` of the page before, the time and
#: place in arrival order of its last reading ("<timestamp>-<n>").
ReadingCursor = Annotated[
    str,
    Field(
        max_length=33,
        pattern=r"^(0|[1-9][0-9]{0,15})-[1-9][0-9]{0,15}$",
        description="The `next` of the page before (keyset paging: cheaper than `offset` "
        "deep in a long list).",
    ),
    AfterValidator(_reading_cursor),
]


#: The ``next`` of a keyset-paged list (the order list, an order's telemetry).
_NEXT = (
    "Pass as `after` for the page that follows (keyset paging); null when the query found "
    "fewer than `limit` (a full last page is followed by an empty one)."
)


class _Model(BaseModel):
    """A request body: unknown fields refused, no type coercion (a boolean must be a JSON
    boolean, an integer a JSON integer; money stays a decimal string)."""

    model_config = ConfigDict(extra="forbid", strict=True)


# --- terms and orders ---------------------------------------------------------------


#: The issuers' fields, as the answers (``TermsPublic``) and the requests (``Terms``) type them.
_DEVICE_ISSUER = Field(
    description="Who certifies the order's devices (EIP-712 DeviceCertificate; never the "
    "supplier: docs/trust.md)."
)
_SECOND_DEVICE_ISSUER = Field(description="A second issuer; zero address = one issuer.")


class TermsPublic(BaseModel):
    """An order's commercial terms (IPurchaseOrders.Terms, units of DESIGN.md §2)."""

    token: str = Field(default=ZERO_ADDRESS, description="ERC-20 token; zero address = ETH.")
    price: Wei
    delivery_deadline: Uint64 = Field(description="Unix seconds.")
    expiry_grace_secs: Uint32 = 0
    dest_lat_e6: Int32 = Field(ge=-90_000_000, le=90_000_000)
    dest_lon_e6: Int32 = Field(ge=-180_000_000, le=180_000_000)
    geofence_e6: Uint32 = Field(
        description="Half side of the destination box, micro-degrees (docs/contracts.md)."
    )
    min_temp_centi_c: Int32
    max_temp_centi_c: Int32
    max_humidity_permille: Uint16 = Field(default=0, description="0 = not checked.")
    max_shock_milli_g: Uint32 = Field(default=0, description="0 = not checked.")
    tolerated_excursion_secs: Uint32 = 0
    late_penalty_bps_per_hour: Uint16 = 0
    late_penalty_cap_bps: Uint16 = 0
    breach_refund_bps: Uint16 = 0
    dispute_window_secs: Uint32 = 0
    arbiter: str
    device_issuer: Annotated[str, _DEVICE_ISSUER]
    second_device_issuer: Annotated[str, _SECOND_DEVICE_ISSUER] = ZERO_ADDRESS
    arrival_quorum: int = Field(
        default=1,
        ge=0,
        le=2,
        description="Devices (of distinct issuers) that must prove arrival: 0 = buyer receipt "
        "only, 1 = any certified device, 2 = one of each issuer.",
    )


class Terms(TermsPublic):
    """Terms as a buyer proposes them (addresses checked and checksummed; strict types)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    price: OrderAmount

    token: Address = Field(default=ZERO_ADDRESS, description="ERC-20 token; zero address = ETH.")
    arbiter: Address
    device_issuer: Annotated[Address, _DEVICE_ISSUER]
    second_device_issuer: Annotated[Address, _SECOND_DEVICE_ISSUER] = ZERO_ADDRESS


class OrderCreate(_Model):
    """A buyer's new order: the supplier and the terms; ``fund`` pays in the same call."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        json_schema_extra={
            "examples": [
                {
                    "supplier": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
                    "fund": True,
                    "terms": {
                        "price": "1000000000000000000",
                        "delivery_deadline": 4102444800,
                        "dest_lat_e6": 51950000,
                        "dest_lon_e6": 4050000,
                        "geofence_e6": 50000,
                        "min_temp_centi_c": 200,
                        "max_temp_centi_c": 800,
                        "tolerated_excursion_secs": 1800,
                        "late_penalty_bps_per_hour": 100,
                        "late_penalty_cap_bps": 2000,
                        "breach_refund_bps": 3000,
                        "arbiter": "0xe7f1725E7734CE288F8367e1Bb143E90bb3F0512",
                        "device_issuer": "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0",
                    },
                }
            ]
        },
    )

    supplier: Address
    terms: Terms
    fund: bool = Field(
        default=False,
        description="Create and fund in one transaction (createAndFundOrder; ETH orders only).",
    )


class SettlementAmounts(BaseModel):
    buyer_amount: Wei
    supplier_amount: Wei


class OrderPublic(BaseModel):
    """An order as the indexer last saw it on chain."""

    id: int
    state: OrderState
    buyer: str
    supplier: str
    arbiter: str
    funded: bool
    breached: bool
    created_at: int | None
    shipped_at: int | None
    delivered_at: int | None
    disputed_at: int | None
    late_seconds: int | None
    delivery_confirmed_by: str | None
    settlement: SettlementAmounts | None = Field(
        description="The credited split, once settled, resolved or expired."
    )
    terms: TermsPublic
    updated_block: int


class OrdersPublic(BaseModel):
    data: list[OrderPublic]
    count: int = Field(description="How many orders match the filters (all pages).")
    next: int | None = Field(default=None, description=_NEXT)


# --- writes -------------------------------------------------------------------------


class TxPublic(BaseModel):
    """A mined transaction and the order's state after it."""

    tx_hash: Hex32
    block_number: int
    order: OrderPublic | None = Field(
        description="The order after the transaction (null for account-level calls)."
    )


class CertificateIn(_Model):
    """An issuer's EIP-712 ``DeviceCertificate`` for one device on this order, signed."""

    order_id: Annotated[int, Field(ge=1, le=MAX_JSON_INT)]
    device: Address
    issuer: Address
    valid_from: Uint64
    valid_until: Uint64
    signature: Annotated[
        str,
        Field(
            pattern=r"^0x[0-9a-fA-F]{130}$",
            description="The issuer's 65-byte signature (r || s || v), 0x-hex.",
        ),
    ]


class ShipRequest(_Model):
    """The devices travelling with the goods, each with its issuer's certificate
    (the contract binds only devices certified by an issuer the terms name)."""

    certificates: list[CertificateIn] = Field(min_length=1, max_length=64)


class RulingRequest(_Model):
    buyer_amount: OrderAmount = Field(
        description="What the buyer gets (at most the price); the supplier gets the rest."
    )


class WithdrawRequest(_Model):
    token: Address = Field(default=ZERO_ADDRESS, description="Zero address = ETH.")


class WithdrawalPublic(BaseModel):
    tx_hash: Hex32
    block_number: int
    account: str
    token: str
    amount: Wei


class MqttCredentialsRequest(_Model):
    order_id: OrderId = Field(description="An order the caller is a party to (or audits).")


class MqttCredentialsPublic(BaseModel):
    """A read-only broker login for one order's telemetry and status (docs/watcher.md).
    The password is shown once; the login is deleted when the order ends."""

    order_id: int
    username: str
    password: str
    topics: list[str]
    ends_with_order: bool = True


# --- settlement preview ---------------------------------------------------------------


class SettlementPreview(BaseModel):
    order_id: int
    delivered_at: int
    breach: bool
    late_seconds: int
    late_penalty_bps: int
    breach_bps: int
    refund_bps: int
    buyer_amount: Wei
    supplier_amount: Wei


# --- telemetry, commitments, proofs -------------------------------------------------


class ReadingPublic(BaseModel):
    """A signed reading as the device signed it."""

    order_id: int
    device: str
    # The reading's other fields, in struct order, from their one declaration.
    __annotations__.update({a: "int" for a in READING_ATTRS if a != "order_id"})
    signature: str = Field(description="65 bytes r‖s‖v, 0x-hex.")
    digest: Hex32 = Field(description="The EIP-712 digest the device signed.")
    batch_seq: int | None = Field(description="The Merkle batch that commits it, if any.")
    received_at: float


class ReadingsPublic(BaseModel):
    data: list[ReadingPublic]
    count: int
    next: str | None = Field(default=None, description=_NEXT)


class CommitmentPublic(BaseModel):
    """A fleet batch: one Merkle root over a window of every order's readings."""

    model_config = ConfigDict(from_attributes=True)  # model_validate(row) reads its store row

    batch_seq: int
    root: Hex32
    committer: str | None = Field(description="The oracle whose fleet log holds the root.")
    log_index: int | None = Field(description="The root's place in that log (once indexed).")
    reading_count: int
    first_reading_id: int
    last_reading_id: int
    status: str = Field(description="pending | done | failed")
    tx_hash: Hex32 | None
    created_at: float


class CommitmentsPublic(BaseModel):
    data: list[CommitmentPublic]
    count: int


class ContractReading(BaseModel):
    """The reading as the contract's ``Reading`` struct takes it (camelCase fields)."""

    # The struct's fields by their wire names, from the reading's one declaration.
    __annotations__ = dict.fromkeys(READING_FIELDS, "int")


class CertificatePublic(BaseModel):
    """The certificate a device was bound with (``SignedCertificate``)."""

    order_id: int
    device: str
    issuer: str
    valid_from: int
    valid_until: int
    signature: str


class ProofPublic(BaseModel):
    """Everything ``QualityVerification.verifyFleetReading`` needs besides the order's
    terms (``GET /orders/{id}``): the reading, its signature and certificate, and the
    ``FleetProof`` (batch_seq, root, count, log_index, log_proof, leaf_index,
    reading_proof) against the committer's current log root."""

    order_id: int
    committer: str
    batch_seq: int
    root: Hex32
    count: int
    log_index: int
    log_proof: list[Hex32] = Field(description="32 siblings up to the log's current root.")
    log_root: Hex32 = Field(description="The log root the proof leads to.")
    leaf_index: int
    leaf: Hex32
    reading_proof: list[Hex32]
    device: str
    reading: ContractReading
    signature: str
    certificate: CertificatePublic | None
    verifying_contract: str | None = Field(description="QualityVerification's address.")


# --- events, alerts, devices ----------------------------------------------------------


class ChainEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # model_validate(row) reads its store row

    block_number: int
    block_timestamp: int | None
    tx_hash: Hex32
    log_index: int
    contract: str
    event: str
    order_id: int | None
    args: dict[str, Any]


class ChainEventsPublic(BaseModel):
    data: list[ChainEventPublic]
    count: int


class AlertPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # model_validate(row) reads its store row

    id: int
    # The alert's fields, from their one declaration.
    __annotations__.update(get_type_hints(Alert))
    created_at: float


class AlertsPublic(BaseModel):
    data: list[AlertPublic]
    count: int


class RiskReasonPublic(BaseModel):
    """One contribution to the score (kinds: ``backend.domain.alert.ReasonKind``)."""

    kind: str
    value: float | None = Field(description="The measure behind it (seconds, mg, readings, ‰).")
    weight: float = Field(description="The most points this reason can add.")
    strength: float = Field(description="How much of the weight applies now (0–1).")
    points: float = Field(description="weight × strength")
    text: str


class RiskEtaPublic(BaseModel):
    timestamp: int = Field(description="Forecast arrival in the destination geofence (unix s).")
    confidence: float = Field(description="0–1")
    late_secs: int = Field(description="Forecast lateness against the delivery deadline.")
    penalty_bps: int = Field(description="The late penalty that lateness implies (bps of price).")
    penalty_amount: str = Field(description="The same in token base units (decimal string).")
    remaining_km: float
    speed_kmh: float = Field(description="Speed made good toward the destination.")


class RiskPointPublic(BaseModel):
    """A past snapshot of the score."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: int
    score: float
    breach_in_secs: int | None
    reasons: list[RiskReasonPublic]


class RiskPublic(BaseModel):
    """A shipment's live risk score (docs/risk.md), its history and its risk alerts."""

    order_id: int
    at: int | None = Field(description="Time of the newest snapshot (null: none yet).")
    score: float | None = Field(description="0–100 (null: no reading assessed yet).")
    reasons: list[RiskReasonPublic]
    eta: RiskEtaPublic | None
    breach_in_secs: int | None = Field(
        description="Seconds until a breach is forecast provable (null: none in sight)."
    )
    history: list[RiskPointPublic] = Field(description="Earlier snapshots, newest first.")
    alerts: list[AlertPublic] = Field(
        description="The order's risk alerts (risk_breach, risk_late, risk_level), newest "
        "first; each carries data.lead_secs, the time left before the limit or deadline."
    )


class DevicePublic(BaseModel):
    """A device bound to an order: what the oracle stored of it and what it says of itself."""

    order_id: int
    device: str
    bound_block: int | None
    bound_at: int | None
    reading_count: int = Field(description="Readings stored for this order.")
    first_seq: int | None
    last_seq: int | None
    last_timestamp: int | None
    missing_readings: int = Field(
        description="Readings between the first and the newest seq known (stored or reported "
        "by the device's status) that were never stored: see /orders/{id}/gaps."
    )
    status: str | None = Field(description="online | offline, from the device's status message.")
    status_at: int | None
    battery_permille: int | None
    reported_last_seq: int | None = Field(
        description="The newest seq the device says it has sent (unsigned: never evidence)."
    )


class RefusalPublic(BaseModel):
    """Telemetry the oracle refused for one device on one order (by the message's topic)."""

    device: str
    by_reason: dict[str, int] = Field(description="Refusals by reason (docs/oracle.md).")
    refused: int
    last_reason: str
    last_message: str = Field(description="Why the newest one was refused, for a person.")


class RefusalsPublic(BaseModel):
    data: list[RefusalPublic]
    count: int


class GapPublic(BaseModel):
    """Readings of one device that never arrived while later ones did."""

    device: str
    first_missing: int
    last_missing: int
    missing: int


class GapsPublic(BaseModel):
    data: list[GapPublic]
    count: int = Field(description="How many seq ranges are missing.")
    missing_readings: int = Field(description="How many readings they hold in all.")


class DevicesPublic(BaseModel):
    data: list[DevicePublic]
    count: int


# --- account, health --------------------------------------------------------------------


class PartyPublic(BaseModel):
    name: str
    address: str
    roles: list[str]
    custodial: bool = Field(description="Whether the API signs transactions for this party.")
    jurisdiction: str = Field(
        description="Where the party's data lives (ISO 3166-1 alpha-2 or EU): docs/sharing.md."
    )


class ComponentHealth(BaseModel):
    status: Literal["ok", "degraded", "down", "error", "disabled"] = Field(
        description="error: the component is reachable but wrong and will not be used "
        "(the chain was reset: its contracts are gone)."
    )
    detail: str | None = None


class DeploymentPublic(BaseModel):
    """Where the contracts are: what a device needs to sign readings (the EIP-712
    domain is chain id + QualityVerification) and a client needs to verify proofs."""

    chain_id: int
    contracts: dict[str, str] = Field(description="Contract name → address.")
    token: str | None = Field(description="The dev test stablecoin, if deployed.")
    start_block: int = Field(description="Block of the deployment; the indexer starts here.")
    oracle_clock: int | None = Field(
        description="The oracle's clock (unix seconds): the later of wall time and the "
        "latest chain time it has indexed; readings later than this plus a tolerance are "
        "refused as future_timestamp. Null when no oracle runs in this process."
    )


class HealthPublic(BaseModel):
    status: Literal["ok", "degraded", "down", "error"]
    components: dict[str, ComponentHealth]


class CreditPublic(BaseModel):
    token: str
    amount: Wei


class AccountPublic(BaseModel):
    party: PartyPublic
    credits: list[CreditPublic] = Field(
        description="Escrow credits waiting to be withdrawn, per token (from indexed events)."
    )


# --- supplier scorecards (docs/scorecards.md) -------------------------------------------


class TokenFiguresPublic(BaseModel):
    """Money figures in one token (amounts in different tokens are never added)."""

    token: str
    orders: int
    value: Wei = Field(description="The orders' prices summed.")
    closed_value: Wei = Field(description="Prices of the orders settled or resolved.")
    late_penalties: Wei = Field(description="Buyer's share for lateness, settled orders.")
    breach_refunds: Wei = Field(description="Buyer's share for a proven breach, settled orders.")
    ruled_refunds: Wei = Field(description="What arbiters gave buyers, resolved orders.")
    expiry_refunds: Wei = Field(description="Deposits returned by expiry.")
    paid_share_bps: int | None = Field(
        description="(late_penalties + breach_refunds + ruled_refunds) × 10000 // closed_value."
    )


class FiguresPublic(BaseModel):
    """A set of orders' record; rates in basis points, null when nothing to divide by."""

    orders: int
    open: int
    cancelled: int
    shipped: int
    delivered: int
    on_time: int
    late: int
    on_time_bps: int | None = Field(description="on_time × 10000 // delivered.")
    breached: int
    excursions: int
    shocks: int
    breach_bps: int | None = Field(description="breached × 10000 // shipped.")
    excursion_bps: int | None
    shock_bps: int | None
    mean_late_secs: int | None = Field(description="Over delivered orders (on time = 0).")
    p95_late_secs: int | None = Field(description="Nearest rank over delivered orders.")
    max_late_secs: int | None
    disputes_opened: int
    disputes_by_buyer: int
    disputes_by_supplier: int
    disputes_pending: int
    disputes_lapsed: int = Field(description="The arbiter did not rule: settled by the terms.")
    rulings_for_buyer: int = Field(description="The buyer got more than the terms gave.")
    rulings_for_supplier: int = Field(description="The buyer got less than the terms gave.")
    rulings_as_terms: int
    expired: int
    finished: int = Field(description="delivered + expired.")
    clean: int = Field(description="Delivered on time without a breach.")
    score_bps: int | None = Field(description="clean × 10000 // finished (the ranking key).")
    tokens: list[TokenFiguresPublic]


class LanePublic(BaseModel):
    lane: str = Field(
        description="The destination's 0.1° cell, by its south-west corner (docs/scorecards.md)."
    )
    all_time: FiguresPublic
    last_90_days: FiguresPublic


class ScorecardPublic(BaseModel):
    """A supplier's record from the contracts' events alone."""

    supplier: str
    as_of: int | None = Field(description="The newest indexed event's block time.")
    since: int | None = Field(description="Start of the last 90 days (as_of − 90 days).")
    all_time: FiguresPublic
    last_90_days: FiguresPublic
    lanes: list[LanePublic]


class SupplierRankPublic(BaseModel):
    rank: int = Field(description="1 = best (docs/scorecards.md, 'Ranking').")
    supplier: str
    all_time: FiguresPublic
    last_90_days: FiguresPublic


class SuppliersPublic(BaseModel):
    as_of: int | None
    data: list[SupplierRankPublic]
    count: int = Field(description="How many suppliers have orders (all pages).")


class QuoteRequest(_Model):
    """A draft order: the supplier and the proposed terms (the buyer is the caller)."""

    supplier: Address
    terms: Terms


class BacktestPublic(BaseModel):
    """The proposed terms settled again over one history (docs/scorecards.md, "Quotes")."""

    basis: Literal["supplier", "lane", "supplier_lane"]
    finished: int = Field(description="Delivered + expired orders in the history.")
    delivered: int
    late: int
    breached: int
    expired: int
    late_bps: int | None = Field(
        description="Chance of a late delivery: late × 10000 // delivered."
    )
    breach_bps: int | None = Field(description="Chance of a breach: breached × 10000 // delivered.")
    expiry_bps: int | None = Field(description="expired × 10000 // finished.")
    mean_refund_bps: int | None = Field(description="Mean buyer share under the proposed terms.")
    max_refund_bps: int | None
    expected_buyer_amount: Wei | None = Field(description="Expected refund to the buyer.")
    expected_supplier_amount: Wei | None


class QuotePublic(BaseModel):
    supplier: str
    lane: str
    as_of: int | None
    supplier_record: ScorecardPublic | None = Field(
        description="The supplier's scorecard (null: no order names it yet)."
    )
    lane_record: LanePublic | None = Field(
        description="The lane's record over all suppliers (null: no order to it yet)."
    )
    backtests: list[BacktestPublic] = Field(
        description="What the proposed terms would have paid over the supplier's history, "
        "the lane's, and the supplier's on the lane."
    )


# --- EPCIS 2.0 (docs/epcis.md) ----------------------------------------------------------


class EpcisDocumentPublic(BaseModel):
    """A GS1 EPCIS 2.0 ``EPCISDocument`` (JSON-LD), valid against GS1's JSON schema."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    context: list[Any] = Field(alias="@context", description="EPCIS 2.0's context and ours.")
    type: Literal["EPCISDocument"]
    schemaVersion: str = Field(description='"2.0"')
    creationDate: str = Field(description="The newest event's time (stable for the same records).")
    epcisBody: dict[str, Any] = Field(description="`eventList`: ObjectEvents, by time.")


class EpcisEventRef(BaseModel):
    order_id: int
    event_id: str


class CapturePublic(BaseModel):
    """What a capture stored: every event of the document, new or stored before."""

    captured: list[EpcisEventRef] = Field(description="Stored now.")
    duplicates: list[EpcisEventRef] = Field(
        description="Stored before (same eventID and content): not stored again."
    )
    count: int = Field(description="How many events were stored now.")


class EpcisEventPublic(BaseModel):
    """A partner's event captured for an order."""

    model_config = ConfigDict(from_attributes=True)

    event_id: str
    hash_id: str = Field(description="Our CBV event hash ID of the event.")
    order_id: int
    event_type: str
    biz_step: str | None
    event_time: int = Field(description="Its eventTime, unix seconds.")
    captured_by: Address
    captured_by_name: str
    captured_at: float
    event: dict[str, Any] = Field(description="The event as captured (with its eventID).")


class EpcisEventsPublic(BaseModel):
    data: list[EpcisEventPublic]
    count: int


# --- grants and the disclosure log (docs/sharing.md) ------------------------------------


class GrantRequest(_Model):
    """Ask an order's data owner for one class of the order's data (only ``medium`` is
    grantable)."""

    sensitivity: Literal["low", "medium", "high"] = Field(
        description="The class asked for: medium (low needs no grant; high is never granted)."
    )
    reason: Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[^\x00]+$")] = Field(
        description="Why the data is needed, for the owner's review."
    )


class GrantApproval(_Model):
    expires_at: Uint64 = Field(
        description="Unix seconds when the grant lapses (after now, within a year)."
    )


class GrantDenial(_Model):
    reason: Annotated[str, Field(min_length=1, max_length=1000, pattern=r"^[^\x00]+$")] = Field(
        description="Why the request is denied (required)."
    )


class GrantPublic(BaseModel):
    """A grant and its state now (``expired`` once an approval's time has passed)."""

    # The grant's fields, from their one declaration; the state as it is now.
    __annotations__.update(get_type_hints(Grant))
    state: Literal["requested", "approved", "denied", "expired", "revoked"]


class GrantsPublic(BaseModel):
    data: list[GrantPublic]
    count: int


class DisclosurePublic(BaseModel):
    """One cross-border release of medium data (an entry of the disclosure log)."""

    # The entry's fields, from their one declaration; the hashes as 0x-hex.
    __annotations__.update(get_type_hints(Disclosure))
    prev_hash: Hex32
    entry_hash: Hex32


class ChainHeadPublic(BaseModel):
    seq: int = Field(description="The last entry's seq (0: the log is empty).")
    hash: Hex32 = Field(description="The last entry's hash (32 zero bytes when empty).")


class VerificationPublic(BaseModel):
    ok: bool
    entries: int
    head: ChainHeadPublic
    first_bad_seq: int | None = Field(description="The first entry that does not verify.")
    problem: str | None


class DisclosuresPublic(BaseModel):
    data: list[DisclosurePublic]
    count: int
    verification: VerificationPublic = Field(
        description="The whole log checked from its first entry (docs/sharing.md)."
    )


# --- sensitivity classes of every answer (docs/sharing.md) ----------------------------
#
# Each response schema's record class, whose data it is, and the class of each of its
# fields. Schemas built from a domain record take its fields' classes from the record's
# declaration (backend/domain); the others declare theirs here, beside their definition.
# tests/api/test_sensitivity.py fails on a schema of the OpenAPI document that is missing.


def _uniform(
    model: type[BaseModel], record: Sensitivity, owner: Owner, **special: FieldClass
) -> Classified:
    return Classified(record, owner, fields_of(record, model.model_fields, **special))


_L, _M, _H = FieldClass(LOW), FieldClass(MEDIUM), FieldClass(HIGH)
_PSEUDONYM = FieldClass(HIGH, Coarsening.PSEUDONYM)
_READING = field_classes(ReadingFields)
_READING_WIRE = {f.wire: _READING[f.attr] for f in READING_SPEC}
_TERMS = field_classes(DomainTerms)
_ALERT = field_classes(Alert)
_T, _A = Owner.TELEMETRY, Owner.AGREEMENT

SENSITIVITY: dict[type[BaseModel], Classified] = {
    TermsPublic: Classified(MEDIUM, _A, {a: _TERMS[a] for a in TERMS_BODY_ATTRS}),
    SettlementAmounts: _uniform(SettlementAmounts, LOW, _A),
    OrderPublic: Classified(LOW, _A, ORDER_FIELD_CLASSES),
    OrdersPublic: _uniform(OrdersPublic, LOW, _A),
    TxPublic: _uniform(TxPublic, LOW, _A),
    WithdrawalPublic: _uniform(WithdrawalPublic, HIGH, Owner.CALLER),
    SettlementPreview: _uniform(SettlementPreview, MEDIUM, _A, order_id=_L),
    ReadingPublic: Classified(
        MEDIUM,
        _T,
        {
            **{a: _READING[a] for a in READING_ATTRS},
            "device": _PSEUDONYM,
            "signature": _H,  # the device's key is recoverable from it
            "digest": _M,
            "batch_seq": _L,
            "received_at": _M,
        },
    ),
    # next: the last reading's time, as medium as the reading's own
    ReadingsPublic: Classified(MEDIUM, _T, {"data": _L, "count": _L, "next": _M}),
    CommitmentPublic: _uniform(CommitmentPublic, LOW, _T),
    CommitmentsPublic: _uniform(CommitmentsPublic, LOW, _T),
    ContractReading: Classified(MEDIUM, _T, _READING_WIRE),
    CertificatePublic: _uniform(CertificatePublic, HIGH, _T),
    ProofPublic: _uniform(
        ProofPublic, MEDIUM, _T, order_id=_L, device=_PSEUDONYM, signature=_H, certificate=_H
    ),
    ChainEventPublic: _uniform(ChainEventPublic, LOW, _A, args=_M),
    ChainEventsPublic: _uniform(ChainEventsPublic, LOW, _A),
    AlertPublic: Classified(MEDIUM, _T, {"id": _L, **_ALERT, "created_at": _M}),
    AlertsPublic: Classified(MEDIUM, _T, {"data": _L, "count": _L}),
    RiskReasonPublic: _uniform(RiskReasonPublic, MEDIUM, _T),
    RiskEtaPublic: _uniform(RiskEtaPublic, MEDIUM, _T),
    RiskPointPublic: _uniform(RiskPointPublic, MEDIUM, _T, id=_L),
    RiskPublic: _uniform(RiskPublic, MEDIUM, _T, order_id=_L),
    DevicePublic: _uniform(DevicePublic, MEDIUM, _T, order_id=_L, device=_PSEUDONYM),
    DevicesPublic: Classified(MEDIUM, _T, {"data": _L, "count": _L}),
    RefusalPublic: _uniform(RefusalPublic, MEDIUM, _T, device=_PSEUDONYM),
    RefusalsPublic: Classified(MEDIUM, _T, {"data": _L, "count": _L}),
    GapPublic: _uniform(GapPublic, MEDIUM, _T, device=_PSEUDONYM),
    GapsPublic: Classified(MEDIUM, _T, {"data": _L, "count": _L, "missing_readings": _M}),
    # the caller's own account (party accounts are high, but the caller's own)
    PartyPublic: _uniform(PartyPublic, HIGH, Owner.CALLER),
    CreditPublic: _uniform(CreditPublic, HIGH, Owner.CALLER),
    AccountPublic: _uniform(AccountPublic, HIGH, Owner.CALLER),
    # service data and public aggregates
    ComponentHealth: _uniform(ComponentHealth, LOW, Owner.PUBLIC),
    HealthPublic: _uniform(HealthPublic, LOW, Owner.PUBLIC),
    DeploymentPublic: _uniform(DeploymentPublic, LOW, Owner.PUBLIC),
    TokenFiguresPublic: _uniform(TokenFiguresPublic, LOW, Owner.PUBLIC),
    FiguresPublic: _uniform(FiguresPublic, LOW, Owner.PUBLIC),
    LanePublic: _uniform(LanePublic, LOW, Owner.PUBLIC),
    ScorecardPublic: _uniform(ScorecardPublic, LOW, Owner.PUBLIC),
    SupplierRankPublic: _uniform(SupplierRankPublic, LOW, Owner.PUBLIC),
    SuppliersPublic: _uniform(SuppliersPublic, LOW, Owner.PUBLIC),
    BacktestPublic: _uniform(BacktestPublic, LOW, Owner.PUBLIC),
    QuotePublic: _uniform(QuotePublic, LOW, Owner.PUBLIC),
    # grants and disclosures: the routes answer only the parties they concern
    GrantPublic: _uniform(GrantPublic, LOW, Owner.CALLER),
    GrantsPublic: _uniform(GrantsPublic, LOW, Owner.CALLER),
    DisclosurePublic: _uniform(DisclosurePublic, LOW, Owner.CALLER),
    ChainHeadPublic: _uniform(ChainHeadPublic, LOW, Owner.CALLER),
    VerificationPublic: _uniform(VerificationPublic, LOW, Owner.CALLER),
    DisclosuresPublic: _uniform(DisclosuresPublic, LOW, Owner.CALLER),
    # a party's own broker login for one of its orders (POST /account/mqtt-credentials)
    MqttCredentialsPublic: _uniform(MqttCredentialsPublic, HIGH, Owner.CALLER),
    # EPCIS 2.0: the document is filtered inside, record by record, by the same decide()
    # (backend/api/epcis.py, epcis_share: readings medium, device IDs high, captured
    # events medium) and says so in its ts:policy member; the envelope is the caller's.
    EpcisDocumentPublic: _uniform(EpcisDocumentPublic, LOW, Owner.CALLER),
    CapturePublic: _uniform(CapturePublic, LOW, Owner.CALLER),
    EpcisEventRef: _uniform(EpcisEventRef, LOW, Owner.CALLER),
    # a partner's captured event: the order's custody record (medium agreement data)
    EpcisEventPublic: _uniform(EpcisEventPublic, MEDIUM, _A, order_id=_L, captured_by=_PSEUDONYM),
    EpcisEventsPublic: Classified(MEDIUM, _A, {"data": _L, "count": _L}),
}

#: The field holding a record's order id, where it is not ``order_id``.
ORDER_KEYS: dict[type[BaseModel], str] = {OrderPublic: "id"}
