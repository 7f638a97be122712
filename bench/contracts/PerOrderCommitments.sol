// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/// @title PerOrderCommitments
/// @notice BENCHMARK BASELINE ONLY. The per-order commitment scheme QualityVerification
/// used before fleet roots: one Merkle root per order and batch, `batchSeq` strictly
/// increasing per order, each root in its own storage slot, beside a per-order record
/// that shipment had already written (here {ship}). bench/ compares it with
/// `QualityVerification.commitFleetRoot` in the same run.
contract PerOrderCommitments {
    /// @dev The record shipment wrote (first device, last batch seq, device count), as before.
    struct OrderRecord {
        address firstDevice;
        uint64 lastBatchSeq;
        uint32 deviceCount;
    }

    mapping(uint256 orderId => OrderRecord) private _records;
    mapping(uint256 orderId => mapping(uint64 batchSeq => bytes32 root)) private _roots;

    /// @notice Emitted when a root of one order's readings is committed.
    event ReadingsCommitted(
        uint256 indexed orderId, uint64 indexed batchSeq, bytes32 root, uint32 readingCount, address indexed oracle
    );

    /// @notice Thrown when the order was not shipped.
    error PerOrderCommitmentsNotShipped(uint256 orderId);
    /// @notice Thrown when a batch sequence number is not above the order's last one.
    error PerOrderCommitmentsStaleBatch(uint256 orderId, uint64 batchSeq, uint64 lastBatchSeq);

    /// @notice Writes the per-order record shipment wrote in the old scheme.
    function ship(uint256 orderId, address device) external {
        _records[orderId] = OrderRecord({firstDevice: device, lastBatchSeq: 0, deviceCount: 1});
    }

    /// @notice The old `commitReadings`: one root for a batch of one order's readings.
    function commitReadings(uint256 orderId, uint64 batchSeq, bytes32 root, uint32 readingCount) external {
        OrderRecord storage rec = _records[orderId];
        if (rec.firstDevice == address(0)) revert PerOrderCommitmentsNotShipped(orderId);
        uint64 last = rec.lastBatchSeq;
        if (batchSeq <= last) revert PerOrderCommitmentsStaleBatch(orderId, batchSeq, last);
        rec.lastBatchSeq = batchSeq;
        _roots[orderId][batchSeq] = root;
        emit ReadingsCommitted(orderId, batchSeq, root, readingCount, msg.sender);
    }
}
