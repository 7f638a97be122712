"""Device certificates: an issuer vouches that a device may witness one order.

EIP-712 type ``DeviceCertificate(uint256 orderId,address device,address issuer,uint64
validFrom,uint64 validUntil)`` under the readings' domain (``TrustShip Telemetry``,
version 1, the QualityVerification contract), signed by the issuer's key. The contract
checks it at shipment and with every piece of evidence (docs/trust.md). The tests check
the digest byte for byte against eth_account and the contract's ``hashCertificate``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import coincurve
from eth_utils import to_checksum_address

from backend.telemetry.eip712 import Domain, recover_from_digest
from backend.telemetry.keccak import keccak

CERTIFICATE_TYPE = (
    "DeviceCertificate(uint256 orderId,address device,address issuer,uint64 validFrom,"
    "uint64 validUntil)"
)
CERTIFICATE_TYPEHASH = keccak(CERTIFICATE_TYPE.encode())
#: eth_account ``encode_typed_data`` types of the certificate
CERTIFICATE_EIP712_TYPES = [
    {"name": "orderId", "type": "uint256"},
    {"name": "device", "type": "address"},
    {"name": "issuer", "type": "address"},
    {"name": "validFrom", "type": "uint64"},
    {"name": "validUntil", "type": "uint64"},
]


@dataclass(frozen=True, kw_only=True)
class DeviceCertificate:
    """Mirror of the Solidity ``DeviceCertificate``."""

    order_id: int
    device: str
    issuer: str
    valid_from: int
    valid_until: int

    def as_tuple(self) -> tuple[Any, ...]:
        return (
            self.order_id,
            to_checksum_address(self.device),
            to_checksum_address(self.issuer),
            self.valid_from,
            self.valid_until,
        )

    def struct_hash(self) -> bytes:
        return keccak(
            CERTIFICATE_TYPEHASH
            + self.order_id.to_bytes(32, "big")
            + bytes(12)
            + bytes.fromhex(self.device[2:])
            + bytes(12)
            + bytes.fromhex(self.issuer[2:])
            + self.valid_from.to_bytes(32, "big")
            + self.valid_until.to_bytes(32, "big")
        )

    def digest(self, domain: Domain) -> bytes:
        """The EIP-712 digest the issuer signs and the contract recomputes."""
        return keccak(b"\x19\x01" + domain.separator + self.struct_hash())

    def typed_data_message(self) -> dict[str, Any]:
        """The message as eth_account's ``encode_typed_data`` takes it."""
        return {
            "orderId": self.order_id,
            "device": self.device,
            "issuer": self.issuer,
            "validFrom": self.valid_from,
            "validUntil": self.valid_until,
        }


@dataclass(frozen=True)
class SignedCertificate:
    """A certificate with the issuer's 65-byte signature (Solidity ``SignedCertificate``)."""

    certificate: DeviceCertificate
    signature: bytes

    @property
    def device(self) -> str:
        return self.certificate.device

    @property
    def issuer(self) -> str:
        return self.certificate.issuer

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.certificate.as_tuple(), self.signature)

    def as_json(self) -> dict[str, Any]:
        """The certificate as a JSON body (the API's ``CertificateIn``): its fields and the
        signature as 0x-hex."""
        return {**asdict(self.certificate), "signature": "0x" + self.signature.hex()}

    def signer(self, domain: Domain) -> str:
        """The address that signed it (raises ``WireError`` on a malformed signature)."""
        return recover_from_digest(self.certificate.digest(domain), self.signature)


def sign_certificate(
    certificate: DeviceCertificate, domain: Domain, issuer_key: bytes | str
) -> SignedCertificate:
    """Sign ``certificate`` with the issuer's key (65 bytes r || s || v, v in {27, 28})."""
    secret = (
        bytes.fromhex(issuer_key.removeprefix("0x")) if isinstance(issuer_key, str) else issuer_key
    )
    sig = coincurve.PrivateKey(secret).sign_recoverable(certificate.digest(domain), hasher=None)
    return SignedCertificate(certificate, sig[:64] + bytes([sig[64] + 27]))


__all__ = [
    "CERTIFICATE_EIP712_TYPES",
    "CERTIFICATE_TYPE",
    "CERTIFICATE_TYPEHASH",
    "DeviceCertificate",
    "SignedCertificate",
    "sign_certificate",
]
