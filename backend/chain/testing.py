"""Helpers for tests, demos and benchmarks on a dev chain (never used in production paths).

:class:`Stack` bundles a connected dev chain, its deployment and the wrapped
contracts; :func:`build_stack` deploys one. :func:`default_terms` gives valid
order terms to override field by field, :func:`device_key` deterministic device
keys, :func:`issuer_key` deterministic device-issuer keys, :func:`certify` a signed
device certificate, :func:`signed` a device-signed reading.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from backend.chain.connection import Accounts, Chain
from backend.chain.contracts import (
    ETH,
    Contracts,
    Escrow,
    PurchaseOrders,
    QualityVerification,
    Stablecoin,
    Terms,
)
from backend.chain.deploy import Deployment, deploy_all
from backend.telemetry import Domain, Reading, SignedReading, device_address, sign_reading
from backend.telemetry.certificates import DeviceCertificate, SignedCertificate, sign_certificate

DAY = 24 * 3600
ETHER = 10**18

#: Rotterdam container terminal (Maasvlakte), micro-degrees
ROTTERDAM = (51_950_000, 4_050_000)


@dataclass(frozen=True)
class DevAccounts:
    """The dev accounts of a stack (all present)."""

    admin: LocalAccount
    oracle: LocalAccount
    buyer: LocalAccount
    supplier: LocalAccount
    arbiter: LocalAccount
    auditor: LocalAccount
    stranger: LocalAccount

    @classmethod
    def from_accounts(cls, accounts: Accounts) -> DevAccounts:
        return cls(**{role: accounts.require(role) for role in cls.__dataclass_fields__})


@dataclass
class Stack:
    """A dev chain with the contracts deployed and wired."""

    kind: str  # "eth-tester" or "anvil" (or "rpc")
    chain: Chain
    deployment: Deployment
    contracts: Contracts
    accounts: DevAccounts

    @property
    def po(self) -> PurchaseOrders:
        return self.contracts.purchase_orders

    @property
    def qv(self) -> QualityVerification:
        return self.contracts.quality

    @property
    def escrow(self) -> Escrow:
        return self.contracts.escrow

    @property
    def token(self) -> Stablecoin:
        if self.contracts.token is None:
            raise LookupError("this stack was deployed without the test stablecoin")
        return self.contracts.token

    @property
    def domain(self) -> Domain:
        return self.contracts.quality.domain()

    def make_terms(self, **overrides: Any) -> Terms:
        """Valid terms relative to this chain's time (see :func:`default_terms`), between
        the dev buyer and supplier."""
        a = self.accounts
        overrides.setdefault("buyer", a.buyer.address)
        overrides.setdefault("supplier", a.supplier.address)
        return default_terms(self.chain.now(), a.arbiter.address, **overrides)

    def certify(
        self, order_id: int, device_n: int, issuer_n: int = 1, **window: int
    ) -> SignedCertificate:
        """Device ``device_n`` certified for ``order_id`` by issuer ``issuer_n``."""
        return certify(self.domain, order_id, device(device_n), issuer_key(issuer_n), **window)

    def issuer_account(self, issuer_n: int) -> LocalAccount:
        """Issuer ``issuer_n`` as an account that can send (funded from the admin once)."""
        from eth_account import Account

        acct: LocalAccount = Account.from_key(issuer_key(issuer_n))
        if self.chain.balance(acct.address) == 0:
            self.chain.sender(self.accounts.admin).transact(
                acct.address, b"", value=10**18, gas=21_000, function="fund issuer"
            )
        return acct

    def certificates(
        self, order_id: int, devices: list[str], issuer_n: int = 1
    ) -> list[SignedCertificate]:
        """Certificates for these device addresses on ``order_id`` by issuer ``issuer_n``."""
        return [certify(self.domain, order_id, d, issuer_key(issuer_n)) for d in devices]


def build_stack(chain: Chain, kind: str | None = None, *, stablecoin: bool = True) -> Stack:
    """Deploy and wire the contracts on a dev ``chain``."""
    deployment = deploy_all(chain, stablecoin=stablecoin)
    return Stack(
        kind=kind or chain.kind,
        chain=chain,
        deployment=deployment,
        contracts=Contracts.from_deployment(chain, deployment),
        accounts=DevAccounts.from_accounts(chain.accounts),
    )


def default_terms(now: int, arbiter: str, **overrides: Any) -> Terms:
    """Terms a test can start from: 10 ETH, due in 7 days at Rotterdam (±0.05°),
    2–8 °C with 30 min tolerated, 1 %/started hour late up to 20 %, 30 % breach
    refund, split final at delivery; devices certified by issuer 1 (:func:`issuer`),
    one certified device proves arrival. ``buyer`` and ``supplier`` must be given; any
    field can be overridden by name."""
    lat, lon = ROTTERDAM
    values: dict[str, Any] = {
        "token": ETH,
        "price": 10 * ETHER,
        "delivery_deadline": now + 7 * DAY,
        "expiry_grace_secs": 7 * DAY,
        "dest_lat_e6": lat,
        "dest_lon_e6": lon,
        "geofence_e6": 50_000,
        "min_temp_centi_c": 200,
        "max_temp_centi_c": 800,
        "max_humidity_permille": 0,
        "max_shock_milli_g": 0,
        "tolerated_excursion_secs": 1800,
        "late_penalty_bps_per_hour": 100,
        "late_penalty_cap_bps": 2000,
        "breach_refund_bps": 3000,
        "dispute_window_secs": 0,
        "arbiter": arbiter,
        "device_issuer": issuer(1),
        "second_device_issuer": ETH,
        "arrival_quorum": 1,
    }
    for required in ("buyer", "supplier"):
        if required not in overrides:
            raise TypeError(f"default_terms needs {required}=")
        values[required] = overrides[required]
    unknown = set(overrides) - set(values)
    if unknown:
        raise TypeError(f"unknown Terms field(s): {', '.join(sorted(unknown))}")
    values.update(overrides)
    return Terms(**values)


def device_key(n: int) -> str:
    """A deterministic device private key: keccak256("trustship-test-device:<n>")."""
    return "0x" + keccak(text=f"trustship-test-device:{n}").hex()


def device(n: int) -> str:
    """The address of :func:`device_key` ``(n)``."""
    return device_address(device_key(n))


def issuer_key(n: int) -> str:
    """A deterministic device-issuer private key: keccak256("trustship-test-issuer:<n>")."""
    return "0x" + keccak(text=f"trustship-test-issuer:{n}").hex()


def issuer(n: int) -> str:
    """The address of :func:`issuer_key` ``(n)``."""
    return device_address(issuer_key(n))


#: the default validity window of :func:`certify`: from 0 to 2^40 - 1
FOREVER = 2**40 - 1


def certify(
    domain: Domain,
    order_id: int,
    device_addr: str,
    key: str,
    *,
    valid_from: int = 0,
    valid_until: int = FOREVER,
) -> SignedCertificate:
    """A certificate for ``device_addr`` on ``order_id``, signed with issuer ``key``."""
    cert = DeviceCertificate(
        order_id=order_id,
        device=device_addr,
        issuer=device_address(key),
        valid_from=valid_from,
        valid_until=valid_until,
    )
    return sign_certificate(cert, domain, key)


def signed(reading: Reading, domain: Domain, key: str) -> SignedReading:
    """``reading`` signed by ``key`` for ``domain``."""
    return SignedReading(
        reading=reading, device=device_address(key), signature=sign_reading(reading, domain, key)
    )
