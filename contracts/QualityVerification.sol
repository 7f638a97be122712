// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {DeviceCertificate, IPurchaseOrders, SignedCertificate} from "./interfaces/IPurchaseOrders.sol";
import {IQualityVerification} from "./interfaces/IQualityVerification.sol";

/// @title QualityVerification
/// @notice Decides which devices may witness an order, anchors the fleet's readings, and
/// judges device-signed evidence: a temperature/humidity excursion longer than tolerated
/// or a shock over the limit (a breach), and readings inside the destination geofence
/// (delivery). Anyone may submit evidence, so no single oracle can invent or hide a breach.
///
/// Witnesses: the terms name who may vouch for the order's devices (`deviceIssuer`,
/// optionally `secondDeviceIssuer`; never the supplier). A device counts only with an
/// EIP-712 {DeviceCertificate} signed by such an issuer, naming this order, valid at the
/// time in question, for a device its issuer has not revoked at that time. The supplier
/// binds devices at shipment with their certificates (checked here, {DeviceBound} per
/// device), and every piece of evidence carries its device's certificate again, so the
/// check costs no storage. When witnesses disagree: a breach proven by any certified
/// device stands; arrival needs `arrivalQuorum` issuers' devices inside the geofence.
///
/// Fleet commitments: anyone may keep a log of Merkle roots ({commitFleetRoot}); readers
/// trust the logs of the committers they choose (the oracle's, named in the deployment
/// manifest). One root covers a window of readings of every order; a log is an append-only
/// Merkle tree of depth 32 kept as its frontier, so each root costs one slot update and
/// every reading stays provable ({verifyFleetReading}). A log opened ahead ({openFleetLog})
/// has all its slots written once, so no root ever pays for a fresh slot.
///
/// Readings and certificates are EIP-712 typed data (domain "TrustShip Telemetry", version
/// "1", this contract as verifying contract), byte for byte what `backend.telemetry` signs.
contract QualityVerification is IQualityVerification, EIP712 {
    /// @dev keccak256 of the EIP-712 type string of {Reading}.
    bytes32 private constant _READING_TYPEHASH = keccak256(
        "Reading(uint256 orderId,uint32 seq,uint64 timestamp,int32 temperatureCentiC,uint16 humidityPermille,"
        "uint32 shockMilliG,int32 latitudeE6,int32 longitudeE6,uint8 flags)"
    );
    /// @dev keccak256 of the EIP-712 type string of {DeviceCertificate}.
    bytes32 private constant _CERTIFICATE_TYPEHASH =
        keccak256("DeviceCertificate(uint256 orderId,address device,address issuer,uint64 validFrom,uint64 validUntil)");
    uint256 private constant _LOG_DEPTH = 32;
    /// @dev What {openFleetLog} writes into the frontier: any non-zero word. A level is read
    /// only after a root was stored there, so this value never enters a hash.
    bytes32 private constant _OPENED_LEVEL = bytes32(uint256(1));

    /// @dev A committer's log in one slot, its frontier in `_branches`. `opened` keeps the
    /// slot non-zero before the first root of a log opened ahead.
    struct FleetLog {
        uint64 lastBatchSeq;
        uint64 size;
        bool opened;
    }

    IPurchaseOrders private immutable _purchaseOrders;
    mapping(address issuer => mapping(address device => uint64)) private _revokedAt;
    mapping(address committer => FleetLog) private _logs;
    /// @dev The left siblings on the path of the log's next leaf, one per level.
    mapping(address committer => bytes32[_LOG_DEPTH]) private _branches;

    /// @param purchaseOrders_ the PurchaseOrders contract (deployed next; it checks in its
    /// constructor that this contract names it).
    constructor(address purchaseOrders_) EIP712("TrustShip Telemetry", "1") {
        _purchaseOrders = IPurchaseOrders(purchaseOrders_);
    }

    // ------------------------------------------------------------------ devices

    /// @notice Checks the certificates of the devices travelling with an order and binds
    /// them: their signed readings count as evidence. Emits {DeviceBound} per device.
    ///
    /// Requirements, for every certificate (at `block.timestamp`):
    /// - the caller is PurchaseOrders (from `shipOrder`, after checking the terms);
    /// - it names `orderId` ({QualityVerificationCertificateWrongOrder});
    /// - its device is not zero and not bound twice ({QualityVerificationInvalidDevice});
    /// - its issuer is `deviceIssuer` or a non-zero `secondDeviceIssuer`
    ///   ({QualityVerificationUncertifiedDevice}) and signed it
    ///   ({QualityVerificationForgedCertificate});
    /// - `validFrom <= now <= validUntil` ({QualityVerificationCertificateNotValid});
    /// - the issuer has not revoked the device ({QualityVerificationDeviceRevoked});
    /// - with a second issuer, each issuer certifies at least one device
    ///   ({QualityVerificationIssuerMissing}).
    function bindDevices(
        uint256 orderId,
        address deviceIssuer,
        address secondDeviceIssuer,
        SignedCertificate[] calldata certificates
    ) external {
        if (msg.sender != address(_purchaseOrders)) revert QualityVerificationNotPurchaseOrders(msg.sender);
        bool first;
        bool second;
        uint64 at = uint64(block.timestamp);
        for (uint256 i = 0; i < certificates.length; ++i) {
            DeviceCertificate calldata c = certificates[i].certificate;
            address device = c.device;
            if (device == address(0)) revert QualityVerificationInvalidDevice(orderId, device);
            for (uint256 j = 0; j < i; ++j) {
                if (certificates[j].certificate.device == device) {
                    revert QualityVerificationInvalidDevice(orderId, device);
                }
            }
            _checkCertificate(orderId, deviceIssuer, secondDeviceIssuer, certificates[i], at);
            if (c.issuer == deviceIssuer) first = true;
            else second = true;
            emit DeviceBound(orderId, device, c.issuer);
        }
        if (!first) revert QualityVerificationIssuerMissing(orderId, deviceIssuer);
        if (secondDeviceIssuer != address(0) && !second) {
            revert QualityVerificationIssuerMissing(orderId, secondDeviceIssuer);
        }
    }

    /// @notice The caller, an issuer, revokes `device`: its readings timestamped from now
    /// on no longer count as evidence for any order, and it can no longer be bound.
    /// Emits {DeviceRevoked}.
    ///
    /// Requirements: the caller has not revoked `device` before ({QualityVerificationAlreadyRevoked}).
    function revokeDevice(address device) external {
        uint64 revoked = _revokedAt[msg.sender][device];
        if (revoked != 0) revert QualityVerificationAlreadyRevoked(msg.sender, device, revoked);
        uint64 at = uint64(block.timestamp);
        _revokedAt[msg.sender][device] = at;
        emit DeviceRevoked(msg.sender, device, at);
    }

    // ------------------------------------------------------------------ fleet commitments

    /// @notice Opens `committer`'s log ahead of its first root: writes its slot and the 32
    /// slots of its frontier once (about 750,000 gas), so that every root after costs only
    /// updates of written slots (under 45,000 gas) instead of the 22,100 gas of a fresh
    /// slot at the first root and at the 2nd, 4th, 8th, ... Anyone may pay for this; it
    /// changes no root, proof or view. Emits {FleetLogOpened}.
    ///
    /// Requirements: the log is not opened and holds no root, else
    /// {QualityVerificationLogInUse}.
    function openFleetLog(address committer) external {
        FleetLog memory log = _logs[committer];
        if (log.opened || log.size != 0) revert QualityVerificationLogInUse(committer, log.size);
        _logs[committer] = FleetLog({lastBatchSeq: log.lastBatchSeq, size: 0, opened: true});
        bytes32[_LOG_DEPTH] storage branch = _branches[committer];
        for (uint256 h = 0; h < _LOG_DEPTH; ++h) {
            branch[h] = _OPENED_LEVEL;
        }
        emit FleetLogOpened(committer);
    }

    /// @notice Appends the Merkle root of a window of the fleet's readings to the caller's
    /// log. Leaves: {fleetLeaf}(orderId, device, readingDigest, leafIndex), sorted-pair
    /// nodes (OpenZeppelin `MerkleProof`). The log entry is {fleetLogEntry}(batchSeq, root,
    /// count) at position `size`. Emits {FleetRootCommitted}.
    ///
    /// Requirements:
    /// - `root != 0` and `readingCount > 0`, else {QualityVerificationEmptyBatch};
    /// - `batchSeq` is above the caller's last one (the first is at least 1), else
    ///   {QualityVerificationStaleBatch}: a relay may treat that as already done;
    /// - the log holds fewer than 2^32 - 1 roots ({QualityVerificationLogFull}).
    function commitFleetRoot(uint64 batchSeq, bytes32 root, uint32 readingCount) external {
        if (root == bytes32(0) || readingCount == 0) revert QualityVerificationEmptyBatch(msg.sender);
        FleetLog memory log = _logs[msg.sender];
        if (batchSeq <= log.lastBatchSeq) revert QualityVerificationStaleBatch(msg.sender, batchSeq, log.lastBatchSeq);
        uint64 index = log.size;
        if (index >= type(uint32).max) revert QualityVerificationLogFull(msg.sender);

        _logs[msg.sender] = FleetLog({lastBatchSeq: batchSeq, size: index + 1, opened: log.opened});
        // Incremental Merkle tree (as the Ethereum deposit contract): fold the new leaf
        // with the stored left siblings until the first level where it is a left child,
        // and store it there. One slot written per root.
        bytes32 node = _logEntry(batchSeq, root, readingCount);
        bytes32[_LOG_DEPTH] storage branch = _branches[msg.sender];
        uint256 s = uint256(index) + 1;
        for (uint256 h = 0; h < _LOG_DEPTH; ++h) {
            if (s & 1 == 1) {
                branch[h] = node;
                break;
            }
            node = _hashPair(branch[h], node);
            s >>= 1;
        }
        emit FleetRootCommitted(msg.sender, batchSeq, root, readingCount, index);
    }

    // ------------------------------------------------------------------ evidence

    /// @notice Proves a temperature or humidity excursion and records a breach.
    ///
    /// Requirements:
    /// - `terms` are the order's; the order is Shipped and not yet breached;
    /// - `readings` is non-empty and as long as `signatures`;
    /// - every reading names `orderId` and is signed by the device `certificate` certifies
    ///   (see {bindDevices}; valid and not revoked at each reading's timestamp);
    /// - seq numbers are consecutive (+1) and timestamps strictly increase, the first not
    ///   before shipment;
    /// - every reading is out of range (temperature below min or above max, or humidity
    ///   above max when humidity is checked);
    /// - the last timestamp minus the first exceeds the tolerated excursion time.
    function proveExcursion(
        uint256 orderId,
        IPurchaseOrders.Terms calldata terms,
        Reading[] calldata readings,
        bytes[] calldata signatures,
        SignedCertificate calldata certificate
    ) external {
        uint256 n = readings.length;
        if (n == 0 || n != signatures.length) revert QualityVerificationBadEvidence(orderId);
        uint64 shippedAt = _inTransit(orderId, terms, true);

        Reading calldata first = readings[0];
        if (first.timestamp < shippedAt) {
            revert QualityVerificationReadingBeforeShipment(orderId, first.timestamp, shippedAt);
        }
        address device = _certifiedSigner(orderId, terms, 0, first, signatures[0], certificate);
        _requireOutOfRange(terms, first);
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
            _requireValidAt(orderId, certificate.certificate, r.timestamp);
            _requireOutOfRange(terms, r);
        }

        Reading calldata lastReading = readings[n - 1];
        // Cannot underflow: timestamps strictly increase along the list.
        uint64 duration;
        unchecked {
            duration = lastReading.timestamp - first.timestamp;
        }
        uint32 tolerated = terms.toleratedExcursionSecs;
        if (duration <= tolerated) revert QualityVerificationExcursionTooShort(orderId, duration, tolerated);

        emit ExcursionProven(
            orderId, device, first.seq, lastReading.seq, first.timestamp, lastReading.timestamp, msg.sender
        );
        _purchaseOrders.recordBreach(orderId);
    }

    /// @notice Proves a shock over the limit from one certified device reading and records a breach.
    ///
    /// Requirements:
    /// - `terms` are the order's; the order is Shipped and not yet breached;
    /// - the reading names `orderId`, is signed by the certified device (as in
    ///   {proveExcursion}) and was taken after shipment;
    /// - shock is checked (`maxShockMilliG != 0`) and the reading's shock is above it.
    function proveShock(
        uint256 orderId,
        IPurchaseOrders.Terms calldata terms,
        Reading calldata reading,
        bytes calldata signature,
        SignedCertificate calldata certificate
    ) external {
        uint64 shippedAt = _inTransit(orderId, terms, true);
        address device = _certifiedSigner(orderId, terms, 0, reading, signature, certificate);
        if (reading.timestamp < shippedAt) {
            revert QualityVerificationReadingBeforeShipment(orderId, reading.timestamp, shippedAt);
        }
        uint32 limit = terms.maxShockMilliG;
        if (limit == 0 || reading.shockMilliG <= limit) {
            revert QualityVerificationShockWithinLimit(orderId, reading.shockMilliG, limit);
        }

        emit ShockProven(orderId, device, reading.seq, reading.shockMilliG, msg.sender);
        _purchaseOrders.recordBreach(orderId);
    }

    /// @notice Proves arrival from certified device readings inside the destination box
    /// and records delivery at the latest of their timestamps (the moment the quorum was
    /// met; this settles the order at once when its dispute window is zero). Emits
    /// {ArrivalProven} per reading.
    ///
    /// Requirements:
    /// - `readings`, `signatures` and `certificates` are non-empty and of one length
    ///   ({QualityVerificationBadEvidence}), checked first;
    /// - then, reading by reading, as below; then the quorum; then PurchaseOrders'
    ///   `recordDelivery` checks the order: it is Shipped
    ///   ({QualityVerificationOrderNotInTransit}), `terms` are its terms, no reading is
    ///   older than the shipment ({QualityVerificationReadingBeforeShipment}), none is in
    ///   the future ({IPurchaseOrders-PurchaseOrdersInvalidDeliveryTime});
    /// - each reading names `orderId`, is signed by the device its certificate certifies
    ///   (as in {proveExcursion}) and lies inside the box: `|lat - destLatE6| <= geofenceE6` and `|lon - destLonE6| <= geofenceE6`;
    /// - the readings' issuers number at least `arrivalQuorum`
    ///   ({QualityVerificationQuorumNotMet}; `arrivalQuorum == 0` always fails): 1 = any
    ///   certified device, 2 = one of each issuer.
    function proveArrival(
        uint256 orderId,
        IPurchaseOrders.Terms calldata terms,
        Reading[] calldata readings,
        bytes[] calldata signatures,
        SignedCertificate[] calldata certificates
    ) external {
        if (readings.length == 0 || readings.length != signatures.length || readings.length != certificates.length) {
            revert QualityVerificationBadEvidence(orderId);
        }
        // Packed to stay within the stack: bits 0-1 the issuers seen (deviceIssuer,
        // secondDeviceIssuer), bits 2-65 the earliest reading time, bits 66-129 the latest.
        uint256 acc = uint256(type(uint64).max) << 2;
        for (uint256 i = 0; i < readings.length; ++i) {
            acc = _arrivalReading(orderId, terms, acc, i, readings[i], signatures[i], certificates[i]);
        }
        // Cannot overflow: at most 1 + 1.
        uint8 provided;
        unchecked {
            provided = uint8((acc & 1) + ((acc >> 1) & 1));
        }
        if (provided < terms.arrivalQuorum || terms.arrivalQuorum == 0) {
            revert QualityVerificationQuorumNotMet(orderId, terms.arrivalQuorum, provided);
        }
        // PurchaseOrders checks the order: Shipped, these terms, no reading before shipment.
        _recordDelivery(orderId, terms, uint64(acc >> 2), uint64(acc >> 66));
    }

    /// @dev Checks one arrival reading (certified, inside the box), emits {ArrivalProven},
    /// and folds its issuer and timestamp into `acc` (see {proveArrival}).
    function _arrivalReading(
        uint256 orderId,
        IPurchaseOrders.Terms calldata terms,
        uint256 acc,
        uint256 index,
        Reading calldata r,
        bytes calldata signature,
        SignedCertificate calldata certificate
    ) private returns (uint256) {
        address device = _certifiedSigner(orderId, terms, index, r, signature, certificate);
        if (
            _distance(r.latitudeE6, terms.destLatE6) > terms.geofenceE6
                || _distance(r.longitudeE6, terms.destLonE6) > terms.geofenceE6
        ) {
            revert QualityVerificationOutsideGeofence(orderId, r.latitudeE6, r.longitudeE6);
        }
        emit ArrivalProven(orderId, device, r.seq, r.timestamp, msg.sender);
        acc |= certificate.certificate.issuer == terms.deviceIssuer ? 1 : 2;
        uint64 t = r.timestamp;
        if (t < uint64(acc >> 2)) {
            acc = (acc & ~(uint256(type(uint64).max) << 2)) | (uint256(t) << 2);
        }
        if (t > uint64(acc >> 66)) {
            acc = (acc & ((1 << 66) - 1)) | (uint256(t) << 66);
        }
        return acc;
    }

    /// @dev `_purchaseOrders.recordDelivery(orderId, terms, earliestAt, deliveredAt, msg.sender)`
    /// with the terms copied straight from calldata instead of re-encoding the struct
    /// (PurchaseOrders hashes them against the order's digest, which only the canonical
    /// encoding matches); a revert is passed on as is.
    function _recordDelivery(
        uint256 orderId,
        IPurchaseOrders.Terms calldata terms,
        uint64 earliestAt,
        uint64 deliveredAt
    ) private {
        bytes4 selector = IPurchaseOrders.recordDelivery.selector;
        address po = address(_purchaseOrders);
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, selector)
            mstore(add(ptr, 4), orderId)
            calldatacopy(add(ptr, 36), terms, 704)
            // (variables narrower than a word may carry dirty high bits in assembly)
            mstore(add(ptr, 740), and(earliestAt, 0xffffffffffffffff))
            mstore(add(ptr, 772), and(deliveredAt, 0xffffffffffffffff))
            mstore(add(ptr, 804), caller())
            if iszero(call(gas(), po, 0, ptr, 836, 0, 0)) {
                returndatacopy(ptr, 0, returndatasize())
                revert(ptr, returndatasize())
            }
        }
    }

    // ------------------------------------------------------------------ views

    /// @notice The EIP-712 digest of a reading under this contract's domain (what the device signs).
    function hashReading(Reading calldata reading) public view returns (bytes32) {
        // A static struct ABI-encodes as its fields, each padded to a word (signed ones
        // sign-extended): exactly EIP-712's encodeData for these atomic types.
        return _hashTypedDataV4(keccak256(abi.encode(_READING_TYPEHASH, reading)));
    }

    /// @notice The EIP-712 digest of a device certificate under this contract's domain (what the issuer signs).
    function hashCertificate(DeviceCertificate calldata certificate) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(_CERTIFICATE_TYPEHASH, certificate)));
    }

    /// @inheritdoc IQualityVerification
    function fleetLeaf(uint256 orderId, address device, bytes32 readingDigest, uint256 leafIndex)
        public
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(orderId, device, readingDigest, leafIndex));
    }

    /// @inheritdoc IQualityVerification
    function fleetLogEntry(uint64 batchSeq, bytes32 root, uint32 count) external pure returns (bytes32) {
        return _logEntry(batchSeq, root, count);
    }

    /// @inheritdoc IQualityVerification
    function purchaseOrders() external view returns (address) {
        return address(_purchaseOrders);
    }

    /// @inheritdoc IQualityVerification
    function revokedAt(address issuer, address device) external view returns (uint64) {
        return _revokedAt[issuer][device];
    }

    /// @inheritdoc IQualityVerification
    function fleetLog(address committer) external view returns (uint64 lastBatchSeq, uint64 size) {
        FleetLog memory log = _logs[committer];
        return (log.lastBatchSeq, log.size);
    }

    /// @inheritdoc IQualityVerification
    function fleetLogRoot(address committer) public view returns (bytes32 node) {
        bytes32[_LOG_DEPTH] storage branch = _branches[committer];
        uint256 size = _logs[committer].size;
        bytes32 zero; // the root of an empty subtree of height h
        for (uint256 h = 0; h < _LOG_DEPTH; ++h) {
            node = size & 1 == 1 ? _hashPair(branch[h], node) : _hashPair(node, zero);
            zero = _hashPair(zero, zero);
            size >>= 1;
        }
    }

    /// @inheritdoc IQualityVerification
    function verifyFleetReading(
        address committer,
        IPurchaseOrders.Terms calldata terms,
        Reading calldata reading,
        bytes calldata signature,
        SignedCertificate calldata certificate,
        FleetProof calldata proof
    ) external view returns (bool) {
        uint256 orderId = reading.orderId;
        // getOrder reverts for an unknown order; this view answers false instead.
        if (orderId == 0 || orderId > _purchaseOrders.orderCount()) return false;
        if (_purchaseOrders.getOrder(orderId).termsDigest != _termsDigest(terms)) return false;
        bytes32 digest = hashReading(reading);
        (address signer, ECDSA.RecoverError err,) = ECDSA.tryRecover(digest, signature);
        if (err != ECDSA.RecoverError.NoError || !_isCertified(orderId, terms, signer, reading.timestamp, certificate)) {
            return false;
        }
        if (proof.logProof.length != _LOG_DEPTH || proof.logIndex >= _logs[committer].size) return false;
        bytes32 leaf = fleetLeaf(orderId, signer, digest, proof.leafIndex);
        if (!MerkleProof.verifyCalldata(proof.readingProof, proof.root, leaf)) return false;
        bytes32 node = _logEntry(proof.batchSeq, proof.root, proof.count);
        uint256 index = proof.logIndex;
        for (uint256 h = 0; h < _LOG_DEPTH; ++h) {
            node = (index >> h) & 1 == 1 ? _hashPair(proof.logProof[h], node) : _hashPair(node, proof.logProof[h]);
        }
        return node == fleetLogRoot(committer);
    }

    // ------------------------------------------------------------------ internals

    /// @dev The order's shipment time; it must be Shipped with these terms (and, for
    /// breach evidence, not breached yet).
    function _inTransit(uint256 orderId, IPurchaseOrders.Terms calldata terms, bool breachEvidence)
        private
        view
        returns (uint64 shippedAt)
    {
        IPurchaseOrders.Order memory order = _purchaseOrders.getOrder(orderId);
        if (order.state != IPurchaseOrders.OrderState.Shipped) revert QualityVerificationOrderNotInTransit(orderId);
        bytes25 actual = _termsDigest(terms);
        if (order.termsDigest != actual) {
            revert IPurchaseOrders.PurchaseOrdersWrongTerms(orderId, order.termsDigest, actual);
        }
        if (breachEvidence && order.breached) revert QualityVerificationAlreadyBreached(orderId);
        return order.timestamp;
    }

    /// @dev The signer of `reading`, which must be the device `signed` certifies for the order.
    function _certifiedSigner(
        uint256 orderId,
        IPurchaseOrders.Terms calldata terms,
        uint256 index,
        Reading calldata reading,
        bytes calldata signature,
        SignedCertificate calldata signed
    ) private view returns (address signer) {
        signer = _signer(orderId, index, reading, signature);
        DeviceCertificate calldata c = signed.certificate;
        if (signer != c.device) revert QualityVerificationUnknownDevice(orderId, signer);
        _checkCertificate(orderId, terms.deviceIssuer, terms.secondDeviceIssuer, signed, reading.timestamp);
    }

    /// @dev Reverts unless `signed` certifies its device for `orderId`, by one of the two
    /// issuers, valid and not revoked at `at`.
    function _checkCertificate(
        uint256 orderId,
        address deviceIssuer,
        address secondDeviceIssuer,
        SignedCertificate calldata signed,
        uint64 at
    ) private view {
        DeviceCertificate calldata c = signed.certificate;
        if (c.orderId != orderId) revert QualityVerificationCertificateWrongOrder(orderId, c.orderId);
        address issuer = c.issuer;
        if (issuer == address(0) || (issuer != deviceIssuer && issuer != secondDeviceIssuer)) {
            revert QualityVerificationUncertifiedDevice(orderId, c.device, issuer);
        }
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(hashCertificate(c), signed.signature);
        if (err != ECDSA.RecoverError.NoError || recovered != issuer) {
            revert QualityVerificationForgedCertificate(orderId, c.device, issuer);
        }
        _requireValidAt(orderId, c, at);
    }

    /// @dev Reverts unless the certificate is inside its validity window and its device
    /// not revoked at `at`.
    function _requireValidAt(uint256 orderId, DeviceCertificate calldata c, uint64 at) private view {
        if (at < c.validFrom || at > c.validUntil) {
            revert QualityVerificationCertificateNotValid(orderId, c.device, c.validFrom, c.validUntil, at);
        }
        uint64 revoked = _revokedAt[c.issuer][c.device];
        if (revoked != 0 && at >= revoked) revert QualityVerificationDeviceRevoked(orderId, c.device, c.issuer, revoked);
    }

    /// @dev The non-reverting form of the certificate checks (for views).
    function _isCertified(
        uint256 orderId,
        IPurchaseOrders.Terms calldata terms,
        address signer,
        uint64 at,
        SignedCertificate calldata signed
    ) private view returns (bool) {
        DeviceCertificate calldata c = signed.certificate;
        address issuer = c.issuer;
        if (c.orderId != orderId || c.device != signer || issuer == address(0)) return false;
        if (issuer != terms.deviceIssuer && issuer != terms.secondDeviceIssuer) return false;
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecover(hashCertificate(c), signed.signature);
        if (err != ECDSA.RecoverError.NoError || recovered != issuer) return false;
        if (at < c.validFrom || at > c.validUntil) return false;
        uint64 revoked = _revokedAt[issuer][c.device];
        return revoked == 0 || at < revoked;
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

    function _requireOutOfRange(IPurchaseOrders.Terms calldata t, Reading calldata r) private pure {
        bool out = r.temperatureCentiC < t.minTempCentiC || r.temperatureCentiC > t.maxTempCentiC
            || (t.maxHumidityPermille != 0 && r.humidityPermille > t.maxHumidityPermille);
        if (!out) revert QualityVerificationReadingInRange(r.orderId, r.seq);
    }

    /// @dev PurchaseOrders' digest of the terms (first 25 bytes of keccak256(abi.encode(terms))),
    /// hashed straight from calldata (a static struct of 22 words is its own ABI encoding;
    /// non-canonical calldata hashes differently and is refused as wrong terms).
    function _termsDigest(IPurchaseOrders.Terms calldata terms) private pure returns (bytes25 d) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, terms, 704)
            d := keccak256(ptr, 704)
        }
    }

    function _logEntry(uint64 batchSeq, bytes32 root, uint32 count) private pure returns (bytes32) {
        return keccak256(abi.encode(batchSeq, root, count));
    }

    function _hashPair(bytes32 left, bytes32 right) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            mstore(0x00, left)
            mstore(0x20, right)
            h := keccak256(0x00, 0x40)
        }
    }

    function _distance(int32 a, int32 b) private pure returns (uint256) {
        int256 d = int256(a) - int256(b);
        return uint256(d < 0 ? -d : d);
    }
}
