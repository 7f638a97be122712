"""Every custom error the contracts can revert with is named once
(backend.domain.contract_errors.ContractError) and classified once; a renamed, added
or removed error in the Solidity sources fails here instead of silently becoming a
409 or a failed chain action."""

from __future__ import annotations

import pytest

from backend.api.errors import revert_status
from backend.domain.actions import ACTIONS
from backend.domain.contract_errors import (
    _BY_KIND,
    ACTION_REVERTS,
    ERROR_KINDS,
    ActionOutcome,
    ContractError,
    ErrorKind,
    action_outcome,
    error_kind,
)
from tests.domain.abi import CONTRACTS, error_names
from tests.domain.test_actions import sample


def test_the_list_is_the_abis_errors() -> None:
    in_abi = set().union(*(error_names(c) for c in CONTRACTS))
    named = {e.value for e in ContractError}
    assert not in_abi - named, f"errors in the ABI not in ContractError: {in_abi - named}"
    assert not named - in_abi, f"ContractError names no ABI error: {named - in_abi}"
    assert all(e.name == e.value for e in ContractError)


def test_every_error_has_exactly_one_kind() -> None:
    assert set(ERROR_KINDS) == set(ContractError)
    assert sum(len(errors) for errors in _BY_KIND.values()) == len(ContractError)
    assert set(_BY_KIND) == set(ErrorKind)


@pytest.mark.parametrize("error", list(ContractError), ids=str)
def test_the_api_status_follows_the_kind(error: ContractError) -> None:
    expected = {
        ErrorKind.FORBIDDEN: 403,
        ErrorKind.NOT_FOUND: 404,
        ErrorKind.INVALID: 422,
        ErrorKind.CONFLICT: 409,
    }[error.kind]
    assert revert_status(error) == expected


def test_names_that_are_not_ours_are_conflicts() -> None:
    for name in ("Error", "Panic", "ECDSAInvalidSignature", "SomethingNew"):
        assert error_kind(name) is ErrorKind.CONFLICT
        assert revert_status(name) == 409


def test_a_few_classifications_callers_rely_on() -> None:
    assert revert_status("PurchaseOrdersNotBuyer") == 403
    assert revert_status("PurchaseOrdersUnknownOrder") == 404
    assert revert_status("PurchaseOrdersInvalidTerms") == 422
    assert revert_status("PurchaseOrdersInvalidState") == 409


def test_action_outcomes_name_real_errors_and_real_actions() -> None:
    assert set(ACTION_REVERTS) <= set(ACTIONS.values())
    for outcomes in ACTION_REVERTS.values():
        assert set(outcomes) <= set(ContractError)
        # An outcome other than "rejected" only for reverts that mean "not now" or "done".
        assert all(error.kind is ErrorKind.CONFLICT or error.kind is ErrorKind.INVALID
                   for error in outcomes)  # fmt: skip


def test_each_action_knows_its_already_done_revert() -> None:
    done = ActionOutcome.ALREADY_DONE
    for cls in ACTIONS.values():
        action = sample(cls)
        if cls is ACTIONS["anchor_disclosures"]:  # calls no contract: nothing to revert
            assert ACTION_REVERTS[cls] == {}
            continue
        assert done in ACTION_REVERTS[cls].values(), f"{cls.kind} has no 'already done'"
        assert action_outcome(action, "Panic") is None
        assert action_outcome(action, "QualityVerificationInvalidSignature") is None
    assert action_outcome(sample(ACTIONS["commit_batch"]), "QualityVerificationStaleBatch") is done
    later = action_outcome(sample(ACTIONS["settle"]), "PurchaseOrdersDisputeWindow")
    assert later is ActionOutcome.RETRY_LATER
