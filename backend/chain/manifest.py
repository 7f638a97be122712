"""The deployment manifest: where the contracts of one deployment live.

The manifest (JSON, ``DEPLOYMENT_FILE``) is what every process reads to find the
contracts: chain id, the first deployment block (where the indexer starts),
addresses, deployer, oracles, token, timestamp. :mod:`backend.chain.deploy` writes
it and checks it against a chain; :class:`backend.chain.contracts.Contracts` binds
to its addresses. It is a module of its own so that both can import it without
importing each other.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend.chain.artifacts import CORE_CONTRACTS
from backend.chain.errors import DeploymentError
from backend.telemetry import parse_address

MANIFEST_VERSION = 1


@dataclass
class Deployment:
    """A deployment manifest."""

    chain_id: int
    #: block of the first deployment transaction: where an indexer starts reading events
    block_number: int
    #: contract name → checksummed address
    addresses: dict[str, str]
    deployer: str
    oracles: list[str]
    #: the dev ERC-20's address, if deployed
    token: str | None
    #: timestamp of the deployment's first block (unix seconds)
    timestamp: int
    tx_hashes: dict[str, str] = field(default_factory=dict)
    version: int = MANIFEST_VERSION
    #: hash of block ``block_number`` (0x-hex): a chain reset or another chain at the
    #: same RPC_URL has another block there (absent in manifests written before it)
    block_hash: str | None = None

    @property
    def purchase_orders(self) -> str:
        return self.addresses["PurchaseOrders"]

    @property
    def quality_verification(self) -> str:
        return self.addresses["QualityVerification"]

    @property
    def escrow(self) -> str:
        return self.addresses["Escrow"]

    @property
    def oracle(self) -> str | None:
        return self.oracles[0] if self.oracles else None

    def to_json(self) -> str:
        body = asdict(self)
        body["deployed_at"] = datetime.fromtimestamp(self.timestamp, UTC).isoformat()
        return json.dumps(body, indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, body: dict[str, Any], source: str = "manifest") -> Deployment:
        try:
            version = int(body.get("version", MANIFEST_VERSION))
            if version != MANIFEST_VERSION:
                raise DeploymentError(
                    f"{source}: manifest version {version} is not {MANIFEST_VERSION}; redeploy "
                    "with `trustship deploy`"
                )
            addresses = {
                str(k): parse_address(v, f"addresses.{k}")
                for k, v in dict(body["addresses"]).items()
            }
            missing = [n for n in CORE_CONTRACTS if n not in addresses]
            if missing:
                raise DeploymentError(f"{source}: no address for {', '.join(missing)}")
            return cls(
                chain_id=int(body["chain_id"]),
                block_number=int(body["block_number"]),
                addresses=addresses,
                deployer=parse_address(body["deployer"], "deployer"),
                oracles=[parse_address(o, "oracles[]") for o in body.get("oracles", [])],
                token=parse_address(body["token"], "token") if body.get("token") else None,
                timestamp=int(body["timestamp"]),
                tx_hashes=dict(body.get("tx_hashes", {})),
                version=version,
                block_hash=str(body["block_hash"]) if body.get("block_hash") else None,
            )
        except DeploymentError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise DeploymentError(
                f"{source} is not a valid deployment manifest ({type(exc).__name__}: {exc}); "
                "redeploy with `trustship deploy`"
            ) from None

    def write(self, path: Path) -> None:
        """Write atomically (temp file + rename), creating the directory."""
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".deployment-", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(self.to_json())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def read(cls, path: Path) -> Deployment:
        """Parse a manifest file (no chain checks: see :func:`load_deployment`)."""
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise DeploymentError(
                f"no deployment manifest at {path}: run `trustship deploy` (or set DEPLOYMENT_FILE)"
            ) from None
        except OSError as exc:
            raise DeploymentError(f"cannot read deployment manifest {path}: {exc}") from None
        try:
            body = json.loads(text)
        except ValueError as exc:
            raise DeploymentError(
                f"{path} is not JSON ({exc}); redeploy with `trustship deploy`"
            ) from None
        if not isinstance(body, dict):
            raise DeploymentError(f"{path} is not a JSON object; redeploy with `trustship deploy`")
        return cls.from_dict(body, source=str(path))
