"""The one definition of TrustShip's signed telemetry reading.

Both the oracle (``backend``) and the simulator (``iot_simulator``) import this
subpackage, and nothing else from ``backend``: it holds the reading schema, the
EIP-712 hashing that the QualityVerification contract mirrors, signing and
signature recovery, the MQTT topics and the Merkle tree used for commitments; its
submodules ``certificates`` (the issuers' EIP-712 device certificates) and ``fleet``
(the fleet commitment: leaves, batches, the committer's log) serve both sides too.
The reading itself is defined in :mod:`backend.domain.reading` and re-exported
here, so the simulator still needs nothing else. It depends on nothing in
``backend`` but ``backend.core.errors`` (whose exception root and wire/address
errors it re-exports, :mod:`backend.telemetry.errors`) and ``backend.domain``.
"""

from backend.telemetry.address import parse_address
from backend.telemetry.eip712 import (
    Domain,
    device_address,
    reading_digest,
    recover_device,
    sign_reading,
)
from backend.telemetry.errors import AddressError, TrustShipError, WireError
from backend.telemetry.merkle import MerkleTree, leaf_hash, verify_proof
from backend.telemetry.reading import (
    FIELD_RANGES,
    FLAG_DOOR_OPEN,
    FLAG_SENSOR_FAULT,
    FLAG_TAMPER,
    MAX_PAYLOAD_BYTES,
    WIRE_VERSION,
    Reading,
    SignedReading,
    decode_message,
    encode_message,
    parse_topic,
    status_topic,
    telemetry_topic,
)

__all__ = [
    "AddressError",
    "TrustShipError",
    "WireError",
    "FIELD_RANGES",
    "FLAG_DOOR_OPEN",
    "FLAG_SENSOR_FAULT",
    "FLAG_TAMPER",
    "MAX_PAYLOAD_BYTES",
    "WIRE_VERSION",
    "Domain",
    "MerkleTree",
    "Reading",
    "SignedReading",
    "decode_message",
    "device_address",
    "encode_message",
    "leaf_hash",
    "parse_address",
    "parse_topic",
    "reading_digest",
    "recover_device",
    "sign_reading",
    "status_topic",
    "telemetry_topic",
    "verify_proof",
]
