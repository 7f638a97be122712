// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IQualityVerification} from "../../contracts/interfaces/IQualityVerification.sol";

/// @title NaiveTelemetryStore
/// @notice BENCHMARK BASELINE ONLY. The naive way to put telemetry on chain: every full
/// reading is written to storage and emitted as an event, one transaction per reading
/// ({storeReading}) or many per transaction ({storeReadings}). bench/ compares it with
/// TrustShip's fleet commitments (QualityVerification.commitFleetRoot). A reading is
/// QualityVerification's own ({IQualityVerification-Reading}), field for field.
contract NaiveTelemetryStore {
    mapping(uint256 orderId => IQualityVerification.Reading[]) private _readings;

    /// @notice Emitted for every stored reading, with all its fields.
    event ReadingStored(
        uint256 indexed orderId,
        uint32 indexed seq,
        uint64 timestamp,
        int32 temperatureCentiC,
        uint16 humidityPermille,
        uint32 shockMilliG,
        int32 latitudeE6,
        int32 longitudeE6,
        uint8 flags
    );

    /// @notice Stores one reading and emits it.
    function storeReading(IQualityVerification.Reading calldata reading) external {
        _store(reading);
    }

    /// @notice Stores and emits each reading of a batch.
    function storeReadings(IQualityVerification.Reading[] calldata readings) external {
        for (uint256 i = 0; i < readings.length; ++i) {
            _store(readings[i]);
        }
    }

    /// @notice How many readings are stored for an order.
    function readingCount(uint256 orderId) external view returns (uint256) {
        return _readings[orderId].length;
    }

    /// @notice The `index`-th stored reading of an order.
    function readingAt(uint256 orderId, uint256 index) external view returns (IQualityVerification.Reading memory) {
        return _readings[orderId][index];
    }

    function _store(IQualityVerification.Reading calldata r) private {
        _readings[r.orderId].push(r);
        emit ReadingStored(
            r.orderId,
            r.seq,
            r.timestamp,
            r.temperatureCentiC,
            r.humidityPermille,
            r.shockMilliG,
            r.latitudeE6,
            r.longitudeE6,
            r.flags
        );
    }
}
