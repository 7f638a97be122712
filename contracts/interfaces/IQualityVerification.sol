// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title IQualityVerification
/// @notice Devices bound to orders, Merkle commitments of their signed readings,
/// and on-chain verification of excursion and arrival evidence.
interface IQualityVerification {
    /// @notice The signed reading (EIP-712 type `Reading`, DESIGN.md §3).
    struct Reading {
        uint256 orderId;
        uint32 seq;
        uint64 timestamp;
        int32 temperatureCentiC;
        uint16 humidityPermille;
        uint32 shockMilliG;
        int32 latitudeE6;
        int32 longitudeE6;
        uint8 flags;
    }

    /// @notice Thrown when the caller is not the PurchaseOrders contract.
    error QualityVerificationNotPurchaseOrders(address caller);
    /// @notice Thrown when PurchaseOrders was already set.
    error QualityVerificationAlreadyInitialized();
    /// @notice Thrown when a device is bound twice to one order or is the zero address.
    error QualityVerificationInvalidDevice(uint256 orderId, address device);
    /// @notice Thrown when a reading's signer is not bound to the order.
    error QualityVerificationUnknownDevice(uint256 orderId, address device);
    /// @notice Thrown when a reading names another order.
    error QualityVerificationWrongOrder(uint256 orderId, uint256 readingOrderId);
    /// @notice Thrown when a batch sequence number is not above the last one.
    error QualityVerificationStaleBatch(uint256 orderId, uint64 batchSeq, uint64 lastBatchSeq);
    /// @notice Thrown when a commitment has a zero root or no readings.
    error QualityVerificationEmptyBatch(uint256 orderId);
    /// @notice Thrown when the order is not in transit (evidence) or not active (commitments).
    error QualityVerificationOrderNotInTransit(uint256 orderId);
    /// @notice Thrown when evidence is empty or its arrays differ in length.
    error QualityVerificationBadEvidence(uint256 orderId);
    /// @notice Thrown when evidence readings come from different devices.
    error QualityVerificationDifferentDevice(uint256 orderId, uint256 index, address expected, address actual);
    /// @notice Thrown when evidence readings are not consecutive in seq.
    error QualityVerificationNotConsecutive(uint256 orderId, uint256 index, uint32 expectedSeq, uint32 actualSeq);
    /// @notice Thrown when evidence timestamps do not increase.
    error QualityVerificationTimestampNotIncreasing(uint256 orderId, uint256 index);
    /// @notice Thrown when an evidence reading is inside the agreed range.
    error QualityVerificationReadingInRange(uint256 orderId, uint32 seq);
    /// @notice Thrown when the evidence spans no longer than the tolerated time.
    error QualityVerificationExcursionTooShort(uint256 orderId, uint64 duration, uint32 tolerated);
    /// @notice Thrown when a shock reading is not over the limit (or shock is not checked).
    error QualityVerificationShockWithinLimit(uint256 orderId, uint32 shockMilliG, uint32 limit);
    /// @notice Thrown when a breach is already recorded for the order.
    error QualityVerificationAlreadyBreached(uint256 orderId);
    /// @notice Thrown when an arrival reading lies outside the destination geofence.
    error QualityVerificationOutsideGeofence(uint256 orderId, int32 latitudeE6, int32 longitudeE6);
    /// @notice Thrown when a reading was taken before the order shipped.
    error QualityVerificationReadingBeforeShipment(uint256 orderId, uint64 timestamp, uint64 shippedAt);
    /// @notice Thrown when a signature cannot be recovered.
    error QualityVerificationInvalidSignature(uint256 orderId, uint256 index);

    /// @notice Emitted once, when the admin wires the PurchaseOrders contract.
    event PurchaseOrdersSet(address indexed purchaseOrders);
    /// @notice Emitted for each device bound to an order at shipment.
    event DeviceBound(uint256 indexed orderId, address indexed device);
    /// @notice Emitted when an oracle commits a Merkle root of readings.
    event ReadingsCommitted(
        uint256 indexed orderId, uint64 indexed batchSeq, bytes32 root, uint32 readingCount, address indexed oracle
    );
    /// @notice Emitted when device-signed readings prove a temperature or humidity excursion.
    event ExcursionProven(
        uint256 indexed orderId,
        address indexed device,
        uint32 firstSeq,
        uint32 lastSeq,
        uint64 startedAt,
        uint64 endedAt,
        address submitter
    );
    /// @notice Emitted when a device-signed reading proves a shock over the limit.
    event ShockProven(uint256 indexed orderId, address indexed device, uint32 seq, uint32 shockMilliG, address submitter);
    /// @notice Emitted when a device-signed reading proves arrival inside the geofence.
    event ArrivalProven(uint256 indexed orderId, address indexed device, uint32 seq, uint64 timestamp, address submitter);

    /// @notice Wires the PurchaseOrders contract, the only caller of {bindDevices}.
    ///
    /// Requirements:
    /// - the caller has DEFAULT_ADMIN_ROLE;
    /// - it was not set before (else {QualityVerificationAlreadyInitialized}).
    function setPurchaseOrders(address purchaseOrders) external;

    function bindDevices(uint256 orderId, address[] calldata devices) external;
    function commitReadings(uint256 orderId, uint64 batchSeq, bytes32 root, uint32 readingCount) external;
    function proveExcursion(uint256 orderId, Reading[] calldata readings, bytes[] calldata signatures) external;
    function proveShock(uint256 orderId, Reading calldata reading, bytes calldata signature) external;
    function proveArrival(uint256 orderId, Reading calldata reading, bytes calldata signature) external;

    function hashReading(Reading calldata reading) external view returns (bytes32);
    function purchaseOrders() external view returns (address);
    function ORACLE_ROLE() external view returns (bytes32);
    function isDeviceBound(uint256 orderId, address device) external view returns (bool);
    function lastBatchSeq(uint256 orderId) external view returns (uint64);
    function batchRoot(uint256 orderId, uint64 batchSeq) external view returns (bytes32);
    /// @notice True when `reading` was signed by a device bound to its order and is in batch `batchSeq`.
    function verifyCommittedReading(
        uint256 orderId,
        uint64 batchSeq,
        Reading calldata reading,
        bytes calldata signature,
        bytes32[] calldata proof
    ) external view returns (bool);
}
