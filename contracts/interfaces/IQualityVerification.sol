// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {DeviceCertificate, IPurchaseOrders, SignedCertificate} from "./IPurchaseOrders.sol";

/// @title IQualityVerification
/// @notice Device certificates checked at shipment and with every piece of evidence,
/// issuer revocations, the fleet commitment log, and on-chain verification of
/// excursion, shock and arrival evidence.
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

    /// @notice Where a reading sits in a committer's fleet log: root `root` of `count`
    /// readings was committed as batch `batchSeq` at position `logIndex` of the log;
    /// `logProof` (32 siblings, bottom up) leads from that entry to the log's current
    /// root; `readingProof` (sorted-pair siblings) from the reading's leaf, at position
    /// `leafIndex` of the batch, to `root`.
    struct FleetProof {
        uint64 batchSeq;
        bytes32 root;
        uint32 count;
        uint64 logIndex;
        bytes32[] logProof;
        uint256 leafIndex;
        bytes32[] readingProof;
    }

    /// @notice Thrown when the caller is not the PurchaseOrders contract.
    error QualityVerificationNotPurchaseOrders(address caller);
    /// @notice Thrown when a device is the zero address or appears twice in one shipment.
    error QualityVerificationInvalidDevice(uint256 orderId, address device);
    /// @notice Thrown when a reading's signer is not the device its certificate names.
    error QualityVerificationUnknownDevice(uint256 orderId, address device);
    /// @notice Thrown when a device's certificate names an issuer the order's terms do not name.
    error QualityVerificationUncertifiedDevice(uint256 orderId, address device, address issuer);
    /// @notice Thrown when a certificate was issued for another order.
    error QualityVerificationCertificateWrongOrder(uint256 orderId, uint256 certificateOrderId);
    /// @notice Thrown when a certificate is not signed by the issuer it names.
    error QualityVerificationForgedCertificate(uint256 orderId, address device, address issuer);
    /// @notice Thrown when a certificate is not valid at the time in question (shipment or reading).
    error QualityVerificationCertificateNotValid(
        uint256 orderId, address device, uint64 validFrom, uint64 validUntil, uint64 at
    );
    /// @notice Thrown when a device's issuer revoked it at or before the time in question.
    error QualityVerificationDeviceRevoked(uint256 orderId, address device, address issuer, uint64 revokedAt);
    /// @notice Thrown when a shipment binds no device of an issuer the terms name.
    error QualityVerificationIssuerMissing(uint256 orderId, address issuer);
    /// @notice Thrown when an issuer revokes a device it already revoked.
    error QualityVerificationAlreadyRevoked(address issuer, address device, uint64 revokedAt);
    /// @notice Thrown when a reading names another order.
    error QualityVerificationWrongOrder(uint256 orderId, uint256 readingOrderId);
    /// @notice Thrown when a batch sequence number is not above the committer's last one.
    error QualityVerificationStaleBatch(address committer, uint64 batchSeq, uint64 lastBatchSeq);
    /// @notice Thrown when a commitment has a zero root or no readings.
    error QualityVerificationEmptyBatch(address committer);
    /// @notice Thrown when a committer's log holds 2^32 - 1 roots.
    error QualityVerificationLogFull(address committer);
    /// @notice Thrown when a log to open ahead is already open or already holds roots.
    error QualityVerificationLogInUse(address committer, uint64 size);
    /// @notice Thrown when the order is not in transit.
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
    /// @notice Thrown when arrival readings do not cover as many issuers as the terms' quorum.
    error QualityVerificationQuorumNotMet(uint256 orderId, uint8 required, uint8 provided);
    /// @notice Thrown when a reading was taken before the order shipped.
    error QualityVerificationReadingBeforeShipment(uint256 orderId, uint64 timestamp, uint64 shippedAt);
    /// @notice Thrown when a signature cannot be recovered.
    error QualityVerificationInvalidSignature(uint256 orderId, uint256 index);

    /// @notice Emitted for each certified device bound to an order at shipment.
    event DeviceBound(uint256 indexed orderId, address indexed device, address indexed issuer);
    /// @notice Emitted when an issuer revokes a device: its readings from `revokedAt` on no longer count.
    event DeviceRevoked(address indexed issuer, address indexed device, uint64 revokedAt);
    /// @notice Emitted when a committer appends a fleet root to its log.
    event FleetRootCommitted(
        address indexed committer, uint64 indexed batchSeq, bytes32 root, uint32 readingCount, uint64 logIndex
    );
    /// @notice Emitted when a committer's fleet log is opened ahead of its first root.
    event FleetLogOpened(address indexed committer);
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
    /// @notice Emitted for each device-signed reading that proves arrival inside the geofence.
    event ArrivalProven(uint256 indexed orderId, address indexed device, uint32 seq, uint64 timestamp, address submitter);

    function bindDevices(
        uint256 orderId,
        address deviceIssuer,
        address secondDeviceIssuer,
        SignedCertificate[] calldata certificates
    ) external;
    function revokeDevice(address device) external;
    function openFleetLog(address committer) external;
    function commitFleetRoot(uint64 batchSeq, bytes32 root, uint32 readingCount) external;
    function proveExcursion(
        uint256 orderId,
        IPurchaseOrders.Terms calldata terms,
        Reading[] calldata readings,
        bytes[] calldata signatures,
        SignedCertificate calldata certificate
    ) external;
    function proveShock(
        uint256 orderId,
        IPurchaseOrders.Terms calldata terms,
        Reading calldata reading,
        bytes calldata signature,
        SignedCertificate calldata certificate
    ) external;
    function proveArrival(
        uint256 orderId,
        IPurchaseOrders.Terms calldata terms,
        Reading[] calldata readings,
        bytes[] calldata signatures,
        SignedCertificate[] calldata certificates
    ) external;

    function hashReading(Reading calldata reading) external view returns (bytes32);
    function hashCertificate(DeviceCertificate calldata certificate) external view returns (bytes32);
    /// @notice The leaf of a reading in a fleet batch: keccak256(abi.encode(orderId, device, readingDigest, leafIndex)).
    function fleetLeaf(uint256 orderId, address device, bytes32 readingDigest, uint256 leafIndex)
        external
        pure
        returns (bytes32);
    /// @notice The entry a commitment appends to its committer's log: keccak256(abi.encode(batchSeq, root, count)).
    function fleetLogEntry(uint64 batchSeq, bytes32 root, uint32 count) external pure returns (bytes32);
    function purchaseOrders() external view returns (address);
    function revokedAt(address issuer, address device) external view returns (uint64);
    /// @notice A committer's last batch sequence number and the number of roots in its log.
    function fleetLog(address committer) external view returns (uint64 lastBatchSeq, uint64 size);
    /// @notice The root of a committer's log (depth 32, empty leaves zero, ordered pairs).
    function fleetLogRoot(address committer) external view returns (bytes32);
    /// @notice True when `reading` was signed by a device certified for its order under
    /// `terms` (valid, not revoked at the reading's time) and `proof` places it in a root
    /// of `committer`'s log. Never reverts on bad evidence: it returns false.
    function verifyFleetReading(
        address committer,
        IPurchaseOrders.Terms calldata terms,
        Reading calldata reading,
        bytes calldata signature,
        SignedCertificate calldata certificate,
        FleetProof calldata proof
    ) external view returns (bool);
}
