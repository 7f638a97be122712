// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {IPurchaseOrders} from "./interfaces/IPurchaseOrders.sol";
import {IQualityVerification} from "./interfaces/IQualityVerification.sol";

/// @title QualityVerification
/// @notice Binds sensor devices to an order at shipment, anchors oracles' Merkle
/// commitments of the devices' signed readings, and judges device-signed evidence:
/// a temperature/humidity excursion longer than tolerated or a shock over the limit
/// (a breach), and a reading inside the destination geofence (delivery). Anyone may
/// submit evidence, so no single oracle can invent or hide a breach.
///
/// Readings are EIP-712 typed data (domain "TrustShip Telemetry", version "1", this
/// contract as verifying contract), byte for byte the digest `backend.telemetry` signs.
contract QualityVerification is IQualityVerification, AccessControl, EIP712 {
    /// @notice The role allowed to commit Merkle roots of readings.
    bytes32 public constant ORACLE_ROLE = keccak256("ORACLE_ROLE");

    /// @dev keccak256 of the EIP-712 type string of {Reading}.
    bytes32 private constant _READING_TYPEHASH = keccak256(
        "Reading(uint256 orderId,uint32 seq,uint64 timestamp,int32 temperatureCentiC,uint16 humidityPermille,"
        "uint32 shockMilliG,int32 latitudeE6,int32 longitudeE6,uint8 flags)"
    );

    /// @dev One storage slot per order. The first bound device lives here, so an order
    /// shipped with one device costs one slot, and the first commitment only updates it.
    struct OrderRecord {
        address firstDevice;
        uint64 lastBatchSeq;
        uint32 deviceCount;
    }

    IPurchaseOrders private _purchaseOrders;
    mapping(uint256 orderId => OrderRecord) private _records;
    mapping(uint256 orderId => mapping(address device => bool)) private _moreDevices;
    mapping(uint256 orderId => mapping(uint64 batchSeq => bytes32 root)) private _roots;

    /// @param admin receives DEFAULT_ADMIN_ROLE: it wires PurchaseOrders once and grants ORACLE_ROLE.
    constructor(address admin) EIP712("TrustShip Telemetry", "1") {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
    }

    /// @inheritdoc IQualityVerification
    function setPurchaseOrders(address purchaseOrders_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (address(_purchaseOrders) != address(0)) revert QualityVerificationAlreadyInitialized();
        _purchaseOrders = IPurchaseOrders(purchaseOrders_);
        emit PurchaseOrdersSet(purchaseOrders_);
    }

    /// @notice Binds the devices travelling with an order; their signatures count as
    /// evidence for it from now on. Emits {DeviceBound} per device.
    ///
    /// Requirements:
    /// - the caller is PurchaseOrders (it calls this from `shipOrder`);
    /// - no device is the zero address or already bound to the order (also not twice in `devices`).
    function bindDevices(uint256 orderId, address[] calldata devices) external {
        if (msg.sender != address(_purchaseOrders)) revert QualityVerificationNotPurchaseOrders(msg.sender);
        OrderRecord memory rec = _records[orderId];
        for (uint256 i = 0; i < devices.length; ++i) {
            address device = devices[i];
            if (device == address(0)) revert QualityVerificationInvalidDevice(orderId, device);
            if (rec.firstDevice == address(0)) {
                // No device yet, so none in _moreDevices either: no lookup needed.
                rec.firstDevice = device;
            } else {
                if (_isBound(rec.firstDevice, orderId, device)) revert QualityVerificationInvalidDevice(orderId, device);
                _moreDevices[orderId][device] = true;
            }
            emit DeviceBound(orderId, device);
        }
        // Checked: cannot realistically overflow (calldata limits the list), and would revert if it did.
        rec.deviceCount += uint32(devices.length);
        _records[orderId] = rec;
    }

    /// @notice Anchors the Merkle root of a batch of an order's readings (leaf =
    /// `keccak256(abi.encode(hashReading(reading)))`, sorted-pair nodes).
    ///
    /// Commitments are accepted in every state after shipment, terminal ones included:
    /// a commitment moves no money, and the last batch of an order (often carrying the
    /// arrival reading itself) can only be committed after the order settled.
    ///
    /// Requirements:
    /// - the caller has ORACLE_ROLE;
    /// - the order has shipped (devices are bound), else {QualityVerificationOrderNotInTransit};
    /// - `root != 0` and `readingCount > 0`, else {QualityVerificationEmptyBatch};
    /// - `batchSeq` is above the order's last one (the first is 1), else
    ///   {QualityVerificationStaleBatch}: a relay may treat that as already done.
    function commitReadings(uint256 orderId, uint64 batchSeq, bytes32 root, uint32 readingCount)
        external
        onlyRole(ORACLE_ROLE)
    {
        OrderRecord storage rec = _records[orderId];
        if (rec.firstDevice == address(0)) revert QualityVerificationOrderNotInTransit(orderId);
        if (root == bytes32(0) || readingCount == 0) revert QualityVerificationEmptyBatch(orderId);
        uint64 last = rec.lastBatchSeq;
        if (batchSeq <= last) revert QualityVerificationStaleBatch(orderId, batchSeq, last);

        rec.lastBatchSeq = batchSeq;
        _roots[orderId][batchSeq] = root;
        emit ReadingsCommitted(orderId, batchSeq, root, readingCount, msg.sender);
    }

    /// @notice Proves a temperature or humidity excursion and records a breach.
    ///
    /// Requirements:
    /// - the order is Shipped and not yet breached;
    /// - `readings` is non-empty and as long as `signatures`;
    /// - every reading names `orderId` and is signed by the same device, bound to the order;
    /// - seq numbers are consecutive (+1) and timestamps strictly increase, the first not
    ///   before shipment;
    /// - every reading is out of range (temperature below min or above max, or humidity
    ///   above max when humidity is checked);
    /// - the last timestamp minus the first exceeds the tolerated excursion time.
    function proveExcursion(uint256 orderId, Reading[] calldata readings, bytes[] calldata signatures) external {
        uint256 n = readings.length;
        if (n == 0 || n != signatures.length) revert QualityVerificationBadEvidence(orderId);
        IPurchaseOrders.Order memory order = _orderInTransit(orderId);

        address device = _boundSigner(orderId, 0, readings[0], signatures[0]);
        Reading calldata first = readings[0];
        if (first.timestamp < order.shippedAt) {
            revert QualityVerificationReadingBeforeShipment(orderId, first.timestamp, order.shippedAt);
        }
        _requireOutOfRange(order.terms, first);
        for (uint256 i = 1; i < n; ++i) {
            Reading calldata prev = readings[i - 1];
            Reading calldata r = readings[i];
            address signer = _signer(orderId, i, r, signatures[i]);
            if (signer != device) revert QualityVerificationDifferentDevice(orderId, i, device, signer);
            if (uint256(r.seq) != uint256(prev.seq) + 1) {
                // Wraps to 0 only when prev.seq is the largest uint32, which nothing can follow.
                uint32 expected;
                unchecked {
                    expected = prev.seq + 1;
                }
                revert QualityVerificationNotConsecutive(orderId, i, expected, r.seq);
            }
            if (r.timestamp <= prev.timestamp) revert QualityVerificationTimestampNotIncreasing(orderId, i);
            _requireOutOfRange(order.terms, r);
        }

        Reading calldata lastReading = readings[n - 1];
        // Cannot underflow: timestamps strictly increase along the list.
        uint64 duration;
        unchecked {
            duration = lastReading.timestamp - first.timestamp;
        }
        uint32 tolerated = order.terms.toleratedExcursionSecs;
        if (duration <= tolerated) revert QualityVerificationExcursionTooShort(orderId, duration, tolerated);

        emit ExcursionProven(
            orderId, device, first.seq, lastReading.seq, first.timestamp, lastReading.timestamp, msg.sender
        );
        _purchaseOrders.recordBreach(orderId);
    }

    /// @notice Proves a shock over the order's limit and records a breach.
    ///
    /// Requirements:
    /// - the order is Shipped and not yet breached;
    /// - the reading names `orderId`, is signed by a bound device and was taken after shipment;
    /// - shock is checked for the order (`maxShockMilliG != 0`) and the reading exceeds it.
    function proveShock(uint256 orderId, Reading calldata reading, bytes calldata signature) external {
        IPurchaseOrders.Order memory order = _orderInTransit(orderId);
        address device = _boundSigner(orderId, 0, reading, signature);
        if (reading.timestamp < order.shippedAt) {
            revert QualityVerificationReadingBeforeShipment(orderId, reading.timestamp, order.shippedAt);
        }
        uint32 limit = order.terms.maxShockMilliG;
        if (limit == 0 || reading.shockMilliG <= limit) {
            revert QualityVerificationShockWithinLimit(orderId, reading.shockMilliG, limit);
        }

        emit ShockProven(orderId, device, reading.seq, reading.shockMilliG, msg.sender);
        _purchaseOrders.recordBreach(orderId);
    }

    /// @notice Proves arrival from a device reading inside the destination box and
    /// records delivery at the reading's timestamp (which settles the order at once
    /// when its dispute window is zero).
    ///
    /// Requirements:
    /// - the order is Shipped;
    /// - the reading names `orderId` and is signed by a bound device;
    /// - its timestamp is not before shipment and not in the future;
    /// - `|lat - destLatE6| <= geofenceE6` and `|lon - destLonE6| <= geofenceE6`.
    function proveArrival(uint256 orderId, Reading calldata reading, bytes calldata signature) external {
        if (_records[orderId].firstDevice == address(0)) revert QualityVerificationOrderNotInTransit(orderId);
        IPurchaseOrders.Order memory order = _purchaseOrders.getOrder(orderId);
        if (order.state != IPurchaseOrders.OrderState.Shipped) revert QualityVerificationOrderNotInTransit(orderId);
        address device = _boundSigner(orderId, 0, reading, signature);
        if (reading.timestamp < order.shippedAt) {
            revert QualityVerificationReadingBeforeShipment(orderId, reading.timestamp, order.shippedAt);
        }
        IPurchaseOrders.Terms memory t = order.terms;
        if (
            _distance(reading.latitudeE6, t.destLatE6) > t.geofenceE6
                || _distance(reading.longitudeE6, t.destLonE6) > t.geofenceE6
        ) {
            revert QualityVerificationOutsideGeofence(orderId, reading.latitudeE6, reading.longitudeE6);
        }

        emit ArrivalProven(orderId, device, reading.seq, reading.timestamp, msg.sender);
        _purchaseOrders.recordDelivery(orderId, reading.timestamp, msg.sender);
    }

    /// @notice The EIP-712 digest of a reading under this contract's domain (what the device signs).
    function hashReading(Reading calldata reading) public view returns (bytes32) {
        // A static struct ABI-encodes as its fields, each padded to a word (signed ones
        // sign-extended): exactly EIP-712's encodeData for these atomic types.
        return _hashTypedDataV4(keccak256(abi.encode(_READING_TYPEHASH, reading)));
    }

    /// @inheritdoc IQualityVerification
    function isDeviceBound(uint256 orderId, address device) external view returns (bool) {
        return device != address(0) && _isBound(_records[orderId].firstDevice, orderId, device);
    }

    /// @inheritdoc IQualityVerification
    function lastBatchSeq(uint256 orderId) external view returns (uint64) {
        return _records[orderId].lastBatchSeq;
    }

    /// @inheritdoc IQualityVerification
    function batchRoot(uint256 orderId, uint64 batchSeq) external view returns (bytes32) {
        return _roots[orderId][batchSeq];
    }

    /// @notice The number of devices bound to an order.
    function deviceCount(uint256 orderId) external view returns (uint32) {
        return _records[orderId].deviceCount;
    }

    /// @notice True when `reading` names `orderId`, was signed by a device bound to the
    /// order and is a leaf of committed batch `batchSeq`. Never reverts on bad evidence:
    /// a malformed signature, an unknown batch or a wrong proof all return false.
    function verifyCommittedReading(
        uint256 orderId,
        uint64 batchSeq,
        Reading calldata reading,
        bytes calldata signature,
        bytes32[] calldata proof
    ) external view returns (bool) {
        bytes32 root = _roots[orderId][batchSeq];
        if (root == bytes32(0) || reading.orderId != orderId) return false;
        bytes32 digest = hashReading(reading);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || !_isBound(_records[orderId].firstDevice, orderId, signer)) {
            return false;
        }
        return MerkleProof.verifyCalldata(proof, root, keccak256(abi.encode(digest)));
    }

    /// @inheritdoc IQualityVerification
    function purchaseOrders() external view returns (address) {
        return address(_purchaseOrders);
    }

    /// @dev The order, which must be Shipped and not breached (evidence is accepted only in transit).
    function _orderInTransit(uint256 orderId) private view returns (IPurchaseOrders.Order memory order) {
        // An order without bound devices never shipped (or does not exist): no need to ask PurchaseOrders.
        if (_records[orderId].firstDevice == address(0)) revert QualityVerificationOrderNotInTransit(orderId);
        order = _purchaseOrders.getOrder(orderId);
        if (order.state != IPurchaseOrders.OrderState.Shipped) revert QualityVerificationOrderNotInTransit(orderId);
        if (order.breached) revert QualityVerificationAlreadyBreached(orderId);
    }

    /// @dev The signer of `reading`, which must name `orderId` and be bound to it.
    function _boundSigner(uint256 orderId, uint256 index, Reading calldata reading, bytes calldata signature)
        private
        view
        returns (address signer)
    {
        signer = _signer(orderId, index, reading, signature);
        if (!_isBound(_records[orderId].firstDevice, orderId, signer)) {
            revert QualityVerificationUnknownDevice(orderId, signer);
        }
    }

    /// @dev The signer of `reading`, which must name `orderId`; reverts on an unrecoverable signature.
    function _signer(uint256 orderId, uint256 index, Reading calldata reading, bytes calldata signature)
        private
        view
        returns (address signer)
    {
        if (reading.orderId != orderId) revert QualityVerificationWrongOrder(orderId, reading.orderId);
        ECDSA.RecoverError err;
        (signer, err,) = ECDSA.tryRecover(hashReading(reading), signature);
        if (err != ECDSA.RecoverError.NoError) revert QualityVerificationInvalidSignature(orderId, index);
    }

    function _isBound(address firstDevice, uint256 orderId, address device) private view returns (bool) {
        return device == firstDevice || _moreDevices[orderId][device];
    }

    function _requireOutOfRange(IPurchaseOrders.Terms memory t, Reading calldata r) private pure {
        bool out = r.temperatureCentiC < t.minTempCentiC || r.temperatureCentiC > t.maxTempCentiC
            || (t.maxHumidityPermille != 0 && r.humidityPermille > t.maxHumidityPermille);
        if (!out) revert QualityVerificationReadingInRange(r.orderId, r.seq);
    }

    function _distance(int32 a, int32 b) private pure returns (uint256) {
        int256 d = int256(a) - int256(b);
        return uint256(d < 0 ? -d : d);
    }
}
