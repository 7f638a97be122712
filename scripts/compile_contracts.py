#!/usr/bin/env python
"""Recompile contracts/build (see backend/chain/compiler.py).

Usage: scripts/compile_contracts.py [--check]

--check  compile into a temporary directory and exit 1, listing the files, when
         contracts/build differs (what CI runs).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.chain.compiler import main  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check",
        action="store_true",
        help="exit 1 if contracts/build differs from a fresh compile",
    )
    args = parser.parse_args()
    sys.exit(main(check=args.check))
