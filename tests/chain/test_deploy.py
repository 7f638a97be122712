"""Artifacts, deployment and the manifest: round trip and refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from backend.chain.artifacts import load_artifact
from backend.chain.connection import Chain, connect
from backend.chain.deploy import Deployment, deploy_all, load_deployment, verify_deployment
from backend.chain.errors import DeploymentError
from backend.chain.testing import Stack
from backend.core.errors import ArtifactError
from testkit.settings import dev_settings

pytestmark = pytest.mark.timeout(120)


# ---- artifacts ------------------------------------------------------------------


def test_missing_artifact_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"missing contract artifact .*trustship compile"):
        load_artifact("Escrow", tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read contract artifact"),
        ('{"bytecode": "0x00"}', "no `abi` list"),
        ('{"abi": []}', "no `bytecode`"),
        ('{"abi": [], "bytecode": "0x__$lib$__"}', "not valid hex"),
    ],
)
def test_broken_artifact_is_refused(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "Broken.json").write_text(content)
    with pytest.raises(ArtifactError, match=message):
        load_artifact("Broken", tmp_path)


def test_artifact_accepts_solc_standard_json_bytecode_shape(tmp_path: Path) -> None:
    (tmp_path / "X.json").write_text(json.dumps({"abi": [], "bytecode": {"object": "6001"}}))
    assert load_artifact("X", tmp_path).bytecode == bytes.fromhex("6001")


# ---- deployment -------------------------------------------------------------------


def test_deployment_records_what_an_indexer_and_clients_need(deployment: Stack) -> None:
    d = deployment.deployment
    chain = deployment.chain
    assert d.chain_id == chain.chain_id
    assert set(d.addresses) == {"Escrow", "QualityVerification", "PurchaseOrders", "TestStablecoin"}
    assert d.deployer == chain.accounts.admin.address
    assert d.oracles == [chain.accounts.oracle.address]
    # the start block holds the first deployment transaction
    first = chain.w3.eth.get_transaction(d.tx_hashes["Escrow"])  # type: ignore[arg-type]
    assert first["blockNumber"] == d.block_number
    assert chain.w3.eth.get_block(d.block_number)["timestamp"] == d.timestamp
    for name, addr in d.addresses.items():
        assert chain.code_at(addr), name


def test_manifest_round_trip(deployment: Stack, tmp_path: Path) -> None:
    path = tmp_path / "nested" / "deployment.json"
    deployment.deployment.write(path)
    body = json.loads(path.read_text())
    assert body["chain_id"] == deployment.chain.chain_id
    assert "deployed_at" in body
    loaded = load_deployment(path, deployment.chain)
    assert loaded == deployment.deployment
    assert not list(path.parent.glob(".deployment-*"))  # no temp file left behind


def test_manifest_for_another_chain_is_refused(deployment: Stack, tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    replace(deployment.deployment, chain_id=5).write(path)
    with pytest.raises(DeploymentError, match=r"chain id 5 .* chain id 131277322940537"):
        load_deployment(path, deployment.chain)


def test_manifest_pointing_at_no_code_is_refused(deployment: Stack, tmp_path: Path) -> None:
    stranger = deployment.accounts.stranger.address
    broken = replace(
        deployment.deployment,
        addresses={**deployment.deployment.addresses, "PurchaseOrders": stranger},
    )
    with pytest.raises(DeploymentError, match=f"no contract code at PurchaseOrders at {stranger}"):
        verify_deployment(broken, deployment.chain)


def test_manifest_from_a_previous_chain_is_refused() -> None:
    # Same chain id (eth-tester), but a fresh chain: nothing deployed at those addresses.
    first = connect(dev_settings())
    d = deploy_all(first)
    second = connect(dev_settings())
    with pytest.raises(DeploymentError, match="was the node restarted or reset"):
        verify_deployment(d, second)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no deployment manifest at .*trustship deploy"),
        ("[1, 2]", "not a JSON object"),
        ("{", "is not JSON"),
        ('{"chain_id": 1}', "not a valid deployment manifest"),
        ('{"version": 99}', "manifest version 99"),
    ],
)
def test_unreadable_manifest_is_refused(
    tmp_path: Path, chain: Chain, content: str | None, message: str
) -> None:
    path = tmp_path / "deployment.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(DeploymentError, match=message):
        load_deployment(path, chain)


def test_manifest_missing_a_core_contract_is_refused(deployment: Stack) -> None:
    body = json.loads(deployment.deployment.to_json())
    del body["addresses"]["Escrow"]
    with pytest.raises(DeploymentError, match="no address for Escrow"):
        Deployment.from_dict(body)


def test_deploy_from_settings_on_eth_tester_writes_no_manifest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from backend.chain.deploy import deploy_from_settings

    target = tmp_path / "deployment.json"
    settings = dev_settings()
    settings.DEPLOYMENT_FILE = target
    d = deploy_from_settings(settings)
    out = capsys.readouterr().out
    assert d.addresses["PurchaseOrders"] in out
    assert "no manifest was written" in out
    assert not target.exists()


def test_manifest_with_a_mistyped_address_is_refused_by_name(deployment: Stack) -> None:
    body = json.loads(deployment.deployment.to_json())
    escrow = body["addresses"]["Escrow"]
    i = next(i for i, c in enumerate(escrow) if i > 1 and c.isalpha())
    body["addresses"]["Escrow"] = escrow[:i] + escrow[i].swapcase() + escrow[i + 1 :]
    with pytest.raises(DeploymentError, match="addresses.Escrow .* wrong EIP-55 checksum"):
        Deployment.from_dict(body)
    body["addresses"]["Escrow"] = escrow.lower()  # no checksum at all is fine
    assert Deployment.from_dict(body).addresses["Escrow"] == escrow
