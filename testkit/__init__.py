"""What the tests and the benchmarks share: real servers on free ports, the oracle as
a separate process, databases, signed readings and order rows, waiting helpers.

* :mod:`testkit.servers` — anvil, mosquitto (plain, or secured as deployed with
  dynamic security), started on free ports and stopped by PID.
* :mod:`testkit.databases` — a fresh SQLite file, PostgreSQL schema or database.
* :mod:`testkit.oracle_process` — ``python -m backend.oracle`` as a child process.
* :mod:`testkit.readings` — signed readings, order rows and device bindings.
* :mod:`testkit.results` — what a benchmark's JSON says of its run (machine, time).
* :mod:`testkit.settings` — dev-mode settings that ignore the environment.
* :mod:`testkit.waiting` — polling until a condition holds.

Nothing here is imported by the product (backend/, iot_simulator/, trustship/).
"""

from __future__ import annotations

from pathlib import Path

#: The repository's root (testkit/ is one of its top-level packages).
REPO = Path(__file__).resolve().parents[1]
