"""Deterministic device keys and MQTT passwords, derived from the scenario seed.

A device's secp256k1 key is ``keccak256("trustship-device" || seed || 0x00 ||
order name || 0x00 || index)`` (index as 4 big-endian bytes), re-hashed in the
astronomically unlikely case that it is not a valid key. Replaying a scenario
therefore always produces the same device addresses, which is what lets a
scenario be bound on-chain and its readings be checked later.

A device's MQTT password is derived from its key too (``keccak256("trustship-
mqtt-password" || key)``, first 32 hex digits), so the publisher and the
password-file writer (:mod:`iot_simulator.credentials`) agree without sharing a
file. These are simulator conventions: a real fleet provisions both per device.
"""

from __future__ import annotations

from backend.telemetry import device_address
from backend.telemetry.keccak import keccak

_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def seed_bytes(seed: int | str) -> bytes:
    return str(seed).encode()


def derive_key(seed: int | str, label: str, index: int) -> bytes:
    """The 32-byte private key for device ``index`` of ``label`` (an order name)."""
    material = b"trustship-device" + seed_bytes(seed) + b"\x00" + label.encode() + b"\x00"
    key = keccak(material + index.to_bytes(4, "big"))
    while not 0 < int.from_bytes(key, "big") < _SECP256K1_N:  # pragma: no cover - p ~ 2^-128
        key = keccak(key)
    return key


def issuer_key(seed: int | str, name: str) -> bytes:
    """The 32-byte private key of the device issuer ``name`` (a carrier, the buyer's
    logger vendor …) of a scenario: it signs the certificates of the devices it vouches for."""
    return derive_key(seed, "issuer/" + name, 0)


def derive_rng_seed(seed: int | str, *parts: str) -> int:
    """An integer seed for ``random.Random`` from the scenario seed and labels."""
    return int.from_bytes(
        keccak(b"trustship-rng" + seed_bytes(seed) + b"\x00".join(p.encode() for p in parts)), "big"
    )


def mqtt_password(private_key: bytes) -> str:
    """The simulator's MQTT password for the device holding ``private_key``."""
    return keccak(b"trustship-mqtt-password" + private_key).hex()[:32]


__all__ = [
    "derive_key",
    "derive_rng_seed",
    "device_address",
    "issuer_key",
    "mqtt_password",
    "seed_bytes",
]
