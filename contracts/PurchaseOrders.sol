// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IEscrow} from "./interfaces/IEscrow.sol";
import {IPurchaseOrders, SignedCertificate} from "./interfaces/IPurchaseOrders.sol";
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
/// leaves money stuck. Delivery is confirmed by the buyer or proven by certified device
/// readings through {QualityVerification}, which also records breaches.
///
/// Settlement (DESIGN.md §4): late = max(0, deliveredAt - deadline);
/// latePenaltyBps = min(cap, ceil(late / 3600) * ratePerHour); breachBps = breached ?
/// breachRefundBps : 0; refundBps = min(10000, latePenaltyBps + breachBps);
/// buyer = price * refundBps / 10000 (rounded down), supplier = price - buyer.
///
/// Storage: one slot per order ({OrderRecord}): the first 25 bytes of the terms' keccak256,
/// the state, two flags and one timestamp. Every call that needs the terms takes them as
/// calldata and is refused unless they hash to the stored digest; {OrderCreated} carries
/// them in full. Prices are bounded to {MAX_PRICE}, the deadline to 2^40 - 1 and the
/// temperature limits to int16 (±327.67 °C), checked when the order is created.
///
/// No admin: Escrow and QualityVerification are fixed at deployment.
contract PurchaseOrders is IPurchaseOrders {
    /// @notice How long the arbiter has to rule on a dispute before anyone may settle by the terms.
    uint64 public constant ARBITRATION_PERIOD = 30 days;
    /// @notice The largest price an order may have: Escrow takes amounts of up to 88 bits.
    uint256 public constant MAX_PRICE = type(uint88).max;

    uint256 private constant _BPS = 10_000;
    uint8 private constant _FUNDED = 1;
    uint8 private constant _BREACHED = 2;

    /// @dev An order in one storage slot: 25 + 1 + 1 + 5 = 32 bytes. `timestamp` is the
    /// creation time until shipment, the shipment time while Shipped (what evidence is
    /// judged against), then the delivery time (what settlement and the dispute window
    /// use). The dispute time, needed only on the dispute path, has its own mapping.
    struct OrderRecord {
        bytes25 termsDigest;
        OrderState state;
        uint8 flags; // _FUNDED | _BREACHED
        uint40 timestamp;
    }

    IEscrow private immutable _escrow;
    IQualityVerification private immutable _quality;

    /// @dev The id the next order gets. Starts at 1 (ids start at 1), which also keeps the
    /// slot non-zero so creating the first order does not pay for a new storage slot.
    uint256 private _nextOrderId = 1;
    mapping(uint256 orderId => OrderRecord) private _orders;
    mapping(uint256 orderId => uint40) private _disputedAt;

    /// @param escrow_ the Escrow that holds payments, deployed for this contract's address.
    /// @param quality_ the QualityVerification that judges evidence, likewise.
    ///
    /// Requirements: both report this contract as their PurchaseOrders, else
    /// {PurchaseOrdersMiswired} (deploy them with this contract's address, known in
    /// advance from the deployer's nonce).
    constructor(IEscrow escrow_, IQualityVerification quality_) {
        address e = escrow_.purchaseOrders();
        if (e != address(this)) revert PurchaseOrdersMiswired(address(escrow_), e);
        address q = quality_.purchaseOrders();
        if (q != address(this)) revert PurchaseOrdersMiswired(address(quality_), q);
        _escrow = escrow_;
        _quality = quality_;
    }

    modifier onlyQualityVerification() {
        if (msg.sender != address(_quality)) revert PurchaseOrdersNotQualityVerification(msg.sender);
        _;
    }

    // ------------------------------------------------------------------ orders

    /// @notice Creates an order from the caller (the buyer, `terms.buyer`) to
    /// `terms.supplier`, in state Created.
    ///
    /// Requirements (else {PurchaseOrdersInvalidTerms} naming the field):
    /// - `buyer` is the caller; `supplier` is neither zero nor the buyer;
    /// - `0 < price <= MAX_PRICE`;
    /// - the deadline is in the future, at most 2^40 - 1;
    /// - `minTempCentiC <= maxTempCentiC`, both within int16;
    /// - destination latitude within ±90°, longitude within ±180°, `geofenceE6 > 0`;
    /// - every bps field is at most 10000;
    /// - the arbiter is neither zero, the buyer nor the supplier;
    /// - `deviceIssuer` is neither zero nor the supplier; `secondDeviceIssuer` is zero or
    ///   neither the supplier nor `deviceIssuer`;
    /// - `arrivalQuorum <= 2`, and 2 only with a second issuer.
    function createOrder(Terms calldata terms) external returns (uint256 orderId) {
        orderId = _create(terms, 0);
    }

    /// @notice Creates an order (as {createOrder}) and funds it in the same call: send
    /// `price` as ETH for an ETH order, or approve the Escrow for `price` of the token.
    ///
    /// Requirements: those of {createOrder} and {fundOrder}.
    function createAndFundOrder(Terms calldata terms) external payable returns (uint256 orderId) {
        orderId = _create(terms, _FUNDED);
        emit OrderFunded(orderId, msg.sender, terms.price);
        _escrow.deposit{value: msg.value}(orderId, msg.sender, terms.token, terms.price);
    }

    /// @notice The supplier accepts the terms: Created → Funded if the buyer already
    /// funded, else Created → Accepted.
    ///
    /// Requirements:
    /// - `terms` are the order's; the caller is the supplier; the order is Created.
    function acceptOrder(uint256 orderId, Terms calldata terms) external {
        OrderRecord memory o = _load(orderId, terms);
        if (msg.sender != terms.supplier) revert PurchaseOrdersNotSupplier(orderId, msg.sender);
        _requireState(orderId, o.state, OrderState.Created);
        o.state = o.flags & _FUNDED != 0 ? OrderState.Funded : OrderState.Accepted;
        _orders[orderId] = o;
        emit OrderAccepted(orderId, msg.sender);
    }

    /// @notice The buyer pays the price into escrow (ETH with the call, or an ERC-20 the
    /// Escrow pulls after the buyer approved it). Accepted → Funded; a Created order stays
    /// Created, marked funded, until the supplier accepts.
    ///
    /// Requirements:
    /// - `terms` are the order's; the caller is the buyer; the order is not funded yet
    ///   and is Created or Accepted;
    /// - ETH: `msg.value == price`; ERC-20: no ETH sent and an allowance of `price`.
    function fundOrder(uint256 orderId, Terms calldata terms) external payable {
        OrderRecord memory o = _load(orderId, terms);
        if (msg.sender != terms.buyer) revert PurchaseOrdersNotBuyer(orderId, msg.sender);
        if (o.flags & _FUNDED != 0) revert PurchaseOrdersAlreadyFunded(orderId);
        if (o.state == OrderState.Accepted) {
            o.state = OrderState.Funded;
        } else if (o.state != OrderState.Created) {
            revert PurchaseOrdersInvalidState(orderId, o.state);
        }
        o.flags |= _FUNDED;
        _orders[orderId] = o;
        emit OrderFunded(orderId, msg.sender, terms.price);
        _escrow.deposit{value: msg.value}(orderId, msg.sender, terms.token, terms.price);
    }

    /// @notice The supplier ships: binds the certified devices travelling with the goods
    /// (their signed readings become evidence) and starts the transit. Funded → Shipped.
    ///
    /// Requirements:
    /// - `terms` are the order's; the caller is the supplier; the order is Funded;
    /// - `certificates` is non-empty; QualityVerification accepts every one
    ///   ({IQualityVerification-bindDevices}): each certifies a distinct device for this
    ///   order, is signed by an issuer the terms name and valid now, the device not
    ///   revoked; with a second issuer, each issuer certifies at least one device.
    function shipOrder(uint256 orderId, Terms calldata terms, SignedCertificate[] calldata certificates) external {
        OrderRecord memory o = _load(orderId, terms);
        if (msg.sender != terms.supplier) revert PurchaseOrdersNotSupplier(orderId, msg.sender);
        _requireState(orderId, o.state, OrderState.Funded);
        if (certificates.length == 0) revert PurchaseOrdersNoDevices(orderId);

        o.state = OrderState.Shipped;
        o.timestamp = _now40();
        _orders[orderId] = o;
        emit OrderShipped(orderId, certificates.length, uint64(block.timestamp));
        _bindDevices(orderId, terms.deviceIssuer, terms.secondDeviceIssuer, certificates);
    }

    /// @dev `_quality.bindDevices(orderId, deviceIssuer, secondDeviceIssuer, certificates)`
    /// with the certificates copied from calldata as they came instead of re-encoding them:
    /// their length word and everything after it (the ABI offsets inside the array are
    /// relative to it and point forward, so the copy is the same array); a revert is
    /// passed on as is.
    function _bindDevices(
        uint256 orderId,
        address deviceIssuer,
        address secondDeviceIssuer,
        SignedCertificate[] calldata certificates
    ) private {
        bytes4 selector = IQualityVerification.bindDevices.selector;
        address quality = address(_quality);
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            let from := sub(certificates.offset, 0x20)
            let size := sub(calldatasize(), from)
            mstore(ptr, selector)
            mstore(add(ptr, 0x04), orderId)
            // (variables narrower than a word may carry dirty high bits in assembly)
            mstore(add(ptr, 0x24), and(deviceIssuer, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(ptr, 0x44), and(secondDeviceIssuer, 0xffffffffffffffffffffffffffffffffffffffff))
            mstore(add(ptr, 0x64), 0x80)
            calldatacopy(add(ptr, 0x84), from, size)
            if iszero(call(gas(), quality, 0, ptr, add(0x84, size), 0, 0)) {
                returndatacopy(ptr, 0, returndatasize())
                revert(ptr, returndatasize())
            }
        }
    }

    /// @notice The buyer confirms receipt now; settles at once when the dispute window is zero.
    ///
    /// Requirements:
    /// - `terms` are the order's; the caller is the buyer; the order is Shipped.
    function confirmReceipt(uint256 orderId, Terms calldata terms) external {
        OrderRecord memory o = _load(orderId, terms);
        if (msg.sender != terms.buyer) revert PurchaseOrdersNotBuyer(orderId, msg.sender);
        _deliver(orderId, o, terms, uint64(block.timestamp), msg.sender);
    }

    /// @notice Records delivery proven by device readings at `deliveredAt`; settles at
    /// once when the dispute window is zero. QualityVerification checked the readings
    /// (certified, inside the box, the quorum met) but not the order: this call does, so
    /// the order is read once per arrival proof.
    ///
    /// Requirements:
    /// - the caller is QualityVerification;
    /// - the order is Shipped ({IQualityVerification-QualityVerificationOrderNotInTransit});
    /// - `terms` are the order's;
    /// - no reading was taken before shipment: `shippedAt <= earliestAt`
    ///   ({IQualityVerification-QualityVerificationReadingBeforeShipment});
    /// - `deliveredAt <= block.timestamp`.
    function recordDelivery(
        uint256 orderId,
        Terms calldata terms,
        uint64 earliestAt,
        uint64 deliveredAt,
        address confirmedBy
    ) external onlyQualityVerification {
        OrderRecord memory o = _existing(orderId);
        if (o.state != OrderState.Shipped) revert IQualityVerification.QualityVerificationOrderNotInTransit(orderId);
        bytes25 actual = _calldataDigest(terms);
        if (o.termsDigest != actual) revert PurchaseOrdersWrongTerms(orderId, o.termsDigest, actual);
        if (earliestAt < o.timestamp) {
            revert IQualityVerification.QualityVerificationReadingBeforeShipment(orderId, earliestAt, o.timestamp);
        }
        _deliver(orderId, o, terms, deliveredAt, confirmedBy);
    }

    /// @notice Records a breach proven by QualityVerification (excursion or shock).
    ///
    /// Requirements:
    /// - the caller is QualityVerification (which checked the terms); the order is Shipped.
    function recordBreach(uint256 orderId) external onlyQualityVerification {
        OrderRecord storage o = _existing(orderId);
        _requireState(orderId, o.state, OrderState.Shipped);
        o.flags |= _BREACHED;
        emit BreachRecorded(orderId);
    }

    /// @notice Buyer or supplier disputes the split while the dispute window is open
    /// (`block.timestamp < deliveredAt + disputeWindowSecs`). Delivered → Disputed.
    ///
    /// Requirements:
    /// - `terms` are the order's; the caller is the buyer or the supplier; the order is
    ///   Delivered; the window is open.
    function openDispute(uint256 orderId, Terms calldata terms) external {
        OrderRecord memory o = _load(orderId, terms);
        if (msg.sender != terms.buyer && msg.sender != terms.supplier) {
            revert PurchaseOrdersNotParty(orderId, msg.sender);
        }
        _requireState(orderId, o.state, OrderState.Delivered);
        uint64 closesAt = uint64(o.timestamp) + terms.disputeWindowSecs;
        if (block.timestamp >= closesAt) revert PurchaseOrdersDisputeWindow(orderId, closesAt, false);

        o.state = OrderState.Disputed;
        _orders[orderId] = o;
        _disputedAt[orderId] = _now40();
        emit DisputeOpened(orderId, msg.sender);
    }

    /// @notice The arbiter rules a split: `buyerAmount` to the buyer, the rest of the
    /// price to the supplier. Disputed → Resolved. The arbiter may rule for as long as the
    /// order is Disputed; after {ARBITRATION_PERIOD} anyone may instead settle by the terms
    /// ({settleOrder}), and whichever comes first is final.
    ///
    /// Requirements:
    /// - `terms` are the order's; the caller is its arbiter; the order is Disputed;
    ///   `buyerAmount <= price`.
    function resolveDispute(uint256 orderId, Terms calldata terms, uint256 buyerAmount) external {
        OrderRecord memory o = _load(orderId, terms);
        if (msg.sender != terms.arbiter) revert PurchaseOrdersNotArbiter(orderId, msg.sender);
        _requireState(orderId, o.state, OrderState.Disputed);
        uint256 price = terms.price;
        if (buyerAmount > price) revert PurchaseOrdersInvalidRuling(orderId, buyerAmount, price);

        o.state = OrderState.Resolved;
        _orders[orderId] = o;
        // Cannot underflow: buyerAmount <= price was checked above.
        uint256 supplierAmount;
        unchecked {
            supplierAmount = price - buyerAmount;
        }
        emit DisputeResolved(orderId, msg.sender, buyerAmount, supplierAmount);
        _escrow.release(orderId, terms.token, terms.buyer, buyerAmount, terms.supplier, supplierAmount);
    }

    /// @notice Makes the terms' split final (anyone may call): a Delivered order once its
    /// dispute window has closed, or a Disputed order the arbiter did not rule on within
    /// {ARBITRATION_PERIOD}. → Settled.
    ///
    /// Requirements:
    /// - `terms` are the order's;
    /// - Delivered: `block.timestamp >= deliveredAt + disputeWindowSecs`, else
    ///   {PurchaseOrdersDisputeWindow} (open = true);
    /// - Disputed: `block.timestamp >= disputedAt + ARBITRATION_PERIOD`, else
    ///   {PurchaseOrdersArbitrationPending};
    /// - any other state: {PurchaseOrdersInvalidState}.
    function settleOrder(uint256 orderId, Terms calldata terms) external {
        OrderRecord memory o = _load(orderId, terms);
        if (o.state == OrderState.Delivered) {
            uint64 closesAt = uint64(o.timestamp) + terms.disputeWindowSecs;
            if (block.timestamp < closesAt) revert PurchaseOrdersDisputeWindow(orderId, closesAt, true);
        } else if (o.state == OrderState.Disputed) {
            uint64 deadline = uint64(_disputedAt[orderId]) + ARBITRATION_PERIOD;
            if (block.timestamp < deadline) revert PurchaseOrdersArbitrationPending(orderId, deadline);
        } else {
            revert PurchaseOrdersInvalidState(orderId, o.state);
        }
        _settle(orderId, o, terms);
    }

    /// @notice Cancels an order before shipment; a deposit goes back to the buyer in full.
    /// The buyer may cancel while the order is Created (funded or not); the supplier while
    /// it is Created, Accepted or Funded. → Cancelled.
    ///
    /// Requirements:
    /// - `terms` are the order's; the caller is the buyer or the supplier, and the order
    ///   is in a state above for that party.
    function cancelOrder(uint256 orderId, Terms calldata terms) external {
        OrderRecord memory o = _load(orderId, terms);
        OrderState state = o.state;
        if (msg.sender == terms.buyer) {
            _requireState(orderId, state, OrderState.Created);
        } else if (msg.sender == terms.supplier) {
            if (state != OrderState.Created && state != OrderState.Accepted && state != OrderState.Funded) {
                revert PurchaseOrdersInvalidState(orderId, state);
            }
        } else {
            revert PurchaseOrdersNotParty(orderId, msg.sender);
        }

        o.state = OrderState.Cancelled;
        _orders[orderId] = o;
        emit OrderCancelled(orderId, msg.sender);
        _refund(orderId, o, terms);
    }

    /// @notice Expires an order that was not delivered by `deliveryDeadline +
    /// expiryGraceSecs` (anyone may call); a deposit goes back to the buyer in full.
    /// Applies to Created, Accepted, Funded and Shipped orders. → Expired.
    ///
    /// Requirements:
    /// - `terms` are the order's; the order is in one of those states;
    ///   `block.timestamp > deadline + grace`.
    function expireOrder(uint256 orderId, Terms calldata terms) external {
        OrderRecord memory o = _load(orderId, terms);
        OrderState state = o.state;
        if (
            state != OrderState.Created && state != OrderState.Accepted && state != OrderState.Funded
                && state != OrderState.Shipped
        ) revert PurchaseOrdersInvalidState(orderId, state);
        uint64 expiresAt = terms.deliveryDeadline + terms.expiryGraceSecs;
        if (block.timestamp <= expiresAt) revert PurchaseOrdersNotExpired(orderId, expiresAt);

        o.state = OrderState.Expired;
        _orders[orderId] = o;
        emit OrderExpired(orderId, o.flags & _FUNDED != 0 ? terms.price : 0);
        _refund(orderId, o, terms);
    }

    // ------------------------------------------------------------------ views

    /// @inheritdoc IPurchaseOrders
    function getOrder(uint256 orderId) external view returns (Order memory order) {
        OrderRecord memory o = _existing(orderId);
        order.termsDigest = o.termsDigest;
        order.state = o.state;
        order.funded = o.flags & _FUNDED != 0;
        order.breached = o.flags & _BREACHED != 0;
        order.timestamp = o.timestamp;
    }

    /// @inheritdoc IPurchaseOrders
    function disputedAt(uint256 orderId) external view returns (uint64) {
        return _disputedAt[orderId];
    }

    /// @inheritdoc IPurchaseOrders
    function orderCount() external view returns (uint256) {
        // Cannot underflow: _nextOrderId starts at 1 and only grows.
        unchecked {
            return _nextOrderId - 1;
        }
    }

    /// @inheritdoc IPurchaseOrders
    function hashTerms(Terms calldata terms) external pure returns (bytes25) {
        return _digest(terms);
    }

    /// @inheritdoc IPurchaseOrders
    function previewSettlement(uint256 orderId, Terms calldata terms, uint64 deliveredAt)
        external
        view
        returns (uint256 buyerAmount, uint256 supplierAmount)
    {
        (buyerAmount, supplierAmount) = _split(terms, _load(orderId, terms).flags, deliveredAt);
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

    function _create(Terms calldata t, uint8 flags) private returns (uint256 orderId) {
        _validate(t);
        orderId = _nextOrderId;
        // Cannot overflow: one id per order, far fewer than 2^256.
        unchecked {
            _nextOrderId = orderId + 1;
        }
        // The terms are copied to memory once, hashed there and logged from there: the
        // same bytes as `_digest(t)` and `emit OrderCreated(orderId, t.buyer, t.supplier, t)`
        // (a static struct's calldata is its ABI encoding), without encoding the struct
        // twice. `_validate` checked that every field is canonically encoded.
        bytes25 digest;
        bytes32 topic = OrderCreated.selector;
        address buyer = t.buyer;
        address supplier = t.supplier;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, t, 704)
            digest := keccak256(ptr, 704)
            let mask := 0xffffffffffffffffffffffffffffffffffffffff
            log4(ptr, 704, topic, orderId, and(buyer, mask), and(supplier, mask))
        }
        _orders[orderId] =
            OrderRecord({termsDigest: digest, state: OrderState.Created, flags: flags, timestamp: _now40()});
    }

    function _validate(Terms calldata t) private view {
        _requireCanonical(t);
        if (t.buyer != msg.sender) revert PurchaseOrdersInvalidTerms("buyer");
        if (t.supplier == address(0) || t.supplier == t.buyer) revert PurchaseOrdersInvalidTerms("supplier");
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
        if (t.arbiter == address(0) || t.arbiter == t.buyer || t.arbiter == t.supplier) {
            revert PurchaseOrdersInvalidTerms("arbiter");
        }
        // The supplier gains from clean readings and an early arrival: it may not vouch for its own witnesses.
        if (t.deviceIssuer == address(0) || t.deviceIssuer == t.supplier) {
            revert PurchaseOrdersInvalidTerms("deviceIssuer");
        }
        if (t.secondDeviceIssuer != address(0)) {
            if (t.secondDeviceIssuer == t.supplier || t.secondDeviceIssuer == t.deviceIssuer) {
                revert PurchaseOrdersInvalidTerms("secondDeviceIssuer");
            }
        }
        if (t.arrivalQuorum > 2 || (t.arrivalQuorum == 2 && t.secondDeviceIssuer == address(0))) {
            revert PurchaseOrdersInvalidTerms("arrivalQuorum");
        }
    }

    /// @dev Reverts (without data, as the ABI decoder does) unless every word of `t` in
    /// calldata is a canonical encoding of its field's type: addresses and unsigned fields
    /// have no bits above their width, signed fields are sign-extended.
    function _requireCanonical(Terms calldata t) private pure {
        bool ok;
        assembly ("memory-safe") {
            // unsigned widths in bits, 0 = a signed field (checked below), per word
            // address x3, uint256, uint64, uint32, int32 x2, uint32, int32 x2, uint16,
            // uint32 x2, uint16 x3, uint32, address x3, uint8
            function u(p, bits) -> r { r := iszero(shr(bits, calldataload(p))) }
            function i32(p) -> r { let w := calldataload(p) r := eq(signextend(3, w), w) }
            ok := and(and(u(t, 160), u(add(t, 0x20), 160)), u(add(t, 0x40), 160))
            ok := and(ok, and(u(add(t, 0x80), 64), u(add(t, 0xa0), 32)))
            ok := and(ok, and(i32(add(t, 0xc0)), i32(add(t, 0xe0))))
            ok := and(ok, and(u(add(t, 0x100), 32), and(i32(add(t, 0x120)), i32(add(t, 0x140)))))
            ok := and(ok, and(u(add(t, 0x160), 16), and(u(add(t, 0x180), 32), u(add(t, 0x1a0), 32))))
            ok := and(ok, and(u(add(t, 0x1c0), 16), and(u(add(t, 0x1e0), 16), u(add(t, 0x200), 16))))
            ok := and(ok, and(u(add(t, 0x220), 32), u(add(t, 0x240), 160)))
            ok := and(ok, and(u(add(t, 0x260), 160), and(u(add(t, 0x280), 160), u(add(t, 0x2a0), 8))))
        }
        if (!ok) revert();
    }

    function _deliver(
        uint256 orderId,
        OrderRecord memory o,
        Terms calldata t,
        uint64 deliveredAt,
        address confirmedBy
    ) private {
        _requireState(orderId, o.state, OrderState.Shipped);
        if (deliveredAt < o.timestamp || deliveredAt > block.timestamp) {
            revert PurchaseOrdersInvalidDeliveryTime(orderId, deliveredAt);
        }
        // The cast is safe: deliveredAt <= block.timestamp < 2^40.
        o.timestamp = uint40(deliveredAt);
        uint64 deadline = t.deliveryDeadline;
        // Cannot underflow: only taken when deliveredAt > deadline.
        uint64 late;
        unchecked {
            late = deliveredAt > deadline ? deliveredAt - deadline : 0;
        }
        if (t.disputeWindowSecs == 0) {
            emit OrderDelivered(orderId, deliveredAt, late, confirmedBy);
            _settle(orderId, o, t);
        } else {
            o.state = OrderState.Delivered;
            _orders[orderId] = o;
            emit OrderDelivered(orderId, deliveredAt, late, confirmedBy);
        }
    }

    function _settle(uint256 orderId, OrderRecord memory o, Terms calldata t) private {
        (uint256 buyerAmount, uint256 supplierAmount) = _split(t, o.flags, o.timestamp);
        o.state = OrderState.Settled;
        _orders[orderId] = o;
        emit OrderSettled(orderId, buyerAmount, supplierAmount);
        _escrow.release(orderId, t.token, t.buyer, buyerAmount, t.supplier, supplierAmount);
    }

    /// @dev Credits a funded order's whole deposit back to the buyer.
    function _refund(uint256 orderId, OrderRecord memory o, Terms calldata t) private {
        if (o.flags & _FUNDED != 0) _escrow.release(orderId, t.token, t.buyer, t.price, t.supplier, 0);
    }

    /// @dev The settlement split for delivery at `deliveredAt` (DESIGN.md §4).
    function _split(Terms calldata t, uint8 flags, uint64 deliveredAt)
        private
        pure
        returns (uint256 buyerAmount, uint256 supplierAmount)
    {
        uint256 refundBps;
        uint256 deadline = t.deliveryDeadline;
        if (deliveredAt > deadline) {
            // Cannot overflow: late < 2^64, so hours * rate stays far below 2^256.
            unchecked {
                uint256 late = deliveredAt - deadline;
                uint256 startedHours = (late + 3599) / 3600;
                uint256 penalty = startedHours * t.latePenaltyBpsPerHour;
                uint256 cap = t.latePenaltyCapBps;
                refundBps = penalty < cap ? penalty : cap;
            }
        }
        if (flags & _BREACHED != 0) refundBps += t.breachRefundBps;
        if (refundBps > _BPS) refundBps = _BPS;
        uint256 price = t.price;
        // Cannot overflow: price < 2^88 (validated at creation) and refundBps <= 10000;
        // buyerAmount <= price.
        unchecked {
            buyerAmount = price * refundBps / _BPS;
            supplierAmount = price - buyerAmount;
        }
    }

    /// @dev The stored digest of `t`: the first 25 bytes of keccak256(abi.encode(t)), from
    /// the validated, canonical encoding (used at creation and by {hashTerms}).
    function _digest(Terms calldata t) private pure returns (bytes25) {
        return bytes25(keccak256(abi.encode(t)));
    }

    /// @dev The same digest hashed straight from calldata: `Terms` is a static struct, so
    /// its calldata is its ABI encoding, 22 words. Non-canonical calldata (dirty high
    /// bits) hashes differently from the canonical digest stored at creation and is
    /// refused as wrong terms; this skips re-encoding the struct (about 3,000 gas a call).
    function _calldataDigest(Terms calldata t) private pure returns (bytes25 d) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            calldatacopy(ptr, t, 704)
            d := keccak256(ptr, 704)
        }
    }

    /// @dev The order's record, checking that `t` are its terms.
    function _load(uint256 orderId, Terms calldata t) private view returns (OrderRecord memory o) {
        o = _existing(orderId);
        bytes25 actual = _calldataDigest(t);
        if (o.termsDigest != actual) revert PurchaseOrdersWrongTerms(orderId, o.termsDigest, actual);
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
