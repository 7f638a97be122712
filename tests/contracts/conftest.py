"""Fixtures of the contract suite on top of tests/conftest.py's layers.

Every module here uses ``stack`` (parametrized over eth-tester and a real anvil,
the latter marked ``integration``), so each test runs on both backends inside an
EVM snapshot that is reverted afterwards.
"""

from __future__ import annotations

import pytest

from backend.chain.testing import Stack
from tests.contracts.helpers import Orders


@pytest.fixture
def orders(stack: Stack) -> Orders:
    """Drives orders of the active stack through their states."""
    return Orders(stack)
