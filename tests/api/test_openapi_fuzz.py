"""Schemathesis against the app's own OpenAPI document (ASGI, in process).

Every operation gets generated requests with a valid buyer key; the answers must
not be server errors and must match the documented response schemas (including
every ErrorPublic answer). The app is the chain-backed one, so valid writes reach
the contract. ``/alerts/stream`` is endless by design and is tested separately
(test_alert_stream.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from backend.api.app import create_app
from tests.api.conftest import ChainApi, headers

MAX_EXAMPLES = 20


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
schema = schemathesis.openapi.from_asgi("/openapi.json", APP).exclude(path="/alerts/stream")


@pytest.fixture
def bound_app(chain_api: ChainApi) -> Any:
    APP.state.context = chain_api.context
    return APP


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_api_conforms_to_its_openapi(case: Any, bound_app: Any) -> None:
    case.call_and_validate(
        headers=headers("buyer"),
        checks=[not_a_server_error, response_schema_conformance],
    )


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
    assert open_in_document == open_in_behaviour == {"/health", "/metrics", "/deployment"}
    assert _documented_public_routes() == open_in_behaviour | pages
    for page in pages:
        assert chain_api.client.get(page).status_code == 200
