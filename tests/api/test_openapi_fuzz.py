"""Schemathesis against the app's own OpenAPI document (ASGI, in process), with every
check schemathesis has, real seeded data and the key of every kind of party.

The app is the chain-backed one (eth-tester, contracts deployed, orders in every state,
signed readings and a committed batch: tests/api/fuzz.py), so generated writes reach
the contracts. Each case goes out as a party drawn from it (buyer, supplier, arbiter,
auditor, admin, stranger), and most schema-valid cases name seeded orders. Any 5xx is
a failure. The same run on PostgreSQL: tests/integration/test_api_fuzz_postgres.py.

``positive_data_acceptance`` expects schema-valid requests to be accepted; a
contract's cross-field rules (a deadline in the future, min below max ...), the EIP-55
checksum and MAX_PRICE cannot be written in JSON Schema, so 422 is added to its
expected statuses and :func:`tests.api.fuzz.refusals_of_valid_input_are_documented`
checks that every such 422 is one of those documented refusals. ``/alerts/stream`` is
endless by design and is tested on a real server (test_alert_stream.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig
from sqlalchemy import Engine

from backend.api.app import create_app
from backend.chain.testing import Stack
from tests.api import fuzz
from tests.api.conftest import ChainApi
from tests.api.fuzz import Seeded, fuzz_case, fuzz_context, rich_stack, seed_chain

MAX_EXAMPLES = 50
#: How every schemathesis run here and on PostgreSQL draws its cases (reproducibly).
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)

# serial: schemathesis' per-operation tests collapse to one under pytest-xdist (Makefile).
pytestmark = pytest.mark.serial

#: positive_data_acceptance's default expected statuses, and 422 (see the module docstring).
POSITIVE_ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "422", "429"]
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": POSITIVE_ACCEPTED}}}
)


def _placeholder_app() -> Any:
    """The app whose OpenAPI document schemathesis reads at import time; each test binds
    it to a fresh chain-backed context (routes read ``app.state.context`` per request).

    (``schemathesis.pytest.from_fixture`` would be the natural tool, but it reads a
    private pytest attribute that pytest 9 no longer has.)
    """
    from backend.api.context import ApiContext
    from backend.api.parties import PartyRegistry
    from backend.core.settings import Settings

    s = Settings(_env_file=None)  # type: ignore[call-arg]
    ctx = ApiContext(settings=s, session_factory=None, parties=PartyRegistry.from_settings(s))  # type: ignore[arg-type]
    return create_app(ctx)


APP = _placeholder_app()
schema = schemathesis.openapi.from_asgi("/openapi.json", APP, config=CONFIG).exclude(
    path="/alerts/stream"
)


@pytest.fixture(scope="module")
def seeded_stack() -> Iterator[tuple[Stack, Seeded]]:
    """A chain of its own (accounts richer than MAX_PRICE) with orders in every state."""
    stack = rich_stack()
    seeded = seed_chain(stack)
    address_strategy(stack, seeded)
    yield stack, seeded
    print("\n" + fuzz.summary())  # shown with -s: what the run covered


def address_strategy(stack: Stack, seeded: Seeded) -> None:
    """``eth-address`` values: the parties', the devices', the contracts' and random ones,
    checksummed or in lower case (the two spellings the document promises to accept)."""
    known = [acct.address for _, acct in stack.chain.accounts]
    known += [seeded.device, stack.po.address, stack.escrow.address, stack.token.address]
    known += ["0x0000000000000000000000000000000000000000"]
    from eth_utils import to_checksum_address

    random = st.from_regex(r"\A0x[0-9a-f]{40}\Z").map(
        lambda a: a if a[-1] in "02468ace" else to_checksum_address(a)
    )
    spelled = st.sampled_from(known).flatmap(lambda a: st.sampled_from([a, a.lower()]))
    schemathesis.openapi.format("eth-address", st.one_of(spelled, random))


@pytest.fixture
def bound_app(seeded_stack: tuple[Stack, Seeded], db: Engine) -> Iterator[Seeded]:
    stack, seeded = seeded_stack
    with fuzz_context(stack, db, seeded) as context:
        APP.state.context = context
        yield seeded


@schema.parametrize()
@FUZZ_SETTINGS
def test_api_conforms_to_its_openapi(case: Any, bound_app: Seeded) -> None:
    fuzz_case(case, bound_app)


def test_the_run_covered_every_operation_with_every_check_and_no_5xx() -> None:
    """After the run above (pytest keeps file order): it sent cases to every operation,
    as every party, ran every built-in check, and nothing answered 5xx."""
    from schemathesis.checks import CHECKS, load_all_checks

    load_all_checks()
    if not fuzz.STATS:
        pytest.skip("sums up the schemathesis run above: run the whole module")
    operations = {op for op, _, _ in fuzz.STATS}
    assert len(operations) == len(list(schema.get_all_operations())), operations
    assert set(CHECKS.get_all_names()) <= fuzz.CHECKS_RUN, fuzz.CHECKS_RUN
    assert set(fuzz.ROLES) <= fuzz.PARTIES_USED, fuzz.PARTIES_USED
    assert all(status < 500 for (_, _, status) in fuzz.STATS), fuzz.summary()


#: Routes without an API key: service status, and where the contracts are (as public
#: as the contracts themselves; devices need it to sign).
PUBLIC = ("/health", "/metrics", "/deployment")


def test_openapi_documents_every_route_and_error() -> None:
    """Every operation has a typed 2xx body and its error statuses use ErrorPublic."""
    doc = _placeholder_app().openapi()
    assert len(doc["paths"]) >= 20
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            responses = op["responses"]
            ok = [c for c in responses if c.startswith("2")]
            assert ok, f"{method} {path} documents no success"
            for code in ok:
                content = responses[code].get("content", {})
                assert content, f"{method} {path} {code} has no body schema"
                for media in content.values():
                    assert media.get("schema"), f"{method} {path} {code} untyped"
            for code, resp in responses.items():
                if code.startswith(("4", "5")) and path != "/health":
                    ref = resp["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorPublic"), (method, path, code)
            if path not in PUBLIC:
                assert "401" in responses, f"{method} {path} does not document 401"


def _documented_public_routes() -> set[str]:
    """The routes docs/api.md's "Auth" section lists as needing no key."""
    import re
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    m = re.search(r"Every request except (.*?) carries\s+`X-API-Key`", doc, re.S)
    assert m, "docs/api.md no longer says which routes need no key"
    return set(re.findall(r"`(/[^`]*)`", m.group(1)))


def test_public_routes_agree_in_docs_openapi_and_behaviour(chain_api: ChainApi) -> None:
    """/deployment is public by decision (docs/api.md, "Why /deployment is public"): the
    docs, the document's ``security`` and the server's answers without a key agree."""
    doc = chain_api.client.get("/openapi.json").json()
    open_in_document = set()
    open_in_behaviour = set()
    for path, ops in doc["paths"].items():
        if "get" not in ops or "{" in path or path == "/alerts/stream":
            continue
        if "security" not in ops["get"]:
            open_in_document.add(path)
        if chain_api.client.get(path).status_code != 401:
            open_in_behaviour.add(path)
    pages = {"/openapi.json", "/docs", "/redoc"}
    # the web dashboard's files (docs/dashboard.md): not in the document
    dashboard = {"/", "/web/*", "/vendor/*"}
    assert open_in_document == open_in_behaviour == {"/health", "/metrics", "/deployment"}
    assert _documented_public_routes() == open_in_behaviour | pages | dashboard
    for page in [*pages, "/", "/web/app.js", "/vendor/uPlot.esm.js"]:
        assert chain_api.client.get(page).status_code == 200, page


def test_the_document_states_bounds_in_json_schema_words() -> None:
    """A validator inside a nested ``Annotated`` made FastAPI write pydantic's ``ge``/``le``
    into the document, which no client reads as bounds (schemathesis found it)."""
    import json
    import re

    text = json.dumps(_placeholder_app().openapi())
    assert not re.findall(r'"(ge|le|gt|lt)":', text)
    assert '"maximum": 200' in text and '"minimum": 1' in text
