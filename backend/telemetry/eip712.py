"""EIP-712 hashing, signing and recovery for :class:`Reading`.

The digest is built directly from the integer fields (``int.to_bytes`` and a
fast keccak) rather than through eth_account's generic typed-data encoder: it
is ~6x faster, which the oracle needs at thousands of readings per second. The
tests check it byte for byte against eth_account and against the contract's
``hashReading``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import coincurve
from eth_utils import to_checksum_address

from backend.core.errors import WireError
from backend.telemetry.keccak import keccak
from backend.telemetry.reading import EIP712_TYPES, Reading

DOMAIN_NAME = "TrustShip Telemetry"
DOMAIN_VERSION = "1"
READING_TYPE = "Reading(" + ",".join(f"{t} {name}" for name, t in EIP712_TYPES) + ")"
READING_TYPEHASH = keccak(READING_TYPE.encode())
_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_HALF_N = _SECP256K1_N // 2
# Checksumming costs ~25 µs in eth_utils; recovered signers repeat (bounded cache).
_checksum = lru_cache(maxsize=65_536)(to_checksum_address)


@dataclass(frozen=True, slots=True)
class Domain:
    """The EIP-712 domain: the chain and the QualityVerification contract."""

    chain_id: int
    verifying_contract: str
    separator: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "separator",
            keccak(
                _DOMAIN_TYPEHASH
                + keccak(DOMAIN_NAME.encode())
                + keccak(DOMAIN_VERSION.encode())
                + self.chain_id.to_bytes(32, "big")
                + bytes(12)
                + bytes.fromhex(self.verifying_contract[2:])
            ),
        )

    def typed_data(self) -> dict[str, object]:
        """The domain as eth_account's ``encode_typed_data`` expects it."""
        return {
            "name": DOMAIN_NAME,
            "version": DOMAIN_VERSION,
            "chainId": self.chain_id,
            "verifyingContract": self.verifying_contract,
        }


def _word(value: int, signed: bool) -> bytes:
    return value.to_bytes(32, "big", signed=signed)


def struct_hash(reading: Reading) -> bytes:
    r = reading
    return keccak(
        READING_TYPEHASH
        + _word(r.order_id, False)
        + _word(r.seq, False)
        + _word(r.timestamp, False)
        + _word(r.temperature_centi_c, True)
        + _word(r.humidity_permille, False)
        + _word(r.shock_milli_g, False)
        + _word(r.latitude_e6, True)
        + _word(r.longitude_e6, True)
        + _word(r.flags, False)
    )


def reading_digest(reading: Reading, domain: Domain) -> bytes:
    """The EIP-712 digest the device signs and the contract recomputes."""
    return keccak(b"\x19\x01" + domain.separator + struct_hash(reading))


@lru_cache(maxsize=4096)
def _private_key(secret: bytes) -> coincurve.PrivateKey:
    return coincurve.PrivateKey(secret)


def _key_bytes(private_key: bytes | str) -> bytes:
    if isinstance(private_key, str):
        return bytes.fromhex(private_key.removeprefix("0x"))
    return private_key


def device_address(private_key: bytes | str) -> str:
    """The checksummed address of a secp256k1 private key."""
    pub = _private_key(_key_bytes(private_key)).public_key.format(compressed=False)[1:]
    return to_checksum_address(keccak(pub)[-20:])


def sign_reading(reading: Reading, domain: Domain, private_key: bytes | str) -> bytes:
    """Sign a reading; returns 65 bytes r || s || v with v in {27, 28}."""
    digest = reading_digest(reading, domain)
    sig = _private_key(_key_bytes(private_key)).sign_recoverable(digest, hasher=None)
    return sig[:64] + bytes([sig[64] + 27])


def recover_from_digest(digest: bytes, signature: bytes) -> str:
    """Recover the signer of a digest, with the contract's (OpenZeppelin ECDSA) rules:
    65 bytes, v in {27, 28}, s in the lower half of the curve order."""
    if len(signature) != 65:
        raise WireError("bad_signature_format", f"signature has {len(signature)} bytes, not 65")
    v = signature[64]
    if v not in (27, 28):
        raise WireError("bad_signature", f"signature v={v} is not 27 or 28")
    s = int.from_bytes(signature[32:64], "big")
    if s > _HALF_N:
        raise WireError("bad_signature", "signature s is in the upper half (malleable form)")
    try:
        pub = coincurve.PublicKey.from_signature_and_message(
            signature[:64] + bytes([v - 27]), digest, hasher=None
        )
    except Exception as exc:  # coincurve raises ValueError / plain Exception
        raise WireError("bad_signature", f"signature does not recover a key: {exc}") from None
    return _checksum(keccak(pub.format(compressed=False)[1:])[-20:])


def recover_device(reading: Reading, domain: Domain, signature: bytes) -> str:
    """The checksummed address that signed ``reading`` under ``domain``."""
    return recover_from_digest(reading_digest(reading, domain), signature)
