// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IEscrow
/// @notice Holds each order's payment (ETH or one ERC-20) until settlement, then
/// credits buyer and supplier; they withdraw their credits (pull payments).
interface IEscrow {
    struct Deposit {
        address token;
        uint256 amount;
        bool released;
    }

    /// @notice Thrown when the caller is not the PurchaseOrders contract.
    error EscrowNotPurchaseOrders(address caller);
    /// @notice Thrown when PurchaseOrders was already set.
    error EscrowAlreadyInitialized();
    /// @notice Thrown when the ETH sent differs from what the order requires.
    error EscrowInsufficientDeposit(uint256 orderId, uint256 required, uint256 provided);
    /// @notice Thrown when ETH is sent for an ERC-20 order.
    error EscrowUnexpectedValue(uint256 orderId, uint256 value);
    /// @notice Thrown when an order is funded twice.
    error EscrowAlreadyFunded(uint256 orderId);
    /// @notice Thrown when releasing an order that holds no deposit.
    error EscrowNotFunded(uint256 orderId);
    /// @notice Thrown when an order's deposit was already released.
    error EscrowAlreadyReleased(uint256 orderId);
    /// @notice Thrown when a split does not add up to the deposit.
    error EscrowInvalidSplit(uint256 orderId, uint256 total, uint256 deposit);
    /// @notice Thrown when the caller has no credit in that token.
    error EscrowNothingToWithdraw(address account, address token);
    /// @notice Thrown when an ETH transfer to the account fails.
    error EscrowTransferFailed(address account, uint256 amount);
    /// @notice Thrown when a deposit amount is zero or above the largest amount escrow stores (2^88 - 1).
    error EscrowInvalidAmount(uint256 orderId, uint256 amount);

    /// @notice Emitted when an order's payment enters escrow.
    event FundsDeposited(uint256 indexed orderId, address indexed payer, address indexed token, uint256 amount);
    /// @notice Emitted when part of an order's deposit is credited to an account.
    event FundsCredited(uint256 indexed orderId, address indexed account, address indexed token, uint256 amount);
    /// @notice Emitted when an account withdraws its credit.
    event FundsWithdrawn(address indexed account, address indexed token, uint256 amount);
    /// @notice Emitted once, when the admin wires the PurchaseOrders contract.
    event PurchaseOrdersSet(address indexed purchaseOrders);

    /// @notice Wires the PurchaseOrders contract, the only caller of {deposit} and {release}.
    ///
    /// Requirements:
    /// - the caller has DEFAULT_ADMIN_ROLE;
    /// - it was not set before (else {EscrowAlreadyInitialized}).
    function setPurchaseOrders(address purchaseOrders) external;

    function deposit(uint256 orderId, address payer, address token, uint256 amount) external payable;
    function release(uint256 orderId, address buyer, uint256 buyerAmount, address supplier, uint256 supplierAmount)
        external;
    function withdraw(address token) external;

    function depositOf(uint256 orderId) external view returns (Deposit memory);
    function creditOf(address account, address token) external view returns (uint256);
    function purchaseOrders() external view returns (address);
    /// @notice Deposits held and not yet released, plus credits not yet withdrawn, per token.
    function totalOwed(address token) external view returns (uint256);
}
