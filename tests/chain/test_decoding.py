"""Revert and event decoding against the ABIs (no chain needed)."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from backend.chain.artifacts import all_abis
from backend.chain.decoding import AbiRegistry, default_registry
from backend.chain.errors import ContractRevert, UndecodedRevert


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_every_contract_error_is_registered() -> None:
    reg = default_registry()
    for name, abi in all_abis().items():
        for entry in abi:
            if entry["type"] == "error":
                sig = f"{entry['name']}({','.join(i['type'] for i in entry['inputs'])})"
                assert selector(sig) in reg.errors, f"{name}.{entry['name']}"


def test_require_string_and_panic_are_named() -> None:
    reg = AbiRegistry.from_abis({})
    err = reg.decode_revert(selector("Error(string)") + encode(["string"], ["nope"]))
    assert (err.name, err.args) == ("Error", {"message": "nope"})
    panic = reg.decode_revert(selector("Panic(uint256)") + encode(["uint256"], [0x11]))
    assert (panic.name, panic.args) == ("Panic", {"code": 0x11})
    assert "overflow" in str(panic)


def test_openzeppelin_errors_decode_without_any_artifact() -> None:
    reg = AbiRegistry.from_abis({})
    token = "0x" + "ab" * 20
    err = reg.decode_revert(
        selector("SafeERC20FailedOperation(address)") + encode(["address"], [token])
    )
    assert err.name == "SafeERC20FailedOperation"
    assert err.args == {"token": "0xABaBaBaBABabABabAbAbABAbABabababaBaBABaB"}
    s_value = b"\x7f" * 32
    ecdsa = reg.decode_revert(selector("ECDSAInvalidSignatureS(bytes32)") + s_value)
    assert (ecdsa.name, ecdsa.args) == ("ECDSAInvalidSignatureS", {"s": s_value})
    reentrant = reg.decode_revert(selector("ReentrancyGuardReentrantCall()"))
    assert (reentrant.name, reentrant.args) == ("ReentrancyGuardReentrantCall", {})


def test_unknown_selector_short_data_and_garbled_args_are_reported_raw() -> None:
    reg = AbiRegistry.from_abis({})
    unknown = reg.decode_revert(bytes.fromhex("deadbeef") + b"\x00" * 32, function="f")
    assert isinstance(unknown, UndecodedRevert)
    assert unknown.args == {"data": "0xdeadbeef" + "00" * 32}
    assert "0xdeadbeef" in str(unknown) and "in f" in str(unknown)
    empty = reg.decode_revert(b"")
    assert isinstance(empty, UndecodedRevert) and "without error data" in str(empty)
    garbled = reg.decode_revert(selector("Error(string)") + b"\x01\x02")
    assert isinstance(garbled, UndecodedRevert) and "do not decode" in str(garbled)


def test_contract_hint_names_the_contract_when_the_error_is_shared() -> None:
    reg = default_registry()
    sig = "QualityVerificationOrderNotInTransit(uint256)"
    data = selector(sig) + encode(["uint256"], [7])
    assert reg.decode_revert(data).contract is None  # declared by several contracts
    hinted = reg.decode_revert(data, contract_hint="PurchaseOrders")
    assert hinted.contract == "PurchaseOrders"
    assert isinstance(hinted, ContractRevert)


def test_event_logs_decode_indexed_and_plain_arguments() -> None:
    reg = default_registry()
    sig = "FundsCredited(uint256,address,address,uint256)"
    account = "0x" + "22" * 20
    log = {
        "address": "0x" + "33" * 20,
        "topics": [
            keccak(text=sig),
            (7).to_bytes(32, "big"),
            bytes(12) + bytes.fromhex("22" * 20),
            bytes(32),
        ],
        "data": encode(["uint256"], [5]),
        "blockNumber": 9,
        "logIndex": 2,
        "transactionHash": b"\x01" * 32,
    }
    ev = reg.decode_log(log)
    assert ev is not None
    assert ev.name == "FundsCredited" and ev.contract == "Escrow"
    assert ev.args == {
        "orderId": 7,
        "account": "0x2222222222222222222222222222222222222222",
        "token": "0x0000000000000000000000000000000000000000",
        "amount": 5,
    }
    assert account.lower() == ev["account"].lower()
    assert (ev.block_number, ev.log_index) == (9, 2)
    assert reg.decode_log({**log, "topics": [b"\x00" * 32]}) is None
