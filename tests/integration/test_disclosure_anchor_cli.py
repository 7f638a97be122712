"""``trustship disclosures verify --anchor-tx``: the disclosure log checked against a head
read back from a real chain (anvil), and every way a transaction can fail to be an anchor.

Anyone can send themselves the anchoring bytes; only a transaction from an oracle of the
deployment is an anchor, so an operator who rewrote the log cannot vouch for the new head
with a key of its own."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, update
from typer.testing import CliRunner

from backend.chain.connection import Chain, connect
from backend.chain.deploy import deploy_from_settings
from backend.core.settings import Settings
from backend.sharing import anchor, disclosures
from backend.sharing.disclosures import Head
from backend.sharing.policy import DisclosureNote, Viewer
from backend.store import session_factory
from backend.store.models import DisclosureRow
from testkit.databases import migrated_engine
from testkit.servers import Server, start_anvil
from trustship.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

VIEWER = Viewer("v", "0x" + "a" * 40, frozenset({"auditor"}), "US")


@pytest.fixture(scope="module")
def anvil() -> Iterator[Server]:
    server = start_anvil()
    yield server
    server.stop()


@pytest.fixture
def env(anvil: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    values = {
        "RPC_URL": anvil.extra["url"],
        "DEPLOYMENT_FILE": str(tmp_path / "deployment.json"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'trustship.db'}",
        "DEV_MODE": "true",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    deploy_from_settings(settings)
    return settings


def _send(chain: Chain, who: str, data: bytes, *, to_self: bool = True) -> str:
    sender = getattr(chain.accounts, who)
    to = sender.address if to_self else chain.accounts.buyer.address
    result = chain.sender(sender).transact(to, data, function="anchorDisclosures")
    return str(result.tx_hash)


def _log(engine: Engine, entries: int, note: DisclosureNote) -> Head:
    """Append ``entries`` releases of ``note`` to the log; its head after them."""
    with session_factory(engine)() as s:
        for i in range(entries):
            disclosures.append(s, VIEWER, [note], "r", i)
        return disclosures.head(s)


def _verify(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(app, ["disclosures", "verify", *args])
    return r.exit_code, r.output


def test_a_log_is_checked_against_the_oracles_anchor_on_chain(
    env: Settings, tmp_path: Path
) -> None:
    with migrated_engine("sqlite", tmp_path) as engine:
        head = _log(engine, 3, DisclosureNote(1, 5, "medium", "EU"))
        chain = connect(env)
        oracle = chain.accounts.oracle.address
        tx = _send(chain, "oracle", anchor.payload(head))

        code, out = _verify("--anchor-tx", tx, "--json")
        assert code == 0, out
        result = json.loads(out)
        assert result["ok"] and result["entries"] == 3
        assert result["anchor"]["seq"] == 3 and result["anchor"]["hash"] == "0x" + head.hash.hex()
        assert oracle in result["anchor"]["by"]
        receipt = chain.w3.eth.get_transaction_receipt(tx)  # type: ignore[arg-type]
        assert result["anchor"]["block"] == receipt["blockNumber"]
        code, out = _verify("--anchor-tx", tx)
        assert code == 0 and f"anchored by {oracle}" in out, out

        # the same bytes from any other account vouch for nothing
        forged = _send(chain, "stranger", anchor.payload(head))
        code, out = _verify("--anchor-tx", forged)
        assert code == 2 and "not an oracle of the deployment" in out, out
        # the oracle's transactions that are no anchor: to someone else, other bytes
        code, out = _verify(
            "--anchor-tx", _send(chain, "oracle", anchor.payload(head), to_self=False)
        )
        assert code == 2 and "not a disclosure-log anchor" in out, out
        code, out = _verify("--anchor-tx", _send(chain, "oracle", b"\x01\x02"))
        assert code == 2 and "not a disclosure-log anchor" in out, out
        code, out = _verify("--anchor-tx", "0x" + "ab" * 32)
        assert code == 2 and "no such mined transaction" in out, out

        # an entry rewritten after the anchor: named, even though the chain re-hashes
        with session_factory(engine).begin() as s:
            s.execute(update(DisclosureRow).where(DisclosureRow.seq == 2).values(grant_id=6))
        code, out = _verify("--anchor-tx", tx)
        assert code == 1 and "BROKEN at entry 2" in out, out


def test_a_rewritten_log_cannot_be_vouched_for_by_a_later_self_anchor(
    env: Settings, tmp_path: Path
) -> None:
    """Rewrite the log whole (every hash recomputed: the chain verifies on its own) and
    anchor the new head from a key that is not the oracle's: refused; anchored by the
    oracle before the rewrite: the rewrite is caught."""
    with migrated_engine("sqlite", tmp_path) as engine:
        honest = _log(engine, 2, DisclosureNote(1, 5, "medium", "EU"))
        chain = connect(env)
        tx = _send(chain, "oracle", anchor.payload(honest))
        with session_factory(engine).begin() as s:
            s.query(DisclosureRow).delete()
        rewritten = _log(engine, 2, DisclosureNote(2, 7, "medium", "EU"))
        assert rewritten != honest
        assert _verify()[0] == 0  # the rewritten chain is consistent in itself
        code, out = _verify("--anchor-tx", _send(chain, "stranger", anchor.payload(rewritten)))
        assert code == 2 and "not an oracle" in out, out
        code, out = _verify("--anchor-tx", tx)
        assert code == 1 and "differs from the anchored head" in out, out
