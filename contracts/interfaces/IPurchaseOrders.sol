// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IPurchaseOrders
/// @notice Purchase orders with their commercial terms and the state machine
/// Created → Accepted → Funded → Shipped → Delivered → Settled, with Cancelled
/// (before shipment), Disputed → Resolved, and Expired (not delivered by
/// deadline + grace: the buyer is refunded).
///
/// Storage keeps a digest of each order's terms, not the terms: every call that needs
/// them takes them as calldata and is refused ({PurchaseOrdersWrongTerms}) unless they
/// hash to the stored digest. {OrderCreated} carries the terms in full.
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
    ///
    /// Device provenance: only devices certified for the order by `deviceIssuer` (or by
    /// `secondDeviceIssuer`, when set) count as witnesses; with a second issuer, a
    /// shipment must bind at least one device of each. `arrivalQuorum` is how many
    /// issuers' devices must prove arrival: 0 = only the buyer's receipt delivers,
    /// 1 = any certified device, 2 = one device of each issuer.
    struct Terms {
        address buyer;
        address supplier;
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
        address deviceIssuer; // certifies the order's devices (never the supplier)
        address secondDeviceIssuer; // zero = one issuer
        uint8 arrivalQuorum; // 0, 1 or 2 (2 needs a second issuer)
    }

    /// @notice What the contract stores of an order (one slot). `timestamp` is when the
    /// order entered its current phase: created (Created, Accepted, Funded), shipped
    /// (Shipped), delivered (Delivered, Settled after delivery, Disputed, Resolved);
    /// Cancelled and Expired keep the value they had.
    struct Order {
        bytes25 termsDigest;
        OrderState state;
        bool funded;
        bool breached;
        uint64 timestamp;
    }

    /// @notice Thrown when an order id does not exist.
    error PurchaseOrdersUnknownOrder(uint256 orderId);
    /// @notice Thrown when the terms passed do not hash to the order's stored digest.
    error PurchaseOrdersWrongTerms(uint256 orderId, bytes25 expected, bytes25 actual);
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
    /// @notice Thrown at deployment when Escrow or QualityVerification was built for another PurchaseOrders.
    error PurchaseOrdersMiswired(address dependency, address itsPurchaseOrders);

    /// @notice Emitted when a buyer creates an order, with its terms in full (indexers need no getter).
    event OrderCreated(uint256 indexed orderId, address indexed buyer, address indexed supplier, Terms terms);
    /// @notice Emitted when the supplier accepts the terms.
    event OrderAccepted(uint256 indexed orderId, address indexed supplier);
    /// @notice Emitted when the buyer's payment is in escrow.
    event OrderFunded(uint256 indexed orderId, address indexed buyer, uint256 amount);
    /// @notice Emitted when the supplier ships with its certified devices bound.
    event OrderShipped(uint256 indexed orderId, uint256 deviceCount, uint64 shippedAt);
    /// @notice Emitted when quality evidence proves a breach of the terms.
    event BreachRecorded(uint256 indexed orderId);
    /// @notice Emitted when delivery is confirmed (by device readings or the buyer).
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

    function createOrder(Terms calldata terms) external returns (uint256 orderId);
    function createAndFundOrder(Terms calldata terms) external payable returns (uint256 orderId);
    function acceptOrder(uint256 orderId, Terms calldata terms) external;
    function fundOrder(uint256 orderId, Terms calldata terms) external payable;
    /// @notice `certificates`: one {SignedCertificate} per device travelling with the goods.
    function shipOrder(uint256 orderId, Terms calldata terms, SignedCertificate[] calldata certificates) external;
    function confirmReceipt(uint256 orderId, Terms calldata terms) external;
    function openDispute(uint256 orderId, Terms calldata terms) external;
    function resolveDispute(uint256 orderId, Terms calldata terms, uint256 buyerAmount) external;
    function settleOrder(uint256 orderId, Terms calldata terms) external;
    function cancelOrder(uint256 orderId, Terms calldata terms) external;
    function expireOrder(uint256 orderId, Terms calldata terms) external;

    /// @notice Called by QualityVerification when breach evidence is proven.
    function recordBreach(uint256 orderId) external;
    /// @notice Called by QualityVerification when device readings prove arrival: the
    /// earliest of the readings was taken at `earliestAt`, the latest at `deliveredAt`.
    function recordDelivery(
        uint256 orderId,
        Terms calldata terms,
        uint64 earliestAt,
        uint64 deliveredAt,
        address confirmedBy
    ) external;

    function getOrder(uint256 orderId) external view returns (Order memory);
    /// @notice When a Disputed or Resolved order was disputed (0 otherwise).
    function disputedAt(uint256 orderId) external view returns (uint64);
    function orderCount() external view returns (uint256);
    /// @notice The digest stored for `terms`: the first 25 bytes of keccak256(abi.encode(terms)).
    function hashTerms(Terms calldata terms) external pure returns (bytes25);
    /// @notice The split the terms give for a delivery at `deliveredAt` (breach as recorded).
    function previewSettlement(uint256 orderId, Terms calldata terms, uint64 deliveredAt)
        external
        view
        returns (uint256 buyerAmount, uint256 supplierAmount);
    function ARBITRATION_PERIOD() external view returns (uint64);
    /// @notice The largest price an order may have (2^88 - 1 base units).
    function MAX_PRICE() external view returns (uint256);
    function escrow() external view returns (address);
    function qualityVerification() external view returns (address);
}

/// @notice A device certificate: `issuer` vouches that `device` may witness order
/// `orderId` between `validFrom` and `validUntil` (EIP-712 type
/// `DeviceCertificate(uint256 orderId,address device,address issuer,uint64 validFrom,uint64 validUntil)`
/// under QualityVerification's domain).
struct DeviceCertificate {
    uint256 orderId;
    address device;
    address issuer;
    uint64 validFrom;
    uint64 validUntil;
}

/// @notice A certificate with the issuer's 65-byte EIP-712 signature.
struct SignedCertificate {
    DeviceCertificate certificate;
    bytes signature;
}
