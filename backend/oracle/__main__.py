"""``python -m backend.oracle``: run the oracle alone (ingest, rules, indexer, outbox)."""

from __future__ import annotations

import sys

from backend.core.errors import TrustShipError
from backend.core.logging import configure_logging
from backend.core.settings import get_settings


def main() -> int:
    settings = get_settings()
    configure_logging(settings.LOG_LEVEL)
    from backend.oracle.service import Oracle

    try:
        Oracle.from_settings(settings).run_forever()
    except TrustShipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
