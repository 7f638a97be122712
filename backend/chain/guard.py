"""Is the chain still the one the deployment manifest and the database describe?

Two different things can make the indexed state wrong, and they need opposite
answers (docs/chain.md, "A reset chain and a reorganised one"):

* **A reset**: the node lost its state (anvil restarted without it) or ``RPC_URL``
  now names another chain with the same id. The contracts' code is gone from
  their addresses, or the deployment's block has another hash. Nothing indexed
  describes this chain any more and every transaction would go to the void (writes
  failed with "insufficient funds", commitments retried for ever). The guard
  records the reset for good: ``/health`` reports ``error`` with the reason, the
  outbox and the API stop sending, and the operator must redeploy and start on a
  fresh database.
* **A reorganisation**: the last few blocks were replaced. The deployment is intact;
  the indexer rewinds to the newest block it stored whose hash the chain still has
  and reads forward again (backend/indexer/chain.py).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from backend.chain.artifacts import STABLECOIN
from backend.chain.errors import ChainError

if TYPE_CHECKING:
    from backend.chain.connection import Chain
    from backend.chain.manifest import Deployment

log = logging.getLogger(__name__)

Status = Literal["ok", "reset"]


class ChainReset(ChainError):
    """Raised when the chain no longer holds the deployment the database describes
    (reset node, or another chain at the same RPC_URL): nothing may be sent to it."""


@dataclass(frozen=True, slots=True)
class ChainState:
    status: Status
    detail: str


class ChainGuard:
    """Checks the deployment is still on the chain; a reset, once seen, stays."""

    def __init__(self, chain: Chain, deployment: Deployment, *, check_secs: float = 10.0) -> None:
        self.chain = chain
        self.deployment = deployment
        self.check_secs = check_secs
        self._lock = threading.Lock()
        self._reset: str | None = None
        self._checked_at = -1e18

    @property
    def state(self) -> ChainState:
        reason = self._reset
        if reason is not None:
            return ChainState("reset", reason)
        return ChainState("ok", "the deployment is on the chain")

    @property
    def is_reset(self) -> bool:
        return self._reset is not None

    def require_usable(self) -> None:
        """Raise :class:`ChainReset` when a reset was seen."""
        reason = self._reset
        if reason is not None:
            raise ChainReset(reason)

    def declare_reset(self, reason: str) -> None:
        with self._lock:
            if self._reset is None:
                self._reset = reason
                log.error("CHAIN RESET: %s; nothing more is sent to this chain", reason)

    def check(self, *, force: bool = False) -> ChainState:
        """Look for the contracts' code and the deployment block's hash (at most once per
        ``check_secs`` unless ``force``); raises TransportError when the node is down."""
        now = time.monotonic()
        if self._reset is not None or (not force and now - self._checked_at < self.check_secs):
            return self.state
        self._checked_at = now
        d = self.deployment
        contracts = dict(d.addresses)
        if d.token:
            contracts.setdefault(STABLECOIN, d.token)
        empty = [
            f"{name} at {addr}" for name, addr in contracts.items() if not self.chain.code_at(addr)
        ]
        if empty:
            self.declare_reset(
                f"no contract code at {', '.join(empty)}: the node at "
                f"{self.chain.rpc_url or 'eth-tester'} was reset or is another chain; redeploy "
                "(`trustship deploy`) and start on a fresh database"
            )
        elif d.block_hash is not None:
            found = self.chain.block_hash(d.block_number)
            if found != d.block_hash:
                self.declare_reset(
                    f"block {d.block_number} (the deployment's) is {found or 'missing'}, not "
                    f"{d.block_hash}: the chain was reset or replaced; redeploy (`trustship "
                    "deploy`) and start on a fresh database"
                )
        return self.state
