// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IPurchaseOrders
/// @notice Purchase orders with their commercial terms and the state machine
/// Created → Accepted → Funded → Shipped → Delivered → Settled, with Cancelled
/// (before shipment), Disputed → Resolved, and Expired (not delivered by
/// deadline + grace: the buyer is refunded).
interface IPurchaseOrders {
    enum OrderState {
        None,
        Created,
        Accepted,
        Funded,
        Shipped,
        Delivered,
        Settled,
        Cancelled,
        Disputed,
        Resolved,
        Expired
    }

    /// @notice The terms a buyer proposes and a supplier accepts. All integers,
    /// units as in DESIGN.md §2. The destination geofence is a box: a reading is
    /// inside when |lat − destLatE6| ≤ geofenceE6 and |lon − destLonE6| ≤ geofenceE6.
    struct Terms {
        address token; // zero address = ETH
        uint256 price; // token base units
        uint64 deliveryDeadline; // unix seconds
        uint32 expiryGraceSecs; // after deadline + grace an undelivered order may be expired
        int32 destLatE6;
        int32 destLonE6;
        uint32 geofenceE6; // half side of the destination box, micro-degrees
        int32 minTempCentiC;
        int32 maxTempCentiC;
        uint16 maxHumidityPermille; // 0 = humidity not checked
        uint32 maxShockMilliG; // 0 = shock not checked
        uint32 toleratedExcursionSecs;
        uint16 latePenaltyBpsPerHour; // per started hour late
        uint16 latePenaltyCapBps;
        uint16 breachRefundBps;
        uint32 disputeWindowSecs; // 0 = split final at delivery
        address arbiter;
    }

    struct Order {
        address buyer;
        address supplier;
        OrderState state;
        bool funded;
        bool breached;
        uint64 createdAt;
        uint64 shippedAt;
        uint64 deliveredAt;
        uint64 disputedAt;
        Terms terms;
    }

    /// @notice Thrown when an order id does not exist.
    error PurchaseOrdersUnknownOrder(uint256 orderId);
    /// @notice Thrown when the order is not in a state that allows the call.
    error PurchaseOrdersInvalidState(uint256 orderId, OrderState current);
    /// @notice Thrown when the caller is not the order's buyer.
    error PurchaseOrdersNotBuyer(uint256 orderId, address caller);
    /// @notice Thrown when the caller is not the order's supplier.
    error PurchaseOrdersNotSupplier(uint256 orderId, address caller);
    /// @notice Thrown when the caller is neither buyer nor supplier.
    error PurchaseOrdersNotParty(uint256 orderId, address caller);
    /// @notice Thrown when the caller is not the order's arbiter.
    error PurchaseOrdersNotArbiter(uint256 orderId, address caller);
    /// @notice Thrown when proposed terms are invalid; `field` names the offending term.
    error PurchaseOrdersInvalidTerms(string field);
    /// @notice Thrown when the order is already funded.
    error PurchaseOrdersAlreadyFunded(uint256 orderId);
    /// @notice Thrown when shipping without any device.
    error PurchaseOrdersNoDevices(uint256 orderId);
    /// @notice Thrown when the dispute window is closed (dispute) or still open (settle).
    error PurchaseOrdersDisputeWindow(uint256 orderId, uint64 closesAt, bool open);
    /// @notice Thrown when the arbiter still has time to rule.
    error PurchaseOrdersArbitrationPending(uint256 orderId, uint64 deadline);
    /// @notice Thrown when an order cannot be expired yet.
    error PurchaseOrdersNotExpired(uint256 orderId, uint64 expiresAt);
    /// @notice Thrown when an arbiter's ruling gives the buyer more than the price.
    error PurchaseOrdersInvalidRuling(uint256 orderId, uint256 buyerAmount, uint256 price);
    /// @notice Thrown when the caller is not the QualityVerification contract.
    error PurchaseOrdersNotQualityVerification(address caller);
    /// @notice Thrown when a delivery time lies before shipment or in the future.
    error PurchaseOrdersInvalidDeliveryTime(uint256 orderId, uint64 deliveredAt);

    /// @notice Emitted when a buyer creates an order.
    event OrderCreated(
        uint256 indexed orderId,
        address indexed buyer,
        address indexed supplier,
        address token,
        uint256 price,
        uint64 deliveryDeadline
    );
    /// @notice Emitted when the supplier accepts the terms.
    event OrderAccepted(uint256 indexed orderId, address indexed supplier);
    /// @notice Emitted when the buyer's payment is in escrow.
    event OrderFunded(uint256 indexed orderId, address indexed buyer, uint256 amount);
    /// @notice Emitted when the supplier ships with its devices bound.
    event OrderShipped(uint256 indexed orderId, uint256 deviceCount, uint64 shippedAt);
    /// @notice Emitted when quality evidence proves a breach of the terms.
    event BreachRecorded(uint256 indexed orderId);
    /// @notice Emitted when delivery is confirmed (by a device reading or the buyer).
    event OrderDelivered(uint256 indexed orderId, uint64 deliveredAt, uint64 lateSeconds, address indexed confirmedBy);
    /// @notice Emitted when the split is final and credited in escrow.
    event OrderSettled(uint256 indexed orderId, uint256 buyerAmount, uint256 supplierAmount);
    /// @notice Emitted when a party disputes the split inside the dispute window.
    event DisputeOpened(uint256 indexed orderId, address indexed by);
    /// @notice Emitted when the arbiter rules a split.
    event DisputeResolved(uint256 indexed orderId, address indexed arbiter, uint256 buyerAmount, uint256 supplierAmount);
    /// @notice Emitted when an order is cancelled before shipment.
    event OrderCancelled(uint256 indexed orderId, address indexed by);
    /// @notice Emitted when an undelivered order expires and the buyer is refunded.
    event OrderExpired(uint256 indexed orderId, uint256 refunded);

    function createOrder(address supplier, Terms calldata terms) external returns (uint256 orderId);
    function createAndFundOrder(address supplier, Terms calldata terms) external payable returns (uint256 orderId);
    function acceptOrder(uint256 orderId) external;
    function fundOrder(uint256 orderId) external payable;
    function shipOrder(uint256 orderId, address[] calldata devices) external;
    function confirmReceipt(uint256 orderId) external;
    function openDispute(uint256 orderId) external;
    function resolveDispute(uint256 orderId, uint256 buyerAmount) external;
    function settleOrder(uint256 orderId) external;
    function cancelOrder(uint256 orderId) external;
    function expireOrder(uint256 orderId) external;

    /// @notice Called by QualityVerification when breach evidence is proven.
    function recordBreach(uint256 orderId) external;
    /// @notice Called by QualityVerification when a device proves arrival.
    function recordDelivery(uint256 orderId, uint64 deliveredAt, address confirmedBy) external;

    function getOrder(uint256 orderId) external view returns (Order memory);
    function orderCount() external view returns (uint256);
    /// @notice The split the terms give for a delivery at `deliveredAt` (breach as recorded).
    function previewSettlement(uint256 orderId, uint64 deliveredAt)
        external
        view
        returns (uint256 buyerAmount, uint256 supplierAmount);
    function ARBITRATION_PERIOD() external view returns (uint64);
    /// @notice The largest price an order may have (2^88 - 1 base units, what escrow stores).
    function MAX_PRICE() external view returns (uint256);
    function escrow() external view returns (address);
    function qualityVerification() external view returns (address);
}
