"""Deploy and wire the contracts; write and check the deployment manifest.

Order (docs/contracts.md): ``Escrow(po)``, ``QualityVerification(po)``,
``PurchaseOrders(escrow, quality)``, where ``po`` is PurchaseOrders' address predicted
from the deployer's nonce; no admin, no wiring afterwards. The oracles are recorded in
the manifest as the committers whose fleet logs readers trust. In dev mode the test
ERC-20 (``TestStablecoin``) is deployed too.

The manifest (JSON, ``DEPLOYMENT_FILE``; the type is in :mod:`backend.chain.manifest`)
is what every other process reads to find the contracts. Loading it checks the
chain id, that code exists at every address and the deployment block's hash.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from eth_abi import encode as abi_encode
from eth_account.signers.local import LocalAccount
from eth_utils import get_abi_input_types, keccak, to_checksum_address

from backend.chain.artifacts import CORE_CONTRACTS, STABLECOIN, Artifact, load_artifact
from backend.chain.connection import Chain, connect
from backend.chain.contracts import Contracts
from backend.chain.errors import ChainError, DeploymentError
from backend.chain.manifest import MANIFEST_VERSION, Deployment
from backend.core.settings import Settings

logger = logging.getLogger(__name__)

# Deployment and MANIFEST_VERSION live in backend.chain.manifest (so that contracts.py,
# which binds to a manifest, need not import this module); re-exported here.
__all__ = [
    "MANIFEST_VERSION",
    "Deployment",
    "deploy_all",
    "deploy_contract",
    "deploy_from_settings",
    "deployed_contracts",
    "load_deployment",
    "verify_deployment",
]


def verify_deployment(
    deployment: Deployment, chain: Chain, *, source: str = "the manifest"
) -> None:
    """Check that ``deployment`` belongs to ``chain``: same chain id, code at every address."""
    if deployment.chain_id != chain.chain_id:
        raise DeploymentError(
            f"{source} is for chain id {deployment.chain_id} but the connected chain "
            f"({chain.rpc_url or 'eth-tester'}) has chain id {chain.chain_id}: point RPC_URL at "
            "the right chain or redeploy with `trustship deploy`"
        )
    contracts = dict(deployment.addresses)
    if deployment.token:
        contracts.setdefault(STABLECOIN, deployment.token)
    empty = [f"{name} at {addr}" for name, addr in contracts.items() if not chain.code_at(addr)]
    if empty:
        raise DeploymentError(
            f"{source}: no contract code at {', '.join(empty)} on chain {chain.chain_id} "
            "(was the node restarted or reset?): redeploy with `trustship deploy`"
        )
    if deployment.block_hash is not None:
        found = chain.block_hash(deployment.block_number)
        if found != deployment.block_hash:
            raise DeploymentError(
                f"{source}: block {deployment.block_number} of chain {chain.chain_id} is "
                f"{found or 'missing'}, not the deployment's {deployment.block_hash} (the node "
                "was reset, or RPC_URL names another chain with the same id): redeploy with "
                "`trustship deploy`"
            )


def load_deployment(path: Path, chain: Chain) -> Deployment:
    """Read a manifest and check it against the connected chain."""
    deployment = Deployment.read(path)
    verify_deployment(deployment, chain, source=str(path))
    return deployment


def _constructor_args(artifact: Artifact, args: Sequence[Any]) -> bytes:
    inputs = artifact.constructor_inputs
    if len(inputs) != len(args):
        raise DeploymentError(
            f"{artifact.name}'s constructor takes {len(inputs)} arguments, deploy passes "
            f"{len(args)}: are contracts/build and backend/chain/deploy.py out of step?"
        )
    if not inputs:
        return b""
    types = get_abi_input_types({"type": "constructor", "inputs": inputs})  # type: ignore[typeddict-item]
    return abi_encode(types, list(args))


def _create_address(deployer: str, nonce: int) -> str:
    """The address a CREATE from ``deployer`` with ``nonce`` gets: keccak(rlp([sender, nonce]))."""
    sender = b"\x94" + bytes.fromhex(deployer[2:])  # a 20-byte string
    if nonce == 0:
        encoded_nonce = b"\x80"
    elif nonce < 0x80:
        encoded_nonce = bytes([nonce])
    else:
        raw = nonce.to_bytes((nonce.bit_length() + 7) // 8, "big")
        encoded_nonce = bytes([0x80 + len(raw)]) + raw
    payload = sender + encoded_nonce
    return str(to_checksum_address(keccak(bytes([0xC0 + len(payload)]) + payload)[12:]))


def deploy_contract(
    chain: Chain, artifact: Artifact, args: Sequence[Any], *, by: LocalAccount
) -> tuple[str, str, int]:
    """Deploy one contract; returns (address, tx hash, block number)."""
    try:
        result = chain.sender(by).deploy(
            artifact.bytecode, _constructor_args(artifact, args), name=artifact.name
        )
    except ChainError as exc:
        raise DeploymentError(f"deploying {artifact.name} failed: {exc}") from exc
    address = result.contract_address
    assert address is not None  # deploy() checked it
    chain.registry.register_address(address, artifact.name)
    logger.info("deployed %s at %s (gas %d)", artifact.name, address, result.gas_used)
    return address, result.tx_hash, result.block_number


def deploy_all(
    chain: Chain,
    admin: LocalAccount | None = None,
    oracle_addresses: Sequence[str] | None = None,
    *,
    stablecoin: bool | None = None,
    write_to: Path | None = None,
    progress: Callable[[str], None] | None = None,
    open_fleet_logs: bool = True,
) -> Deployment:
    """Deploy the contracts (they need no wiring and have no admin).

    ``admin`` deploys (default: ``chain.accounts.admin``); ``oracle_addresses`` are the
    fleet-log committers recorded in the manifest (default: ``chain.accounts.oracle``);
    ``stablecoin`` deploys the dev ERC-20 (default: when the chain has dev accounts).
    With ``open_fleet_logs`` the deployer then opens each oracle's fleet log ahead
    (``openFleetLog``, about 750,000 gas each, docs/gas.md), so that none of its roots
    pays for a fresh storage slot. The manifest is written to ``write_to`` when given.
    """
    admin = admin or chain.accounts.admin
    oracles = [
        str(to_checksum_address(a)) for a in (oracle_addresses or [chain.accounts.oracle.address])
    ]
    if stablecoin is None:
        stablecoin = chain.accounts.buyer is not None
    note = progress or (lambda _msg: None)
    artifacts = {name: load_artifact(name) for name in CORE_CONTRACTS}
    token_artifact = load_artifact(STABLECOIN) if stablecoin else None

    first_block: int | None = None
    addresses: dict[str, str] = {}
    hashes: dict[str, str] = {}

    def _deploy(name: str, artifact: Artifact, args: Sequence[Any]) -> str:
        nonlocal first_block
        note(f"deploying {name}")
        addr, tx_hash, block = deploy_contract(chain, artifact, args, by=admin)
        first_block = block if first_block is None else min(first_block, block)
        addresses[name] = addr
        hashes[name] = tx_hash
        return addr

    # No post-deploy wiring: Escrow and QualityVerification take PurchaseOrders' address,
    # known in advance from the deployer's nonce (it is deployed third), and PurchaseOrders'
    # constructor checks that both name it.
    nonce = chain.sender(admin).next_nonce
    po_predicted = _create_address(admin.address, nonce + 2)
    escrow_addr = _deploy("Escrow", artifacts["Escrow"], [po_predicted])
    quality_addr = _deploy("QualityVerification", artifacts["QualityVerification"], [po_predicted])
    po_addr = _deploy("PurchaseOrders", artifacts["PurchaseOrders"], [escrow_addr, quality_addr])
    if po_addr != po_predicted:
        raise DeploymentError(
            f"PurchaseOrders landed at {po_addr}, expected {po_predicted}: "
            "another transaction from the deployer interleaved"
        )
    token_addr = _deploy(STABLECOIN, token_artifact, []) if token_artifact is not None else None

    assert first_block is not None
    block = chain.w3.eth.get_block(first_block)
    deployment = Deployment(
        chain_id=chain.chain_id,
        block_number=first_block,
        addresses={**addresses},
        deployer=admin.address,
        oracles=oracles,
        token=token_addr,
        timestamp=int(block["timestamp"]),
        tx_hashes=hashes,
        block_hash="0x" + bytes(block["hash"]).hex(),
    )
    if open_fleet_logs:
        quality = deployed_contracts(chain, deployment).quality
        for oracle in oracles:
            note(f"opening the fleet log of {oracle}")
            quality.open_fleet_log(oracle, by=admin)
    if write_to is not None:
        deployment.write(write_to)
        logger.info("deployment manifest written to %s", write_to)
    return deployment


def deployed_contracts(chain: Chain, deployment: Deployment) -> Contracts:
    """The wrappers of a deployment's contracts on ``chain``."""
    return Contracts.from_deployment(chain, deployment)


def deploy_from_settings(
    settings: Settings | None = None, *, keep_existing: bool = False
) -> Deployment:
    """`trustship deploy`: deploy to the configured chain and write DEPLOYMENT_FILE.

    With ``RPC_URL`` unset the chain is an in-process eth-tester that ends with the
    command: the contracts are deployed (a smoke test of the artifacts) but no
    manifest is written, since it would point at nothing afterwards.

    ``keep_existing`` (``--keep-existing``): when DEPLOYMENT_FILE already names
    contracts on this chain (:func:`load_deployment` accepts it), keep them and
    deploy nothing. A one-shot deployer that runs on every ``docker compose up``
    and ``run`` needs this: a new set of contracts each time would leave the
    running server, its database and the manifest pointing at different ones.
    """
    from rich.console import Console
    from rich.table import Table

    settings = settings or Settings()
    console = Console()
    chain = connect(settings)
    where = chain.rpc_url or "in-process eth-tester"
    deployment: Deployment | None = None
    if keep_existing and chain.kind != "eth-tester" and settings.DEPLOYMENT_FILE.exists():
        try:
            deployment = load_deployment(settings.DEPLOYMENT_FILE, chain)
        except DeploymentError as exc:
            console.print(f"not keeping {settings.DEPLOYMENT_FILE}: {exc}")
    if deployment is not None:
        console.print(
            f"contracts of {settings.DEPLOYMENT_FILE} are deployed on chain "
            f"{deployment.chain_id} ({where}): kept (start block {deployment.block_number})"
        )
        return deployment
    with console.status(f"deploying to {where} (chain id {chain.chain_id})") as status:
        deployment = deploy_all(chain, progress=lambda msg: status.update(msg))
    table = Table(title=f"TrustShip contracts on chain {deployment.chain_id} ({where})")
    table.add_column("contract")
    table.add_column("address")
    for name, addr in deployment.addresses.items():
        table.add_row(name, addr)
    table.add_row("deployer / admin", deployment.deployer)
    for oracle in deployment.oracles:
        table.add_row("oracle (fleet-log committer)", oracle)
    table.add_row("start block", str(deployment.block_number))
    console.print(table)
    if chain.kind == "eth-tester":
        console.print(
            "[yellow]RPC_URL is unset: this was an in-process eth-tester chain that ends with this "
            "command, so no manifest was written. Set RPC_URL (e.g. http://127.0.0.1:8545 for "
            "anvil) to deploy for real.[/yellow]"
        )
    else:
        deployment.write(settings.DEPLOYMENT_FILE)
        console.print(f"manifest written to [bold]{settings.DEPLOYMENT_FILE}[/bold]")
    return deployment
