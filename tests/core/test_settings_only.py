"""One configuration: Settings is the only reader of the environment, and the README's
configuration table lists every one of its fields (and nothing else).

The scan covers the product's processes, ``backend`` and the ``trustship`` CLI. The
simulator (``iot_simulator``) is a program of its own that meets the backend only
on the wire and may import nothing of it but ``backend.telemetry``; it reads its own
few variables (docs/simulator.md).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from backend.core.settings import Settings

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("backend", "trustship")
#: Names that read the environment: ``os.environ[...]``, ``os.getenv(...)`` and kin.
ENV_READERS = {"environ", "environb", "getenv", "getenvb"}


def environment_reads(source: str) -> list[tuple[int, str]]:
    """(line, what) for every read of the environment in ``source``."""
    tree = ast.parse(source)
    os_names = {"os"}  # import os as something_else
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            os_names |= {a.asname or a.name for a in node.names if a.name == "os"}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            for alias in node.names:
                if alias.name in ENV_READERS:
                    found.append((node.lineno, f"from os import {alias.name}"))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ENV_READERS
            and isinstance(node.value, ast.Name)
            and node.value.id in os_names
        ):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return sorted(found)


def test_the_scan_finds_every_spelling() -> None:
    """The control: each way of reading the environment is found."""
    source = "\n".join(
        [
            "import os",
            "import os as o",
            "from os import environ, getenv",
            "a = os.environ.get('A')",
            "b = os.environ['B']",
            "c = os.getenv('C')",
            "d = o.environ",
            "e = os.path.join('x')",  # not a read
        ]
    )
    assert environment_reads(source) == [
        (3, "from os import environ"),
        (3, "from os import getenv"),
        (4, "os.environ"),
        (5, "os.environ"),
        (6, "os.getenv"),
        (7, "o.environ"),
    ]


def test_only_settings_reads_the_environment() -> None:
    offenders = [
        f"{path.relative_to(REPO)}:{line}: {what}"
        for package in SCANNED
        for path in sorted((REPO / package).rglob("*.py"))
        for line, what in environment_reads(path.read_text())
    ]
    assert not offenders, (
        "read the setting through backend.core.settings.Settings (and list it in the "
        "README's configuration table) instead of the environment:\n" + "\n".join(offenders)
    )


def readme_variables() -> set[str]:
    """The variables named in the first column of the README's configuration table."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for row in section.splitlines():
        if row.startswith("| `"):
            first = row.split("|")[1]
            names |= set(re.findall(r"`([A-Z][A-Z0-9_]*)`", first))
    return names


def test_the_readme_table_lists_every_setting_and_nothing_else() -> None:
    fields = set(Settings.model_fields)
    documented = readme_variables()
    assert fields - documented == set(), "settings missing from README.md's table"
    assert documented - fields == set(), "README.md's table names variables Settings lacks"


@pytest.mark.parametrize(
    ("name", "raw", "value"),
    [
        ("ORACLE_COMMIT_MAX_AGE_SECS", "7.5", 7.5),
        ("ORACLE_COMMIT_MAX_READINGS", "250", 250),
        ("ORACLE_COMMIT_MAX_AGE_SECS", "  ", None),  # blank: unset
        ("ORACLE_SHARE_GROUP", "", ""),  # empty: a plain subscription
        ("TRUSTSHIP_SOLC_NO_DOWNLOAD", "1", True),
    ],
)
def test_settings_read_the_oracle_knobs_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, name: str, raw: str, value: object
) -> None:
    monkeypatch.setenv(name, raw)
    assert getattr(Settings(_env_file=None), name) == value  # type: ignore[call-arg]


def test_a_knob_in_dotenv_reaches_the_oracle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ORACLE_COMMIT_MAX_AGE_SECS in .env used to be ignored (only os.environ was read)."""
    from backend.oracle.service import OracleConfig

    monkeypatch.delenv("ORACLE_COMMIT_MAX_AGE_SECS", raising=False)
    monkeypatch.delenv("ORACLE_CLIENT_ID", raising=False)
    env = tmp_path / ".env"
    env.write_text("ORACLE_COMMIT_MAX_AGE_SECS=12\nORACLE_CLIENT_ID=oracle-7\n")
    config = OracleConfig.from_settings(Settings(_env_file=env))  # type: ignore[call-arg]
    assert config.commit_max_age_secs == 12.0
    assert config.subscriber.client_id == "oracle-7"


@pytest.mark.parametrize("raw", ["0", "-1", "soon"])
def test_a_knob_that_is_not_a_positive_number_is_refused(
    monkeypatch: pytest.MonkeyPatch, raw: str
) -> None:
    from pydantic import ValidationError

    monkeypatch.setenv("ORACLE_OUTBOX_POLL_SECS", raw)
    with pytest.raises(ValidationError, match="ORACLE_OUTBOX_POLL_SECS"):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_a_process_default_gives_way_to_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    from backend.core.settings import ORACLE_KNOBS
    from backend.oracle.service import OracleConfig

    for name in ORACLE_KNOBS:
        monkeypatch.delenv(name, raising=False)
    unset = Settings(_env_file=None)  # type: ignore[call-arg]
    assert OracleConfig.from_settings(unset, indexer_poll_secs=0.2).indexer_poll_secs == 0.2
    assert OracleConfig.from_settings(unset).indexer_poll_secs == OracleConfig().indexer_poll_secs
    set_ = Settings(_env_file=None, ORACLE_INDEXER_POLL_SECS=3.0)  # type: ignore[call-arg]
    assert OracleConfig.from_settings(set_, indexer_poll_secs=0.2).indexer_poll_secs == 3.0


@pytest.mark.parametrize(
    ("env", "receipts", "interval"),
    [({}, True, 0.5), ({"ORACLE_RECEIPTS": "false"}, False, 0.5),
     ({"ORACLE_RECEIPTS": "", "ORACLE_RECEIPT_INTERVAL_SECS": "2"}, True, 2.0)],
)  # fmt: skip
def test_receipt_settings_reach_the_oracle(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], receipts: bool, interval: float
) -> None:
    from backend.oracle.service import OracleConfig

    for name in ("ORACLE_RECEIPTS", "ORACLE_RECEIPT_INTERVAL_SECS"):
        monkeypatch.delenv(name, raising=False)
    for name, raw in env.items():
        monkeypatch.setenv(name, raw)
    config = OracleConfig.from_settings(Settings(_env_file=None))  # type: ignore[call-arg]
    assert (config.receipts, config.receipt_interval_secs) == (receipts, interval)
