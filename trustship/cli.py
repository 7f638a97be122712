"""`trustship` — one command line for every part (DESIGN.md §9).

Each command imports its implementation lazily, so `trustship --help` is fast
and a part's dependencies load only when that part runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

if TYPE_CHECKING:
    from backend.core.settings import Settings
    from backend.sharing.disclosures import Head

app = typer.Typer(
    help="TrustShip: purchase orders that settle themselves from signed IoT telemetry.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _fail(exc: Exception) -> NoReturn:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@contextmanager
def _failing(*also: type[Exception]) -> Iterator[None]:
    """A refusal inside the block (a TrustShipError, or one of ``also``) ends the command
    as :func:`_fail` does: one `error:` line and exit code 2, no traceback."""
    from backend.core.errors import TrustShipError

    refusals: tuple[type[Exception], ...] = (TrustShipError, *also)
    try:
        yield
    except refusals as exc:
        _fail(exc)


@app.command()
def compile(
    check: Annotated[
        bool, typer.Option("--check", help="Exit 1 if contracts/build differs from the sources.")
    ] = False,
) -> None:
    """Recompile the Solidity contracts into contracts/build."""
    from backend.chain.compiler import main as compile_main

    with _failing():
        code = compile_main(check=check)
    raise typer.Exit(code)


@app.command()
def deploy(
    keep_existing: Annotated[
        bool,
        typer.Option(
            "--keep-existing",
            help="Keep the contracts DEPLOYMENT_FILE names if they are on this chain "
            "(deploy only when there are none): for a deployer that runs on every start.",
        ),
    ] = False,
) -> None:
    """Deploy the contracts to the configured chain and write the deployment manifest."""
    from backend.chain.deploy import deploy_from_settings

    with _failing():
        deploy_from_settings(keep_existing=keep_existing)


@app.command()
def demo(
    scenario: Annotated[
        str, typer.Option(help="Scenario name in scenarios/ or a path to a YAML file.")
    ] = "cold_chain_breach",
    report: Annotated[
        Path, typer.Option(help="Where to write the report (HTML with the telemetry plot).")
    ] = Path("reports/demo.html"),
) -> None:
    """Run one shipment end to end on the embedded stack and show how it settles."""
    from trustship.demo import run_demo

    with _failing():
        code = run_demo(scenario=scenario, report=report)
    raise typer.Exit(code)


@app.command()
def simulate(
    scenario: Annotated[Path, typer.Option(help="Scenario YAML file.")],
    deployment: Annotated[
        Path | None,
        typer.Option(
            help="Deployment manifest (chain id, contract addresses); default DEPLOYMENT_FILE."
        ),
    ] = None,
    order_id: Annotated[
        list[str] | None,
        typer.Option(
            "--order-id",
            help="Map a scenario order to its on-chain id, NAME=ID (repeatable).",
        ),
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Time compression factor (overrides the scenario).")
    ] = None,
    t0: Annotated[
        int | None, typer.Option(help="Scenario start, unix seconds (default: now).")
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Print the timeline (arrival tick, excursions, predicted settlement); publish "
            "nothing. Exit 1 if the prediction differs from the scenario's expectation.",
        ),
    ] = False,
    keep_until_stored: Annotated[
        bool,
        typer.Option(
            "--keep-until-stored",
            help="Devices keep each reading until the oracle's receipt says it is stored and "
            "resend the rest (survives a broker crash); exit 1 if some are never confirmed "
            '(docs/simulator.md, "Retention").',
        ),
    ] = False,
) -> None:
    """Publish a scenario's sensor fleet over MQTT (MQTT_URL)."""
    from iot_simulator.cli import simulate as run_simulate

    raise typer.Exit(
        run_simulate(
            scenario=scenario,
            deployment=deployment,
            order_ids=order_id or [],
            speed=speed,
            dry_run=dry_run,
            t0=t0,
            keep_until_stored=keep_until_stored,
        )
    )


@app.command()
def serve() -> None:
    """Run the REST API, the oracle and the chain indexer against the configured stack."""
    from backend.serve import serve as run_serve

    with _failing():  # a refused configuration, an unreachable chain ...
        run_serve()


@app.command()
def watch(
    order: Annotated[list[int], typer.Option(help="An order to watch (repeatable).")],
    rpc_url: Annotated[str, typer.Option(help="Your own chain endpoint (http://...).")],
    deployment: Annotated[
        Path,
        typer.Option(
            help="GET /deployment's answer or a deployment manifest, saved to a file "
            "(PurchaseOrders' address; the rest is read from the chain)."
        ),
    ],
    mqtt_url: Annotated[str, typer.Option(help="The broker, mqtt://host:port or mqtts://.")],
    key_file: Annotated[
        Path | None, typer.Option(help="A file holding your chain key (0x-hex).")
    ] = None,
    private_key: Annotated[
        str | None, typer.Option(help="Your chain key (prefer --key-file).")
    ] = None,
    credentials: Annotated[
        list[Path] | None,
        typer.Option(help="The API's POST /account/mqtt-credentials answer (one per order)."),
    ] = None,
    mqtt_username: Annotated[str | None, typer.Option(help="A broker login (all orders).")] = None,
    mqtt_password: Annotated[str | None, typer.Option(help="Its password.")] = None,
    db: Annotated[Path, typer.Option(help="The watcher's own SQLite record.")] = Path(
        "watcher.sqlite"
    ),
    grace_secs: Annotated[
        float, typer.Option(help="How long a breach waits for the operator's proof.")
    ] = 300.0,
    serve: Annotated[
        int | None, typer.Option(help="Serve the record read-only on this port.")
    ] = None,
    serve_host: Annotated[str, typer.Option(help="Address to serve on.")] = "127.0.0.1",
) -> None:
    """Watch your orders' telemetry yourself and prove a breach the operator does not
    (docs/watcher.md)."""
    from backend.core.errors import TrustShipError
    from backend.core.logging import configure_logging
    from backend.core.settings import get_settings
    from backend.watcher.run import WatchOptions
    from backend.watcher.run import watch as run_watch

    configure_logging(get_settings().LOG_LEVEL)
    if (key_file is None) == (private_key is None):
        _fail(ValueError("pass exactly one of --key-file and --private-key"))
    try:
        key = key_file.read_text().strip() if key_file is not None else str(private_key)
        run_watch(
            WatchOptions(
                order_ids=order,
                rpc_url=rpc_url,
                deployment_file=deployment,
                private_key=key,
                db=db,
                mqtt_url=mqtt_url,
                credentials=credentials or [],
                username=mqtt_username,
                password=mqtt_password,
                grace_secs=grace_secs,
                serve_port=serve,
                serve_host=serve_host,
            )
        )
    except (TrustShipError, OSError) as exc:
        _fail(exc)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command()
def certify(
    chain_id: Annotated[int, typer.Option(help="The chain id (GET /deployment: chain_id).")],
    contract: Annotated[
        str,
        typer.Option(help="QualityVerification's address (GET /deployment: contracts)."),
    ],
    order: Annotated[int, typer.Option(help="The order the device travels with.")],
    device: Annotated[list[str], typer.Option(help="A device address (repeatable).")],
    issuer_key: Annotated[
        str | None,
        typer.Option(
            envvar="ISSUER_KEY",
            help="The issuer's private key (0x-hex). Default: the dev carrier "
            "(`trustship dev-issuer` prints its address).",
        ),
    ] = None,
    valid_from: Annotated[int, typer.Option(help="Unix seconds.")] = 0,
    valid_until: Annotated[int, typer.Option(help="Unix seconds.")] = 2**40 - 1,
) -> None:
    """Sign device certificates as an issuer: the JSON list POST /orders/{id}/ship takes."""
    import json

    from backend.chain.testing import certify as sign
    from backend.chain.testing import issuer_key as dev_issuer_key
    from backend.telemetry import Domain

    key = issuer_key or dev_issuer_key(1)
    domain = Domain(chain_id=chain_id, verifying_contract=contract)
    window = {"valid_from": valid_from, "valid_until": valid_until}
    out = [sign(domain, order, d, key, **window).as_json() for d in device]
    typer.echo(json.dumps(out))


@app.command()
def dev_issuer() -> None:
    """Print the dev carrier's address (the issuer `trustship certify` signs as by default)."""
    from backend.chain.testing import issuer

    typer.echo(issuer(1))


@app.command()
def replay(
    files: Annotated[list[Path], typer.Argument(help="Scenario YAML files.")],
    json_out: Annotated[
        bool, typer.Option("--json", help="Print one machine-readable summary.")
    ] = False,
    speed: Annotated[
        str | None,
        typer.Option(help="Time compression factor, or 'max' (default: each scenario's own)."),
    ] = None,
) -> None:
    """Run scenarios end to end and check each expected settlement (exit 1 on a mismatch)."""
    from trustship.replay import parse_speed, run_replay

    with _failing(ValueError):
        code = run_replay(files, as_json=json_out, speed=parse_speed(speed))
    raise typer.Exit(code)


@app.command()
def scorecard(
    address: Annotated[
        str | None, typer.Argument(help="A supplier's address (default: every supplier, ranked).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """Supplier scorecards from the indexed chain events (docs/scorecards.md): the API at
    TRUSTSHIP_API_URL, else the configured database. Exit 1 for an unknown supplier."""
    from trustship.scorecard import run_scorecard

    with _failing():
        code = run_scorecard(address, as_json=json_out)
    raise typer.Exit(code)


@app.command()
def export(
    order_id: Annotated[int, typer.Argument(help="The on-chain order id.", min=1)],
    fmt: Annotated[str, typer.Option("--format", help="The exchange format: epcis.")] = "epcis",
    out: Annotated[
        Path | None, typer.Option("--out", help="Write to this file (default: stdout).")
    ] = None,
) -> None:
    """An order as a GS1 EPCIS 2.0 document (docs/epcis.md), checked against GS1's schema:
    from the API at TRUSTSHIP_API_URL, else the configured database. Exit 1 for an unknown
    order."""
    from trustship.export import run_export

    with _failing():
        code = run_export(order_id, fmt=fmt, out=out)
    raise typer.Exit(code)


disclosures_app = typer.Typer(help="The disclosure log (docs/sharing.md).", no_args_is_help=True)
app.add_typer(disclosures_app, name="disclosures")


@disclosures_app.command("verify")
def disclosures_verify(
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    anchored: Annotated[
        str | None,
        typer.Option(
            "--anchor", help="An anchored head SEQ:0xHASH the log must still reach (exit 1 if not)."
        ),
    ] = None,
    anchor_tx: Annotated[
        str | None,
        typer.Option(
            "--anchor-tx",
            help="The oracle's anchoring transaction (0x hash): its head is read from the "
            "chain at RPC_URL and the log must still reach it (exit 1 if not).",
        ),
    ] = None,
) -> None:
    """Check the disclosure log's hash chain in DATABASE_URL from its first entry: print
    its head (to compare with the anchored one); exit 1 naming the first bad entry."""
    import json

    from sqlalchemy.exc import SQLAlchemyError

    from backend.core.settings import Settings
    from backend.sharing import anchor
    from backend.sharing.disclosures import GENESIS, Head, whole_log
    from backend.store import make_engine, session_factory

    head: Head | None = None
    if anchored is not None:
        seq, _, digest = anchored.partition(":")
        try:
            head = Head(int(seq), bytes.fromhex(digest.removeprefix("0x")))
            anchor.payload(head)
        except ValueError:
            _fail(ValueError(f"--anchor {anchored!r}: give SEQ:0x<32-byte hash>"))
    anchored_at: dict[str, object] = {}
    if anchor_tx is not None:
        head, anchored_at = _anchor_from_chain(Settings(), anchor_tx)

    engine = make_engine(Settings().DATABASE_URL)
    try:
        with session_factory(engine)() as session:
            log = whole_log(session)
        v = anchor.check(log, head or Head(0, GENESIS))
    except SQLAlchemyError as exc:
        typer.secho(
            f"error: cannot read the disclosure log ({type(exc).__name__}); is DATABASE_URL "
            "the API's database, migrated (trustship serve migrates it)?",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2) from None
    finally:
        engine.dispose()
    result = {
        "ok": v.ok,
        "entries": v.entries,
        "head": {"seq": v.head.seq, "hash": "0x" + v.head.hash.hex()},
        "first_bad_seq": v.first_bad_seq,
        "problem": v.problem,
    }
    if head is not None and head.seq:
        result["anchor"] = {"seq": head.seq, "hash": "0x" + head.hash.hex(), **anchored_at}
    if json_out:
        typer.echo(json.dumps(result))
    elif v.ok:
        typer.echo(f"ok: {v.entries} entries, head {v.head.seq} 0x{v.head.hash.hex()}")
        if head is not None and head.seq:
            where = (
                f" (anchored by {anchored_at['by']} in block {anchored_at['block']} at "
                f"{anchored_at['timestamp']})"
                if anchored_at
                else ""
            )
            typer.echo(f"reaches the anchored head {head.seq} 0x{head.hash.hex()}{where}")
    else:
        typer.echo(f"BROKEN at entry {v.first_bad_seq}: {v.problem}")
    raise typer.Exit(0 if v.ok else 1)


def _anchor_from_chain(settings: Settings, tx_hash: str) -> tuple[Head, dict[str, object]]:
    """The head an anchoring transaction carries, and who anchored it when: a mined,
    successful zero-value transaction from an oracle of the deployment (DEPLOYMENT_FILE,
    checked against the chain at RPC_URL) to itself. Anyone can send themselves those
    bytes; only the oracle's account makes them an anchor."""
    from backend.chain.connection import connect
    from backend.chain.deploy import load_deployment
    from backend.core.errors import TrustShipError
    from backend.sharing import anchor

    chain = connect(settings)
    try:
        deployment = load_deployment(settings.DEPLOYMENT_FILE, chain)
    except (OSError, TrustShipError) as exc:
        _fail(
            ValueError(
                f"--anchor-tx needs the deployment manifest to know the oracles' accounts: {exc}"
            )
        )
    try:
        tx = chain.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
        receipt = chain.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    except Exception as exc:  # not found, not mined, malformed hash, node down: all say so
        _fail(ValueError(f"--anchor-tx {tx_hash}: no such mined transaction ({exc})"))
    head = anchor.parse(bytes(tx["input"]))
    if head is None or tx["from"] != tx["to"] or tx["value"] != 0 or receipt["status"] != 1:
        _fail(ValueError(f"--anchor-tx {tx_hash}: not a disclosure-log anchor"))
    oracles = {o.lower() for o in deployment.oracles}
    if str(tx["from"]).lower() not in oracles:
        _fail(
            ValueError(
                f"--anchor-tx {tx_hash}: sent by {tx['from']}, which is not an oracle of the "
                f"deployment ({', '.join(deployment.oracles) or 'none'}): not an anchor"
            )
        )
    number = receipt["blockNumber"]
    at = chain.w3.eth.get_block(number)["timestamp"]
    return head, {"by": str(tx["from"]), "block": int(number), "timestamp": int(at)}


if __name__ == "__main__":
    app()
