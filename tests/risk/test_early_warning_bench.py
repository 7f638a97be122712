"""The early-warning benchmark scores warnings against the contract's own breach
definitions; it must refuse to print figures when the oracle's rules disagree with that
ground truth (bench/early_warning.py, ``_check_ground_truth``)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import Progress

from backend.risk import RiskConfig
from bench import early_warning as ew


def _result(train_missed: list[int], report_missed: list[int]) -> dict[str, object]:
    return {
        "train": {"rules_found_breach": {"missed": train_missed}},
        "report": {"rules_found_breach": {"missed": report_missed}},
    }


def test_a_breach_the_rules_missed_fails_the_benchmark() -> None:
    console = Console(file=open("/dev/null", "w"))  # noqa: SIM115 - closed with the console
    assert ew._check_ground_truth(console, _result([], [])) == 0
    assert ew._check_ground_truth(console, _result([], [7])) == 1
    assert ew._check_ground_truth(console, _result([3], [])) == 1


def test_the_rules_prove_every_breach_of_a_small_generated_fleet() -> None:
    with Progress(disable=True) as progress:
        fig = ew.run(29, 60, RiskConfig(), progress, "test")
    causes = fig["breach_causes"]
    assert causes["excursion"] and causes["shock"], "the seed must generate both kinds"
    assert fig["rules_found_breach"]["missed"] == []
