"""What every benchmark writes beside its figures: the machine, the time of the run, and
the JSON file itself (bench/results/*.json)."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any


def machine(**extra: Any) -> dict[str, Any]:
    """The machine a run was measured on (CPUs, Python, platform), and ``extra``."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        **extra,
    }


def measured_at() -> str:
    """Now, as the UTC time stamp of a run."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def save_json(path: Path, body: dict[str, Any]) -> None:
    """Write ``body`` to ``path`` (its folder made if needed) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body, indent=2) + "\n")
    print(f"saved {path}")
