"""The contracts' custom errors, named once and classified once.

:class:`ContractError` lists every custom error the deployed contracts (and the dev
stablecoin) can revert with, by its Solidity name; tests/domain checks the list
against the compiled ABIs both ways, so a renamed or added error fails CI instead of
silently becoming a conflict. Each error has one :class:`ErrorKind` (what it means
to a caller: the API answers 403 / 404 / 422 / 409 from it), and each chain action
names the reverts that mean it is already done or should be retried later
(:data:`ACTION_REVERTS`; any other revert fails the action for good).
"""

from __future__ import annotations

from enum import StrEnum

from backend.domain import actions
from backend.domain.actions import ChainAction


class ContractError(StrEnum):
    """Every custom error of PurchaseOrders, QualityVerification, Escrow and
    TestStablecoin (OpenZeppelin's included), by Solidity name."""

    # IPurchaseOrders
    PurchaseOrdersUnknownOrder = "PurchaseOrdersUnknownOrder"
    PurchaseOrdersInvalidState = "PurchaseOrdersInvalidState"
    PurchaseOrdersNotBuyer = "PurchaseOrdersNotBuyer"
    PurchaseOrdersNotSupplier = "PurchaseOrdersNotSupplier"
    PurchaseOrdersNotParty = "PurchaseOrdersNotParty"
    PurchaseOrdersNotArbiter = "PurchaseOrdersNotArbiter"
    PurchaseOrdersInvalidTerms = "PurchaseOrdersInvalidTerms"
    PurchaseOrdersAlreadyFunded = "PurchaseOrdersAlreadyFunded"
    PurchaseOrdersNoDevices = "PurchaseOrdersNoDevices"
    PurchaseOrdersDisputeWindow = "PurchaseOrdersDisputeWindow"
    PurchaseOrdersArbitrationPending = "PurchaseOrdersArbitrationPending"
    PurchaseOrdersNotExpired = "PurchaseOrdersNotExpired"
    PurchaseOrdersInvalidRuling = "PurchaseOrdersInvalidRuling"
    PurchaseOrdersNotQualityVerification = "PurchaseOrdersNotQualityVerification"
    PurchaseOrdersInvalidDeliveryTime = "PurchaseOrdersInvalidDeliveryTime"
    PurchaseOrdersWrongTerms = "PurchaseOrdersWrongTerms"
    PurchaseOrdersMiswired = "PurchaseOrdersMiswired"
    # IQualityVerification
    QualityVerificationNotPurchaseOrders = "QualityVerificationNotPurchaseOrders"
    QualityVerificationInvalidDevice = "QualityVerificationInvalidDevice"
    QualityVerificationUnknownDevice = "QualityVerificationUnknownDevice"
    QualityVerificationWrongOrder = "QualityVerificationWrongOrder"
    QualityVerificationStaleBatch = "QualityVerificationStaleBatch"
    QualityVerificationEmptyBatch = "QualityVerificationEmptyBatch"
    QualityVerificationOrderNotInTransit = "QualityVerificationOrderNotInTransit"
    QualityVerificationBadEvidence = "QualityVerificationBadEvidence"
    QualityVerificationDifferentDevice = "QualityVerificationDifferentDevice"
    QualityVerificationNotConsecutive = "QualityVerificationNotConsecutive"
    QualityVerificationTimestampNotIncreasing = "QualityVerificationTimestampNotIncreasing"
    QualityVerificationReadingInRange = "QualityVerificationReadingInRange"
    QualityVerificationExcursionTooShort = "QualityVerificationExcursionTooShort"
    QualityVerificationShockWithinLimit = "QualityVerificationShockWithinLimit"
    QualityVerificationAlreadyBreached = "QualityVerificationAlreadyBreached"
    QualityVerificationOutsideGeofence = "QualityVerificationOutsideGeofence"
    QualityVerificationReadingBeforeShipment = "QualityVerificationReadingBeforeShipment"
    QualityVerificationInvalidSignature = "QualityVerificationInvalidSignature"
    QualityVerificationUncertifiedDevice = "QualityVerificationUncertifiedDevice"
    QualityVerificationCertificateWrongOrder = "QualityVerificationCertificateWrongOrder"
    QualityVerificationForgedCertificate = "QualityVerificationForgedCertificate"
    QualityVerificationCertificateNotValid = "QualityVerificationCertificateNotValid"
    QualityVerificationDeviceRevoked = "QualityVerificationDeviceRevoked"
    QualityVerificationIssuerMissing = "QualityVerificationIssuerMissing"
    QualityVerificationAlreadyRevoked = "QualityVerificationAlreadyRevoked"
    QualityVerificationQuorumNotMet = "QualityVerificationQuorumNotMet"
    QualityVerificationLogFull = "QualityVerificationLogFull"
    QualityVerificationLogInUse = "QualityVerificationLogInUse"
    # IEscrow
    EscrowNotPurchaseOrders = "EscrowNotPurchaseOrders"
    EscrowInsufficientDeposit = "EscrowInsufficientDeposit"
    EscrowUnexpectedValue = "EscrowUnexpectedValue"
    EscrowNothingToWithdraw = "EscrowNothingToWithdraw"
    EscrowTransferFailed = "EscrowTransferFailed"
    EscrowInvalidAmount = "EscrowInvalidAmount"
    # OpenZeppelin, reachable from the contracts above
    ReentrancyGuardReentrantCall = "ReentrancyGuardReentrantCall"
    SafeERC20FailedOperation = "SafeERC20FailedOperation"
    InvalidShortString = "InvalidShortString"
    StringTooLong = "StringTooLong"
    # ERC-20 (TestStablecoin; a token order's transfer may revert with them)
    ERC20InsufficientAllowance = "ERC20InsufficientAllowance"
    ERC20InsufficientBalance = "ERC20InsufficientBalance"
    ERC20InvalidApprover = "ERC20InvalidApprover"
    ERC20InvalidReceiver = "ERC20InvalidReceiver"
    ERC20InvalidSender = "ERC20InvalidSender"
    ERC20InvalidSpender = "ERC20InvalidSpender"

    @property
    def kind(self) -> ErrorKind:
        return ERROR_KINDS[self]


class ErrorKind(StrEnum):
    """What a revert means to the caller."""

    #: Not allowed for this caller (HTTP 403).
    FORBIDDEN = "forbidden"
    #: No such thing (HTTP 404).
    NOT_FOUND = "not_found"
    #: Bad input: the call would never succeed as made (HTTP 422).
    INVALID = "invalid"
    #: The on-chain state does not allow it now (HTTP 409).
    CONFLICT = "conflict"


E = ContractError

_BY_KIND: dict[ErrorKind, frozenset[ContractError]] = {
    ErrorKind.FORBIDDEN: frozenset(
        {
            E.PurchaseOrdersNotBuyer,
            E.PurchaseOrdersNotSupplier,
            E.PurchaseOrdersNotParty,
            E.PurchaseOrdersNotArbiter,
            E.PurchaseOrdersNotQualityVerification,
            E.QualityVerificationNotPurchaseOrders,
            E.EscrowNotPurchaseOrders,
        }
    ),
    ErrorKind.NOT_FOUND: frozenset({E.PurchaseOrdersUnknownOrder}),
    ErrorKind.INVALID: frozenset(
        {
            E.PurchaseOrdersInvalidTerms,
            E.PurchaseOrdersInvalidRuling,
            E.PurchaseOrdersNoDevices,
            E.PurchaseOrdersInvalidDeliveryTime,
            E.QualityVerificationInvalidDevice,
            E.QualityVerificationUnknownDevice,
            E.QualityVerificationWrongOrder,
            E.QualityVerificationEmptyBatch,
            E.QualityVerificationBadEvidence,
            E.QualityVerificationDifferentDevice,
            E.QualityVerificationNotConsecutive,
            E.QualityVerificationTimestampNotIncreasing,
            E.QualityVerificationReadingInRange,
            E.QualityVerificationExcursionTooShort,
            E.QualityVerificationShockWithinLimit,
            E.QualityVerificationOutsideGeofence,
            E.QualityVerificationReadingBeforeShipment,
            E.QualityVerificationInvalidSignature,
            E.QualityVerificationUncertifiedDevice,
            E.QualityVerificationForgedCertificate,
            E.QualityVerificationCertificateWrongOrder,
            E.QualityVerificationCertificateNotValid,
            E.QualityVerificationIssuerMissing,
            E.QualityVerificationQuorumNotMet,
            E.PurchaseOrdersWrongTerms,
            E.EscrowInsufficientDeposit,
            E.EscrowUnexpectedValue,
            E.EscrowInvalidAmount,
        }
    ),
    ErrorKind.CONFLICT: frozenset(
        {
            E.PurchaseOrdersInvalidState,
            E.PurchaseOrdersAlreadyFunded,
            E.PurchaseOrdersDisputeWindow,
            E.PurchaseOrdersArbitrationPending,
            E.PurchaseOrdersNotExpired,
            E.QualityVerificationStaleBatch,
            E.QualityVerificationOrderNotInTransit,
            E.QualityVerificationAlreadyBreached,
            E.QualityVerificationDeviceRevoked,
            E.QualityVerificationAlreadyRevoked,
            E.QualityVerificationLogFull,
            E.QualityVerificationLogInUse,
            E.PurchaseOrdersMiswired,
            E.EscrowNothingToWithdraw,
            E.EscrowTransferFailed,
            E.ReentrancyGuardReentrantCall,
            E.SafeERC20FailedOperation,
            E.InvalidShortString,
            E.StringTooLong,
            E.ERC20InsufficientAllowance,
            E.ERC20InsufficientBalance,
            E.ERC20InvalidApprover,
            E.ERC20InvalidReceiver,
            E.ERC20InvalidSender,
            E.ERC20InvalidSpender,
        }
    ),
}
#: Each error's kind (tests/domain: every error has exactly one).
ERROR_KINDS: dict[ContractError, ErrorKind] = {
    error: kind for kind, errors in _BY_KIND.items() for error in errors
}


def error_kind(name: str) -> ErrorKind:
    """The kind of a revert by its Solidity name; anything not ours (``Error``, ``Panic``,
    a library's error) is a conflict with the current state."""
    try:
        return ERROR_KINDS[ContractError(name)]
    except ValueError:
        return ErrorKind.CONFLICT


class ActionOutcome(StrEnum):
    """What a revert means for a chain action (any revert not listed: rejected for good)."""

    #: The chain already reflects the action (a resubmission): the entry is done.
    ALREADY_DONE = "already_done"
    #: The state will change (a window still open, the chain's clock behind): retry later.
    RETRY_LATER = "retry_later"


_DONE, _LATER = ActionOutcome.ALREADY_DONE, ActionOutcome.RETRY_LATER

#: Per action kind, the reverts that do not fail it.
ACTION_REVERTS: dict[type[ChainAction], dict[ContractError, ActionOutcome]] = {
    actions.CommitBatch: {E.QualityVerificationStaleBatch: _DONE},
    # a zero-value transaction to the oracle's own account: no contract, no revert
    actions.AnchorDisclosures: {},
    actions.ProveExcursion: {
        E.QualityVerificationAlreadyBreached: _DONE,
        E.QualityVerificationOrderNotInTransit: _DONE,
    },
    actions.ProveShock: {
        E.QualityVerificationAlreadyBreached: _DONE,
        E.QualityVerificationOrderNotInTransit: _DONE,
    },
    actions.ProveArrival: {
        E.QualityVerificationOrderNotInTransit: _DONE,
        E.PurchaseOrdersInvalidState: _DONE,
        # The reading is ahead of the chain's clock.
        E.PurchaseOrdersInvalidDeliveryTime: _LATER,
    },
    actions.Settle: {
        E.PurchaseOrdersInvalidState: _DONE,
        E.PurchaseOrdersDisputeWindow: _LATER,
        E.PurchaseOrdersArbitrationPending: _LATER,
    },
}


def action_outcome(action: ChainAction, name: str) -> ActionOutcome | None:
    """What the revert ``name`` means for ``action``; None: rejected for good."""
    try:
        error = ContractError(name)
    except ValueError:
        return None
    return ACTION_REVERTS.get(type(action), {}).get(error)
