"""Decode revert data and event logs against every known contract ABI.

One :class:`AbiRegistry` is built from all artifacts in ``contracts/build`` (so an
error raised by a library or an OpenZeppelin base, or by another TrustShip
contract in a nested call, is still named), plus Solidity's built-in ``Error``
and ``Panic`` and the OpenZeppelin 5 errors our contracts can bubble up.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import abi_to_signature, get_abi_input_types, keccak, to_checksum_address

from backend.chain.errors import ContractRevert, UndecodedRevert

logger = logging.getLogger(__name__)

PANIC_REASONS = {
    0x00: "generic compiler panic",
    0x01: "assert failed",
    0x11: "arithmetic overflow or underflow",
    0x12: "division or modulo by zero",
    0x21: "invalid enum value",
    0x22: "corrupt storage byte array",
    0x31: "pop() on an empty array",
    0x32: "array index out of bounds",
    0x41: "out of memory",
    0x51: "call to a zero-initialised internal function",
}


def _err(signature: str) -> dict[str, Any]:
    """The ABI entry of an error written as in Solidity: ``Name(uint256 a, address b)``."""
    name, _, params = signature.rstrip(")").partition("(")
    inputs = [p.split(" ") + [""] for p in params.split(", ")] if params else []
    return {
        "type": "error",
        "name": name,
        "inputs": [{"name": parts[1], "type": parts[0]} for parts in inputs],
    }


#: Solidity's built-ins and the OpenZeppelin 5 errors reachable from our contracts.
#: Artifact ABIs take precedence; these make decoding work even when solc leaves an
#: error of a library out of a contract's ABI.
BUILTIN_ERRORS: tuple[dict[str, Any], ...] = tuple(
    _err(signature)
    for signature in (
        "Error(string message)",
        "Panic(uint256 code)",
        "AccessControlUnauthorizedAccount(address account, bytes32 neededRole)",
        "AccessControlBadConfirmation()",
        "ReentrancyGuardReentrantCall()",
        "SafeERC20FailedOperation(address token)",
        "SafeERC20FailedDecreaseAllowance("
        "address spender, uint256 currentAllowance, uint256 requestedDecrease)",
        "ECDSAInvalidSignature()",
        "ECDSAInvalidSignatureLength(uint256 length)",
        "ECDSAInvalidSignatureS(bytes32 s)",
        "AddressEmptyCode(address target)",
        "FailedCall()",
        "FailedDeployment()",
        "InsufficientBalance(uint256 balance, uint256 needed)",
        "MissingPrecompile(address)",
        "MerkleProofInvalidMultiproof()",
        "InvalidShortString()",
        "StringTooLong(string str)",
        "ERC20InsufficientBalance(address sender, uint256 balance, uint256 needed)",
        "ERC20InvalidSender(address sender)",
        "ERC20InvalidReceiver(address receiver)",
        "ERC20InsufficientAllowance(address spender, uint256 allowance, uint256 needed)",
        "ERC20InvalidApprover(address approver)",
        "ERC20InvalidSpender(address spender)",
    )
)


def normalize(value: Any, abi_type: str) -> Any:
    """Make decoded ABI values friendly: checksummed addresses, tuples of normalized parts."""
    if abi_type == "address" and isinstance(value, str):
        return to_checksum_address(value)
    if abi_type.endswith("]") and isinstance(value, (list, tuple)):
        inner = abi_type[: abi_type.rindex("[")]
        return tuple(normalize(v, inner) for v in value)
    return value


def _input_names(entry: Mapping[str, Any]) -> list[str]:
    return [inp.get("name") or f"arg{i}" for i, inp in enumerate(entry.get("inputs", []))]


@dataclass(frozen=True)
class ErrorSpec:
    name: str
    signature: str
    selector: bytes
    types: tuple[str, ...]
    names: tuple[str, ...]
    contracts: tuple[str, ...]

    def decode(self, payload: bytes) -> dict[str, Any]:
        values = abi_decode(list(self.types), payload)
        return {n: normalize(v, t) for n, t, v in zip(self.names, self.types, values, strict=True)}


@dataclass(frozen=True)
class EventSpec:
    name: str
    signature: str
    topic: bytes
    inputs: tuple[dict[str, Any], ...]
    contracts: tuple[str, ...]


@dataclass(frozen=True)
class DecodedEvent:
    """One log decoded against the registry."""

    name: str
    args: dict[str, Any]
    address: str
    block_number: int
    log_index: int
    tx_hash: str
    contract: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.args[key]


@dataclass
class AbiRegistry:
    """Errors by 4-byte selector and events by topic0, across many ABIs."""

    errors: dict[bytes, ErrorSpec] = field(default_factory=dict)
    events: dict[bytes, EventSpec] = field(default_factory=dict)
    #: contract name by deployed address (lowercase), to name a log's emitter
    addresses: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_abis(cls, abis: Mapping[str, Iterable[Mapping[str, Any]]]) -> AbiRegistry:
        reg = cls()
        for contract, abi in abis.items():
            for entry in abi:
                reg._add(dict(entry), contract)
        for entry in BUILTIN_ERRORS:
            reg._add(entry, None)
        return reg

    def _add(self, entry: dict[str, Any], contract: str | None) -> None:
        kind = entry.get("type")
        if kind == "error":
            sig = abi_to_signature(entry)  # type: ignore[arg-type]
            selector = keccak(text=sig)[:4]
            known = self.errors.get(selector)
            if known is not None:
                if contract and contract not in known.contracts:
                    self.errors[selector] = ErrorSpec(
                        known.name,
                        known.signature,
                        known.selector,
                        known.types,
                        known.names,
                        (*known.contracts, contract),
                    )
                return
            self.errors[selector] = ErrorSpec(
                name=entry["name"],
                signature=sig,
                selector=selector,
                types=tuple(get_abi_input_types(entry)),  # type: ignore[arg-type]
                names=tuple(_input_names(entry)),
                contracts=(contract,) if contract else (),
            )
        elif kind == "event" and not entry.get("anonymous"):
            sig = abi_to_signature(entry)  # type: ignore[arg-type]
            topic = keccak(text=sig)
            known_ev = self.events.get(topic)
            contracts = (contract,) if contract else ()
            if known_ev is not None:
                contracts = tuple(dict.fromkeys((*known_ev.contracts, *contracts)))
            self.events[topic] = EventSpec(
                entry["name"], sig, topic, tuple(entry.get("inputs", [])), contracts
            )

    def register_address(self, address: str, contract: str) -> None:
        self.addresses[address.lower()] = contract

    # ---- errors -------------------------------------------------------------

    def decode_revert(
        self,
        data: bytes,
        *,
        function: str | None = None,
        contract_hint: str | None = None,
        tx_hash: str | None = None,
        receipt: Any = None,
        reason: str | None = None,
    ) -> ContractRevert:
        """The :class:`ContractRevert` for revert ``data`` (never raises)."""
        common: dict[str, Any] = {
            "data": data,
            "function": function,
            "tx_hash": tx_hash,
            "receipt": receipt,
        }

        def undecoded(message: str) -> ContractRevert:
            raw = {"data": "0x" + data.hex()}
            return UndecodedRevert(
                "UndecodedRevert", raw, contract=contract_hint, message=message, **common
            )

        where = f" in {function}" if function else ""
        if len(data) < 4:
            detail = f" ({reason})" if reason else ""
            return undecoded(f"reverted{where} without error data{detail}")
        spec = self.errors.get(data[:4])
        if spec is None:
            return undecoded(
                f"reverted{where} with data 0x{data.hex()} "
                f"whose selector 0x{data[:4].hex()} matches no error in contracts/build "
                "or the OpenZeppelin built-ins"
            )
        try:
            args = spec.decode(data[4:])
        except (DecodingError, ValueError, OverflowError) as exc:
            return undecoded(
                f"reverted with {spec.signature} but its arguments do not decode: {exc}"
            )
        contract = contract_hint if contract_hint in spec.contracts else None
        if contract is None and len(spec.contracts) == 1:
            contract = spec.contracts[0]
        message = None
        if spec.name == "Panic":
            code = args["code"]
            message = (
                f"reverted{f' in {function}' if function else ''}: Panic(0x{code:02x}: "
                f"{PANIC_REASONS.get(code, 'unknown panic code')})"
            )
        return ContractRevert(spec.name, args, contract=contract, message=message, **common)

    # ---- events -------------------------------------------------------------

    def decode_log(self, log: Mapping[str, Any]) -> DecodedEvent | None:
        """Decode one receipt log; None when its topic0 is unknown."""
        topics = [bytes(t) for t in log.get("topics", [])]
        if not topics:
            return None
        spec = self.events.get(topics[0])
        if spec is None:
            return None
        indexed = [i for i in spec.inputs if i.get("indexed")]
        plain = [i for i in spec.inputs if not i.get("indexed")]
        if len(indexed) != len(topics) - 1:
            return None  # same signature, different indexing: not ours
        plain_types = [_input_type(i) for i in plain]
        try:
            plain_values = abi_decode(plain_types, bytes(log.get("data", b"")))
        except (DecodingError, ValueError):
            return None
        args: dict[str, Any] = {}
        plain_iter = iter(zip(plain, plain_types, plain_values, strict=True))
        topic_iter = iter(topics[1:])
        for i, inp in enumerate(spec.inputs):
            name = inp.get("name") or f"arg{i}"
            t = _input_type(inp)
            if inp.get("indexed"):
                raw = next(topic_iter)
                if _is_dynamic(t):
                    args[name] = raw  # the keccak of the value, as the EVM stores it
                else:
                    args[name] = normalize(abi_decode([t], raw)[0], t)
            else:
                _, pt, value = next(plain_iter)
                args[name] = normalize(value, pt)
        address = to_checksum_address(log["address"])
        contract = self.addresses.get(address.lower())
        if contract is None and len(spec.contracts) == 1:
            contract = spec.contracts[0]
        tx_hash = log.get("transactionHash")
        return DecodedEvent(
            name=spec.name,
            args=args,
            address=address,
            block_number=int(log.get("blockNumber") or 0),
            log_index=int(log.get("logIndex") or 0),
            tx_hash=("0x" + bytes(tx_hash).hex()) if tx_hash is not None else "",
            contract=contract,
        )

    def decode_logs(self, logs: Iterable[Mapping[str, Any]]) -> list[DecodedEvent]:
        out = []
        for log in logs:
            ev = self.decode_log(log)
            if ev is not None:
                out.append(ev)
        return out


def _input_type(inp: Mapping[str, Any]) -> str:
    t = str(inp["type"])
    if t.startswith("tuple"):
        comps = ",".join(_input_type(c) for c in inp.get("components", []))
        return f"({comps}){t[5:]}"
    return t


def _is_dynamic(t: str) -> bool:
    return t in ("string", "bytes") or t.endswith("]") or t.startswith("(")


@lru_cache(maxsize=8)
def _registry_for(build_dir: str | None) -> AbiRegistry:
    from pathlib import Path

    from backend.chain.artifacts import all_abis

    return AbiRegistry.from_abis(all_abis(Path(build_dir) if build_dir else None))


def default_registry() -> AbiRegistry:
    """A registry of all artifacts in contracts/build (a fresh copy: addresses are per chain)."""
    base = _registry_for(None)
    return AbiRegistry(errors=dict(base.errors), events=dict(base.events), addresses={})
