// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IEscrow} from "./interfaces/IEscrow.sol";

/// @title Escrow
/// @notice Holds the purchase orders' payments (ETH or ERC-20s) until PurchaseOrders
/// releases one as a split between buyer and supplier; both then pull their credit with
/// {withdraw}. Money only ever leaves through {withdraw}.
///
/// Escrow keeps no record per order: PurchaseOrders (fixed at deployment, no admin) is
/// the only caller of {deposit} and {release}, and its state machine releases each funded
/// order exactly once, for exactly its price (its record says funded; the terms' digest
/// fixes the price and token). That saves a storage slot per order.
///
/// Accounting: per token, `totalOwed` = deposits not yet released + credits not yet
/// withdrawn. A release moves value from the first term to the second (the total does not
/// change); a withdrawal lowers it. The contract's balance of a token is never below
/// `totalOwed(token)` (fee-on-transfer deposits are refused, see {deposit}).
///
/// Gas: credit and total slots never return to zero once used (see `_creditsPlusOne`),
/// which makes repeat business between the same partners markedly cheaper.
contract Escrow is IEscrow, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @notice The largest amount one deposit may hold (PurchaseOrders' price bound).
    uint256 public constant MAX_AMOUNT = type(uint88).max;

    address private immutable _purchaseOrders;
    /// @dev Credits and totals are stored plus one once a slot was used (0 = never used,
    /// 1 = nothing owed), so the slot stays non-zero when it drains to nothing: the next
    /// credit to a returning partner, or the next deposit after escrow emptied, updates a
    /// slot (2,900 gas) instead of creating one (20,000 gas). Read them through
    /// {_unbiased}.
    mapping(address account => mapping(address token => uint256)) private _creditsPlusOne;
    mapping(address token => uint256) private _totalOwedPlusOne;

    /// @param purchaseOrders_ the PurchaseOrders contract, the only caller of {deposit}
    /// and {release}. It is deployed after this contract (its address is known in
    /// advance from the deployer's nonce) and checks in its constructor that it is this one.
    constructor(address purchaseOrders_) {
        _purchaseOrders = purchaseOrders_;
        _totalOwedPlusOne[address(0)] = 1; // ETH: 0 owed, slot in use
    }

    modifier onlyPurchaseOrders() {
        if (msg.sender != _purchaseOrders) revert EscrowNotPurchaseOrders(msg.sender);
        _;
    }

    /// @notice Takes an order's payment into escrow: the ETH sent with the call, or
    /// `amount` of `token` pulled from `payer` (who approved this contract).
    ///
    /// Requirements:
    /// - the caller is PurchaseOrders (which funds each order once);
    /// - `0 < amount <= MAX_AMOUNT`;
    /// - ETH: `msg.value == amount`; ERC-20: `msg.value == 0` and exactly `amount`
    ///   arrives (fee-on-transfer tokens are refused).
    function deposit(uint256 orderId, address payer, address token, uint256 amount)
        external
        payable
        onlyPurchaseOrders
    {
        if (amount == 0 || amount > MAX_AMOUNT) revert EscrowInvalidAmount(orderId, amount);
        if (token == address(0)) {
            if (msg.value != amount) revert EscrowInsufficientDeposit(orderId, amount, msg.value);
        } else if (msg.value != 0) {
            revert EscrowUnexpectedValue(orderId, msg.value);
        }

        _totalOwedPlusOne[token] = _biased(_totalOwedPlusOne[token]) + amount;
        emit FundsDeposited(orderId, payer, token, amount);

        if (token != address(0)) {
            IERC20 erc20 = IERC20(token);
            uint256 before = erc20.balanceOf(address(this));
            erc20.safeTransferFrom(payer, address(this), amount);
            uint256 received = erc20.balanceOf(address(this)) - before;
            if (received != amount) revert EscrowInsufficientDeposit(orderId, amount, received);
        }
    }

    /// @notice Releases an order's deposit as credits to buyer and supplier.
    /// Zero parts are skipped; each non-zero part emits {FundsCredited}.
    ///
    /// Requirements:
    /// - the caller is PurchaseOrders, which releases a funded order once, for its price.
    function release(
        uint256 orderId,
        address token,
        address buyer,
        uint256 buyerAmount,
        address supplier,
        uint256 supplierAmount
    ) external onlyPurchaseOrders {
        // totalOwed is unchanged: the deposit becomes credits of the same sum.
        if (buyerAmount != 0) {
            _credit(orderId, buyer, token, buyerAmount);
        }
        if (supplierAmount != 0) {
            _credit(orderId, supplier, token, supplierAmount);
        }
    }

    /// @notice Sends the caller its whole credit in `token` (zero address = ETH).
    ///
    /// Requirements:
    /// - the caller has a non-zero credit in `token`;
    /// - for ETH, the caller accepts the transfer (else {EscrowTransferFailed}).
    function withdraw(address token) external nonReentrant {
        uint256 amount = _unbiased(_creditsPlusOne[msg.sender][token]);
        if (amount == 0) revert EscrowNothingToWithdraw(msg.sender, token);

        _creditsPlusOne[msg.sender][token] = 1;
        // Cannot underflow: every credit is part of totalOwed until it is withdrawn here,
        // so the stored total is at least amount + 1.
        unchecked {
            _totalOwedPlusOne[token] -= amount;
        }
        emit FundsWithdrawn(msg.sender, token, amount);

        if (token == address(0)) {
            (bool ok,) = payable(msg.sender).call{value: amount}("");
            if (!ok) revert EscrowTransferFailed(msg.sender, amount);
        } else {
            IERC20(token).safeTransfer(msg.sender, amount);
        }
    }

    /// @inheritdoc IEscrow
    function creditOf(address account, address token) external view returns (uint256) {
        return _unbiased(_creditsPlusOne[account][token]);
    }

    /// @inheritdoc IEscrow
    function totalOwed(address token) external view returns (uint256) {
        return _unbiased(_totalOwedPlusOne[token]);
    }

    /// @inheritdoc IEscrow
    function purchaseOrders() external view returns (address) {
        return _purchaseOrders;
    }

    function _credit(uint256 orderId, address account, address token, uint256 amount) private {
        _creditsPlusOne[account][token] = _biased(_creditsPlusOne[account][token]) + amount;
        emit FundsCredited(orderId, account, token, amount);
    }

    /// @dev A stored "plus one" value, with a never-used slot (0) read as nothing owed (1).
    function _biased(uint256 stored) private pure returns (uint256) {
        return stored == 0 ? 1 : stored;
    }

    /// @dev The amount a "plus one" slot holds.
    function _unbiased(uint256 stored) private pure returns (uint256) {
        // Cannot underflow: only taken when stored > 0.
        unchecked {
            return stored == 0 ? 0 : stored - 1;
        }
    }
}
