"""The errors a user of the telemetry package catches, re-exported from ``backend.core``.

The simulator imports nothing from ``backend`` but ``backend.telemetry`` (an
import-linter contract, docs/architecture.md); these are the exception root and the
errors that the wire, address and broker helpers raise, under the names they have in
:mod:`backend.core.errors`, so ``except TrustShipError`` means the same on both sides.
"""

from backend.core.errors import AddressError, TrustShipError, WireError

__all__ = ["AddressError", "TrustShipError", "WireError"]
