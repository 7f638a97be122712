// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IEscrow} from "../interfaces/IEscrow.sol";

/// @title ReentrantReceiver
/// @notice TEST ONLY. A malicious account for reentrancy tests: it acts as buyer or
/// supplier through {execute}, and when Escrow sends it ETH its `receive()` tries to
/// call `Escrow.withdraw` again. The attempt's outcome is recorded, not bubbled, so a
/// test can assert both that the outer withdrawal paid exactly once and that the
/// re-entry was refused (`lastReentryError` holds the revert data, e.g.
/// `ReentrancyGuardReentrantCall()`). Only the first ETH payment that comes from Escrow
/// triggers the attempt. With `rejectPayments` set, `receive()` reverts
/// instead, to exercise `EscrowTransferFailed`.
contract ReentrantReceiver {
    IEscrow public immutable escrow;

    bool public rejectPayments;
    uint256 public reentryAttempts;
    bool public reentrySucceeded;
    bytes public lastReentryError;
    uint256 public received;

    error ReentrantReceiverRejected();

    constructor(IEscrow escrow_) {
        escrow = escrow_;
    }

    /// @notice Calls `target` with `data` and `value` as this contract (e.g. to create
    /// and fund an order as buyer, or to call `Escrow.withdraw`). Bubbles reverts.
    function execute(address target, uint256 value, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = target.call{value: value}(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(ret, 0x20), mload(ret))
            }
        }
        return ret;
    }

    /// @notice Starts the attack: withdraw this contract's ETH credit.
    function attack() external {
        escrow.withdraw(address(0));
    }

    function setRejectPayments(bool reject) external {
        rejectPayments = reject;
    }

    receive() external payable {
        if (rejectPayments) revert ReentrantReceiverRejected();
        received += msg.value;
        // Only payments from Escrow trigger the attack, and only the first one (funding
        // this contract from an EOA does not use up the attempt).
        if (msg.sender == address(escrow) && reentryAttempts == 0) {
            reentryAttempts = 1;
            try escrow.withdraw(address(0)) {
                reentrySucceeded = true;
            } catch (bytes memory reason) {
                lastReentryError = reason;
            }
        }
    }
}
