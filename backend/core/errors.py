"""The exception hierarchy shared by every backend part.

Every error TrustShip raises on purpose derives from :class:`TrustShipError`, so
callers can catch one type and still tell the cases apart by subclass.
"""

from __future__ import annotations


class TrustShipError(Exception):
    """Raised when TrustShip refuses or fails an operation for a known reason."""


class ConfigurationError(TrustShipError):
    """Raised when the configuration is missing, inconsistent or unsafe."""


class CompilerNotFoundError(TrustShipError):
    """Raised when no Solidity compiler can be found for `trustship compile`."""


class ArtifactError(TrustShipError):
    """Raised when a compiled contract artifact is missing or unreadable."""


class WireError(TrustShipError):
    """Raised when a telemetry message does not follow the wire format.

    ``reason`` is a short stable code (``malformed_json``, ``bad_signature`` ...)
    that the oracle counts on ``/metrics``; the message explains it to a person.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class AddressError(TrustShipError, ValueError):
    """Raised when a string is not an Ethereum address, or is mixed-case with a wrong
    EIP-55 checksum (a mistyped address). A ``ValueError`` too, so pydantic validators
    report it as a validation error of the field."""
