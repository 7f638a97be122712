// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

import {IEscrow} from "./interfaces/IEscrow.sol";
import {IPurchaseOrders} from "./interfaces/IPurchaseOrders.sol";
import {IQualityVerification} from "./interfaces/IQualityVerification.sol";

/// @title PurchaseOrders
/// @notice Purchase orders with their commercial terms and their state machine:
///
///     Created ──accept──▶ Accepted ──fund──▶ Funded ──ship──▶ Shipped ──deliver──▶ Delivered ──settle──▶ Settled
///        │  └──fund (stays Created, funded)──accept──▶ Funded        │                  │
///        │                                                          │                  └─dispute─▶ Disputed ─rule─▶ Resolved
///        └── cancel (before shipment) ──▶ Cancelled                 └── expire ──▶ Expired   (settle after 30 days ─▶ Settled)
///
/// The buyer's payment waits in {Escrow}; every terminal state releases it as credits
/// (settlement split, arbiter's ruling, or a full refund on cancel/expiry), so no path
/// leaves money stuck. Delivery is confirmed by the buyer or proven by a device reading
/// through {QualityVerification}, which also records breaches.
///
/// Settlement (DESIGN.md §4): late = max(0, deliveredAt - deadline);
/// latePenaltyBps = min(cap, ceil(late / 3600) * ratePerHour); breachBps = breached ?
/// breachRefundBps : 0; refundBps = min(10000, latePenaltyBps + breachBps);
/// buyer = price * refundBps / 10000 (rounded down), supplier = price - buyer.
///
/// Storage: an order is packed into five slots (see {OrderRecord}); this bounds prices
/// to {MAX_PRICE}, the deadline to 2^40 - 1 and the temperature limits to int16
/// (±327.67 °C), all checked when the order is created.
contract PurchaseOrders is IPurchaseOrders, AccessControl {
    /// @notice How long the arbiter has to rule on a dispute before anyone may settle by the terms.
    uint64 public constant ARBITRATION_PERIOD = 30 days;
    /// @notice The largest price an order may have: Escrow packs amounts into 88 bits.
    uint256 public constant MAX_PRICE = type(uint88).max;

    uint256 private constant _BPS = 10_000;

    /// @dev An order in five storage slots (159 of 160 bytes). Fields written together
    /// sit together: shipment and delivery each write only slot 0.
    struct OrderRecord {
        // slot 0: 20 + 1 + 1 + 5 + 5 = 32 bytes
        address buyer;
        OrderState state;
        bool funded;
        uint40 shippedAt;
        uint40 deliveredAt;
        // slot 1: 20 + 5 + 5 + 2 = 32 bytes
        address supplier;
        uint40 createdAt;
        uint40 deliveryDeadline;
        uint16 latePenaltyBpsPerHour;
        // slot 2: 20 + 11 = 31 bytes
        address token;
        uint88 price;
        // slot 3: 20 + 5 + 4 + 2 + 1 = 32 bytes
        address arbiter;
        uint40 disputedAt;
        uint32 disputeWindowSecs;
        uint16 latePenaltyCapBps;
        bool breached;
        // slot 4: 4 + 4 + 4 + 2 + 2 + 4 + 4 + 4 + 2 + 2 = 32 bytes; what evidence is judged against
        int32 destLatE6;
        int32 destLonE6;
        uint32 geofenceE6;
        int16 minTempCentiC;
        int16 maxTempCentiC;
        uint32 maxShockMilliG;
        uint32 toleratedExcursionSecs;
        uint32 expiryGraceSecs;
        uint16 maxHumidityPermille;
        uint16 breachRefundBps;
    }

    IEscrow private immutable _escrow;
    IQualityVerification private immutable _quality;

    /// @dev The id the next order gets. Starts at 1 (ids start at 1), which also keeps the
    /// slot non-zero so creating the first order does not pay for a new storage slot.
    uint256 private _nextOrderId = 1;
    mapping(uint256 orderId => OrderRecord) private _orders;

    /// @param admin receives DEFAULT_ADMIN_ROLE (no order operation needs it).
    /// @param escrow_ the Escrow that holds payments; its admin must then call `setPurchaseOrders(this)`.
    /// @param quality_ the QualityVerification that judges evidence; likewise wired with `setPurchaseOrders(this)`.
    constructor(address admin, IEscrow escrow_, IQualityVerification quality_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _escrow = escrow_;
        _quality = quality_;
    }

    // ------------------------------------------------------------------ orders

    /// @notice Creates an order from the caller (the buyer) to `supplier`, in state Created.
    ///
    /// Requirements (else {PurchaseOrdersInvalidTerms} naming the field):
    /// - `supplier` is neither zero nor the caller;
    /// - `0 < price <= MAX_PRICE`;
    /// - the deadline is in the future, at most 2^40 - 1;
    /// - `minTempCentiC <= maxTempCentiC`, both within int16;
    /// - destination latitude within ±90°, longitude within ±180°, `geofenceE6 > 0`;
    /// - every bps field is at most 10000;
    /// - the arbiter is neither zero, the buyer nor the supplier.
    function createOrder(address supplier, Terms calldata terms) external returns (uint256 orderId) {
        orderId = _create(supplier, terms, false);
    }

    /// @notice Creates an order (as {createOrder}) and funds it in the same call: send
    /// `price` as ETH for an ETH order, or approve the Escrow for `price` of the token.
    ///
    /// Requirements: those of {createOrder} and {fundOrder}.
    function createAndFundOrder(address supplier, Terms calldata terms) external payable returns (uint256 orderId) {
        orderId = _create(supplier, terms, true);
        emit OrderFunded(orderId, msg.sender, terms.price);
        _escrow.deposit{value: msg.value}(orderId, msg.sender, terms.token, terms.price);
    }

    /// @notice The supplier accepts the terms: Created → Funded if the buyer already
    /// funded, else Created → Accepted.
    ///
    /// Requirements:
    /// - the caller is the supplier; the order is Created.
    function acceptOrder(uint256 orderId) external {
        OrderRecord storage o = _existing(orderId);
        if (msg.sender != o.supplier) revert PurchaseOrdersNotSupplier(orderId, msg.sender);
        _requireState(orderId, o.state, OrderState.Created);
        o.state = o.funded ? OrderState.Funded : OrderState.Accepted;
        emit OrderAccepted(orderId, msg.sender);
    }

    /// @notice The buyer pays the price into escrow (ETH with the call, or an ERC-20 the
    /// Escrow pulls after the buyer approved it). Accepted → Funded; a Created order stays
    /// Created, marked funded, until the supplier accepts.
    ///
    /// Requirements:
    /// - the caller is the buyer; the order is not funded yet and is Created or Accepted;
    /// - ETH: `msg.value == price`; ERC-20: no ETH sent and an allowance of `price`.
    function fundOrder(uint256 orderId) external payable {
        OrderRecord storage o = _existing(orderId);
        if (msg.sender != o.buyer) revert PurchaseOrdersNotBuyer(orderId, msg.sender);
        if (o.funded) revert PurchaseOrdersAlreadyFunded(orderId);
        OrderState state = o.state;
        if (state == OrderState.Accepted) {
            o.state = OrderState.Funded;
        } else if (state != OrderState.Created) {
            revert PurchaseOrdersInvalidState(orderId, state);
        }
        o.funded = true;
        uint256 price = o.price;
        emit OrderFunded(orderId, msg.sender, price);
        _escrow.deposit{value: msg.value}(orderId, msg.sender, o.token, price);
    }

    /// @notice The supplier ships: binds the devices travelling with the goods (their
    /// signed readings become evidence) and starts the transit. Funded → Shipped.
    ///
    /// Requirements:
    /// - the caller is the supplier; the order is Funded;
    /// - `devices` is non-empty, without zero or repeated addresses.
    function shipOrder(uint256 orderId, address[] calldata devices) external {
        OrderRecord storage o = _existing(orderId);
        if (msg.sender != o.supplier) revert PurchaseOrdersNotSupplier(orderId, msg.sender);
        _requireState(orderId, o.state, OrderState.Funded);
        if (devices.length == 0) revert PurchaseOrdersNoDevices(orderId);

        o.state = OrderState.Shipped;
        o.shippedAt = _now40();
        emit OrderShipped(orderId, devices.length, uint64(block.timestamp));
        _quality.bindDevices(orderId, devices);
    }

    /// @notice The buyer confirms receipt now; settles at once when the dispute window is zero.
    ///
    /// Requirements:
    /// - the caller is the buyer; the order is Shipped.
    function confirmReceipt(uint256 orderId) external {
        OrderRecord storage o = _existing(orderId);
        if (msg.sender != o.buyer) revert PurchaseOrdersNotBuyer(orderId, msg.sender);
        _deliver(orderId, o, uint64(block.timestamp), msg.sender);
    }

    /// @notice Records delivery proven by a device reading at `deliveredAt`; settles at
    /// once when the dispute window is zero.
    ///
    /// Requirements:
    /// - the caller is QualityVerification; the order is Shipped;
    /// - `shippedAt <= deliveredAt <= block.timestamp`.
    function recordDelivery(uint256 orderId, uint64 deliveredAt, address confirmedBy) external {
        if (msg.sender != address(_quality)) revert PurchaseOrdersNotQualityVerification(msg.sender);
        _deliver(orderId, _existing(orderId), deliveredAt, confirmedBy);
    }

    /// @notice Records a breach proven by QualityVerification (excursion or shock).
    ///
    /// Requirements:
    /// - the caller is QualityVerification; the order is Shipped.
    function recordBreach(uint256 orderId) external {
        if (msg.sender != address(_quality)) revert PurchaseOrdersNotQualityVerification(msg.sender);
        OrderRecord storage o = _existing(orderId);
        _requireState(orderId, o.state, OrderState.Shipped);
        o.breached = true;
        emit BreachRecorded(orderId);
    }

    /// @notice Buyer or supplier disputes the split while the dispute window is open
    /// (`block.timestamp < deliveredAt + disputeWindowSecs`). Delivered → Disputed.
    ///
    /// Requirements:
    /// - the caller is the buyer or the supplier; the order is Delivered; the window is open.
    function openDispute(uint256 orderId) external {
        OrderRecord storage o = _existing(orderId);
        if (msg.sender != o.buyer && msg.sender != o.supplier) revert PurchaseOrdersNotParty(orderId, msg.sender);
        _requireState(orderId, o.state, OrderState.Delivered);
        uint64 closesAt = _windowClosesAt(o);
        if (block.timestamp >= closesAt) revert PurchaseOrdersDisputeWindow(orderId, closesAt, false);

        o.state = OrderState.Disputed;
        o.disputedAt = _now40();
        emit DisputeOpened(orderId, msg.sender);
    }

    /// @notice The arbiter rules a split: `buyerAmount` to the buyer, the rest of the
    /// price to the supplier. Disputed → Resolved. The arbiter may rule for as long as the
    /// order is Disputed; after {ARBITRATION_PERIOD} anyone may instead settle by the terms
    /// ({settleOrder}), and whichever comes first is final.
    ///
    /// Requirements:
    /// - the caller is the order's arbiter; the order is Disputed; `buyerAmount <= price`.
    function resolveDispute(uint256 orderId, uint256 buyerAmount) external {
        OrderRecord storage o = _existing(orderId);
        if (msg.sender != o.arbiter) revert PurchaseOrdersNotArbiter(orderId, msg.sender);
        _requireState(orderId, o.state, OrderState.Disputed);
        uint256 price = o.price;
        if (buyerAmount > price) revert PurchaseOrdersInvalidRuling(orderId, buyerAmount, price);

        o.state = OrderState.Resolved;
        // Cannot underflow: buyerAmount <= price was checked above.
        uint256 supplierAmount;
        unchecked {
            supplierAmount = price - buyerAmount;
        }
        emit DisputeResolved(orderId, msg.sender, buyerAmount, supplierAmount);
        _escrow.release(orderId, o.buyer, buyerAmount, o.supplier, supplierAmount);
    }

    /// @notice Makes the terms' split final (anyone may call): a Delivered order once its
    /// dispute window has closed, or a Disputed order the arbiter did not rule on within
    /// {ARBITRATION_PERIOD}. → Settled.
    ///
    /// Requirements:
    /// - Delivered: `block.timestamp >= deliveredAt + disputeWindowSecs`, else
    ///   {PurchaseOrdersDisputeWindow} (open = true);
    /// - Disputed: `block.timestamp >= disputedAt + ARBITRATION_PERIOD`, else
    ///   {PurchaseOrdersArbitrationPending};
    /// - any other state: {PurchaseOrdersInvalidState}.
    function settleOrder(uint256 orderId) external {
        OrderRecord storage o = _existing(orderId);
        OrderState state = o.state;
        if (state == OrderState.Delivered) {
            uint64 closesAt = _windowClosesAt(o);
            if (block.timestamp < closesAt) revert PurchaseOrdersDisputeWindow(orderId, closesAt, true);
        } else if (state == OrderState.Disputed) {
            uint64 deadline = uint64(o.disputedAt) + ARBITRATION_PERIOD;
            if (block.timestamp < deadline) revert PurchaseOrdersArbitrationPending(orderId, deadline);
        } else {
            revert PurchaseOrdersInvalidState(orderId, state);
        }
        _settle(orderId, o);
    }

    /// @notice Cancels an order before shipment; a deposit goes back to the buyer in full.
    /// The buyer may cancel while the order is Created (funded or not); the supplier while
    /// it is Created, Accepted or Funded. → Cancelled.
    ///
    /// Requirements:
    /// - the caller is the buyer or the supplier, and the order is in a state above for that party.
    function cancelOrder(uint256 orderId) external {
        OrderRecord storage o = _existing(orderId);
        OrderState state = o.state;
        if (msg.sender == o.buyer) {
            _requireState(orderId, state, OrderState.Created);
        } else if (msg.sender == o.supplier) {
            if (state != OrderState.Created && state != OrderState.Accepted && state != OrderState.Funded) {
                revert PurchaseOrdersInvalidState(orderId, state);
            }
        } else {
            revert PurchaseOrdersNotParty(orderId, msg.sender);
        }

        o.state = OrderState.Cancelled;
        emit OrderCancelled(orderId, msg.sender);
        _refund(orderId, o);
    }

    /// @notice Expires an order that was not delivered by `deliveryDeadline +
    /// expiryGraceSecs` (anyone may call); a deposit goes back to the buyer in full.
    /// Applies to Created, Accepted, Funded and Shipped orders. → Expired.
    ///
    /// Requirements:
    /// - the order is in one of those states; `block.timestamp > deadline + grace`.
    function expireOrder(uint256 orderId) external {
        OrderRecord storage o = _existing(orderId);
        OrderState state = o.state;
        if (
            state != OrderState.Created && state != OrderState.Accepted && state != OrderState.Funded
                && state != OrderState.Shipped
        ) revert PurchaseOrdersInvalidState(orderId, state);
        uint64 expiresAt = uint64(o.deliveryDeadline) + o.expiryGraceSecs;
        if (block.timestamp <= expiresAt) revert PurchaseOrdersNotExpired(orderId, expiresAt);

        o.state = OrderState.Expired;
        emit OrderExpired(orderId, o.funded ? o.price : 0);
        _refund(orderId, o);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IPurchaseOrders
    function getOrder(uint256 orderId) external view returns (Order memory order) {
        OrderRecord storage o = _existing(orderId);
        order.buyer = o.buyer;
        order.supplier = o.supplier;
        order.state = o.state;
        order.funded = o.funded;
        order.breached = o.breached;
        order.createdAt = o.createdAt;
        order.shippedAt = o.shippedAt;
        order.deliveredAt = o.deliveredAt;
        order.disputedAt = o.disputedAt;
        Terms memory t = order.terms;
        t.token = o.token;
        t.price = o.price;
        t.deliveryDeadline = o.deliveryDeadline;
        t.expiryGraceSecs = o.expiryGraceSecs;
        t.destLatE6 = o.destLatE6;
        t.destLonE6 = o.destLonE6;
        t.geofenceE6 = o.geofenceE6;
        t.minTempCentiC = o.minTempCentiC;
        t.maxTempCentiC = o.maxTempCentiC;
        t.maxHumidityPermille = o.maxHumidityPermille;
        t.maxShockMilliG = o.maxShockMilliG;
        t.toleratedExcursionSecs = o.toleratedExcursionSecs;
        t.latePenaltyBpsPerHour = o.latePenaltyBpsPerHour;
        t.latePenaltyCapBps = o.latePenaltyCapBps;
        t.breachRefundBps = o.breachRefundBps;
        t.disputeWindowSecs = o.disputeWindowSecs;
        t.arbiter = o.arbiter;
    }

    /// @inheritdoc IPurchaseOrders
    function orderCount() external view returns (uint256) {
        // Cannot underflow: _nextOrderId starts at 1 and only grows.
        unchecked {
            return _nextOrderId - 1;
        }
    }

    /// @inheritdoc IPurchaseOrders
    function previewSettlement(uint256 orderId, uint64 deliveredAt)
        external
        view
        returns (uint256 buyerAmount, uint256 supplierAmount)
    {
        (buyerAmount, supplierAmount) = _split(_existing(orderId), deliveredAt);
    }

    /// @inheritdoc IPurchaseOrders
    function escrow() external view returns (address) {
        return address(_escrow);
    }

    /// @inheritdoc IPurchaseOrders
    function qualityVerification() external view returns (address) {
        return address(_quality);
    }

    // ------------------------------------------------------------------ internals

    function _create(address supplier, Terms calldata t, bool funded) private returns (uint256 orderId) {
        _validate(supplier, t);
        orderId = _nextOrderId;
        // Cannot overflow: one id per order, far fewer than 2^256.
        unchecked {
            _nextOrderId = orderId + 1;
        }
        // The casts below are safe: _validate bounded price, deadline and temperatures.
        _orders[orderId] = OrderRecord({
            buyer: msg.sender,
            state: OrderState.Created,
            funded: funded,
            shippedAt: 0,
            deliveredAt: 0,
            supplier: supplier,
            createdAt: _now40(),
            deliveryDeadline: uint40(t.deliveryDeadline),
            latePenaltyBpsPerHour: t.latePenaltyBpsPerHour,
            token: t.token,
            price: uint88(t.price),
            arbiter: t.arbiter,
            disputedAt: 0,
            disputeWindowSecs: t.disputeWindowSecs,
            latePenaltyCapBps: t.latePenaltyCapBps,
            breached: false,
            destLatE6: t.destLatE6,
            destLonE6: t.destLonE6,
            geofenceE6: t.geofenceE6,
            minTempCentiC: int16(t.minTempCentiC),
            maxTempCentiC: int16(t.maxTempCentiC),
            maxShockMilliG: t.maxShockMilliG,
            toleratedExcursionSecs: t.toleratedExcursionSecs,
            expiryGraceSecs: t.expiryGraceSecs,
            maxHumidityPermille: t.maxHumidityPermille,
            breachRefundBps: t.breachRefundBps
        });
        emit OrderCreated(orderId, msg.sender, supplier, t.token, t.price, t.deliveryDeadline);
    }

    function _validate(address supplier, Terms calldata t) private view {
        if (supplier == address(0) || supplier == msg.sender) revert PurchaseOrdersInvalidTerms("supplier");
        if (t.price == 0 || t.price > MAX_PRICE) revert PurchaseOrdersInvalidTerms("price");
        if (t.deliveryDeadline <= block.timestamp || t.deliveryDeadline > type(uint40).max) {
            revert PurchaseOrdersInvalidTerms("deliveryDeadline");
        }
        if (t.minTempCentiC < type(int16).min) revert PurchaseOrdersInvalidTerms("minTempCentiC");
        if (t.maxTempCentiC > type(int16).max || t.maxTempCentiC < t.minTempCentiC) {
            revert PurchaseOrdersInvalidTerms("maxTempCentiC");
        }
        if (t.destLatE6 < -90_000_000 || t.destLatE6 > 90_000_000) revert PurchaseOrdersInvalidTerms("destLatE6");
        if (t.destLonE6 < -180_000_000 || t.destLonE6 > 180_000_000) revert PurchaseOrdersInvalidTerms("destLonE6");
        if (t.geofenceE6 == 0) revert PurchaseOrdersInvalidTerms("geofenceE6");
        if (t.latePenaltyBpsPerHour > _BPS) revert PurchaseOrdersInvalidTerms("latePenaltyBpsPerHour");
        if (t.latePenaltyCapBps > _BPS) revert PurchaseOrdersInvalidTerms("latePenaltyCapBps");
        if (t.breachRefundBps > _BPS) revert PurchaseOrdersInvalidTerms("breachRefundBps");
        if (t.arbiter == address(0) || t.arbiter == msg.sender || t.arbiter == supplier) {
            revert PurchaseOrdersInvalidTerms("arbiter");
        }
    }

    function _deliver(uint256 orderId, OrderRecord storage o, uint64 deliveredAt, address confirmedBy) private {
        _requireState(orderId, o.state, OrderState.Shipped);
        if (deliveredAt < o.shippedAt || deliveredAt > block.timestamp) {
            revert PurchaseOrdersInvalidDeliveryTime(orderId, deliveredAt);
        }
        // The cast is safe: deliveredAt <= block.timestamp < 2^40.
        o.deliveredAt = uint40(deliveredAt);
        uint64 deadline = o.deliveryDeadline;
        // Cannot underflow: only taken when deliveredAt > deadline.
        uint64 late;
        unchecked {
            late = deliveredAt > deadline ? deliveredAt - deadline : 0;
        }
        if (o.disputeWindowSecs == 0) {
            emit OrderDelivered(orderId, deliveredAt, late, confirmedBy);
            _settle(orderId, o);
        } else {
            o.state = OrderState.Delivered;
            emit OrderDelivered(orderId, deliveredAt, late, confirmedBy);
        }
    }

    function _settle(uint256 orderId, OrderRecord storage o) private {
        (uint256 buyerAmount, uint256 supplierAmount) = _split(o, o.deliveredAt);
        o.state = OrderState.Settled;
        emit OrderSettled(orderId, buyerAmount, supplierAmount);
        _escrow.release(orderId, o.buyer, buyerAmount, o.supplier, supplierAmount);
    }

    /// @dev Credits a funded order's whole deposit back to the buyer.
    function _refund(uint256 orderId, OrderRecord storage o) private {
        if (o.funded) _escrow.release(orderId, o.buyer, o.price, o.supplier, 0);
    }

    /// @dev The settlement split for delivery at `deliveredAt` (DESIGN.md §4).
    function _split(OrderRecord storage o, uint64 deliveredAt)
        private
        view
        returns (uint256 buyerAmount, uint256 supplierAmount)
    {
        uint256 refundBps;
        uint256 deadline = o.deliveryDeadline;
        if (deliveredAt > deadline) {
            // Cannot overflow: late < 2^64, so hours * rate stays far below 2^256.
            unchecked {
                uint256 late = deliveredAt - deadline;
                uint256 startedHours = (late + 3599) / 3600;
                uint256 penalty = startedHours * o.latePenaltyBpsPerHour;
                uint256 cap = o.latePenaltyCapBps;
                refundBps = penalty < cap ? penalty : cap;
            }
        }
        if (o.breached) refundBps += o.breachRefundBps;
        if (refundBps > _BPS) refundBps = _BPS;
        uint256 price = o.price;
        // Cannot overflow: price < 2^88 and refundBps <= 10000; buyerAmount <= price.
        unchecked {
            buyerAmount = price * refundBps / _BPS;
            supplierAmount = price - buyerAmount;
        }
    }

    function _windowClosesAt(OrderRecord storage o) private view returns (uint64) {
        return uint64(o.deliveredAt) + o.disputeWindowSecs;
    }

    function _existing(uint256 orderId) private view returns (OrderRecord storage o) {
        o = _orders[orderId];
        if (o.state == OrderState.None) revert PurchaseOrdersUnknownOrder(orderId);
    }

    function _requireState(uint256 orderId, OrderState current, OrderState expected) private pure {
        if (current != expected) revert PurchaseOrdersInvalidState(orderId, current);
    }

    function _now40() private view returns (uint40) {
        // The cast is safe until the year 36812.
        return uint40(block.timestamp);
    }
}
