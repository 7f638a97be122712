// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IEscrow
/// @notice Holds the orders' payments (ETH or ERC-20s) until settlement, then credits
/// buyer and supplier; they withdraw their credits (pull payments). Escrow keeps no
/// per-order record: PurchaseOrders' record of an order (funded, state) is the one
/// truth, and only PurchaseOrders may deposit or release.
interface IEscrow {
    /// @notice Thrown when the caller is not the PurchaseOrders contract.
    error EscrowNotPurchaseOrders(address caller);
    /// @notice Thrown when the ETH (or the tokens) received differ from what the order requires.
    error EscrowInsufficientDeposit(uint256 orderId, uint256 required, uint256 provided);
    /// @notice Thrown when ETH is sent for an ERC-20 order.
    error EscrowUnexpectedValue(uint256 orderId, uint256 value);
    /// @notice Thrown when the caller has no credit in that token.
    error EscrowNothingToWithdraw(address account, address token);
    /// @notice Thrown when an ETH transfer to the account fails.
    error EscrowTransferFailed(address account, uint256 amount);
    /// @notice Thrown when a deposit amount is zero or above the largest amount escrow takes (2^88 - 1).
    error EscrowInvalidAmount(uint256 orderId, uint256 amount);

    /// @notice Emitted when an order's payment enters escrow.
    event FundsDeposited(uint256 indexed orderId, address indexed payer, address indexed token, uint256 amount);
    /// @notice Emitted when part of an order's deposit is credited to an account.
    event FundsCredited(uint256 indexed orderId, address indexed account, address indexed token, uint256 amount);
    /// @notice Emitted when an account withdraws its credit.
    event FundsWithdrawn(address indexed account, address indexed token, uint256 amount);

    function deposit(uint256 orderId, address payer, address token, uint256 amount) external payable;
    function release(
        uint256 orderId,
        address token,
        address buyer,
        uint256 buyerAmount,
        address supplier,
        uint256 supplierAmount
    ) external;
    function withdraw(address token) external;

    function creditOf(address account, address token) external view returns (uint256);
    function purchaseOrders() external view returns (address);
    /// @notice Deposits held and not yet released, plus credits not yet withdrawn, per token.
    function totalOwed(address token) external view returns (uint256);
}
