"""``python -m backend.oracle``: run the oracle alone (ingest, rules, indexer, outbox),
wired by :func:`backend.runtime.build` from the settings."""

from __future__ import annotations

import sys
from contextlib import ExitStack

from pydantic import ValidationError

from backend.core.errors import TrustShipError
from backend.core.logging import configure_logging
from backend.core.settings import get_settings


def main() -> int:
    try:
        settings = get_settings()
    except ValidationError as exc:  # e.g. ORACLE_COMMIT_MAX_AGE_SECS=0
        print(f"error: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.LOG_LEVEL)
    from backend.runtime import build

    try:
        with ExitStack() as stack:
            build(settings, stack).run_forever()
    except TrustShipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
