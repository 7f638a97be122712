"""Every answer is classified: each route of the OpenAPI document passes through the
sharing policy, and each schema an answer can hold declares the class of every field
(docs/sharing.md). A new route, schema or field without a class fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel

from backend.api import schemas
from backend.api.app import create_app
from backend.api.errors import ErrorPublic
from backend.api.sharing import PolicyRoute, shape_of
from backend.domain.sensitivity import HIGH, LOW, Owner
from tests.api.conftest import Api

#: Answers that are not JSON records of the policy's (text, or the error body).
UNFILTERED = {"ErrorPublic", "HTTPValidationError", "ValidationError"}


def _refs(node: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            out.add(ref.rsplit("/", 1)[-1])
        for v in node.values():
            out |= _refs(v)
    elif isinstance(node, list):
        for v in node:
            out |= _refs(v)
    return out


def _response_schemas(document: dict[str, Any]) -> set[str]:
    """Every component schema reachable from a response of the document."""
    components = document["components"]["schemas"]
    todo = set()
    for item in document["paths"].values():
        for op in item.values():
            todo |= _refs(op.get("responses", {}))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo |= _refs(components[name])
    return seen


def _api_routes(routes: Any) -> list[APIRoute]:
    """The app's API routes, through included routers (FastAPI keeps them nested)."""
    out: list[APIRoute] = []
    for r in routes:
        if isinstance(r, APIRoute):
            out.append(r)
        inner = getattr(r, "original_router", None)
        if inner is not None:
            out += _api_routes(inner.routes)
    return out


def test_every_route_passes_through_the_policy(api: Api) -> None:
    routes = _api_routes(create_app(api.context).routes)
    document = api.client.get("/openapi.json").json()
    operations = {(m.upper(), path) for path, item in document["paths"].items() for m in item}
    served = {(m, r.path) for r in routes for m in r.methods}
    assert operations <= served
    assert [r.path for r in routes if not isinstance(r, PolicyRoute)] == []


def test_every_response_schema_declares_the_class_of_every_field(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    by_name = {m.__name__: m for m in schemas.SENSITIVITY}
    names = _response_schemas(document) - UNFILTERED
    assert {"OrderPublic", "ReadingPublic", "AlertPublic", "TermsPublic"} <= names
    missing = sorted(n for n in names if n not in by_name)
    assert missing == [], "response schemas without sensitivity classes"
    for name in names:
        model = by_name[name]
        declared = set(schemas.SENSITIVITY[model].fields)
        assert declared == set(model.model_fields), name
        shape_of(model)  # its nested records are classified too


def test_domain_records_keep_their_declared_classes() -> None:
    """Schemas built from a domain record take its classes: a position is high and
    coarsened to a region, a device identity high, a reading's values medium."""
    reading = schemas.SENSITIVITY[schemas.ReadingPublic].fields
    assert reading["latitude_e6"].sensitivity is HIGH and reading["device"].sensitivity is HIGH
    assert reading["temperature_centi_c"].sensitivity.value == "medium"
    terms = schemas.SENSITIVITY[schemas.TermsPublic].fields
    assert terms["price"].sensitivity.value == "medium" and terms["dest_lat_e6"].sensitivity is HIGH
    order = schemas.SENSITIVITY[schemas.OrderPublic]
    assert (
        order.fields["state"].sensitivity is LOW and order.fields["settlement"].sensitivity is LOW
    )
    assert schemas.SENSITIVITY[schemas.ScorecardPublic].owner is Owner.PUBLIC


def test_an_unclassified_schema_is_refused_at_start_up() -> None:
    class Unclassified(BaseModel):
        x: int

    try:
        shape_of(Unclassified)
    except TypeError as exc:
        assert "Unclassified" in str(exc)
    else:
        raise AssertionError("an unclassified schema was accepted")
    assert ErrorPublic.__name__ in UNFILTERED


def test_the_docs_table_is_the_declared_classes() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "sharing.md").read_text()
    table = text.split("## The full class table", 1)[1]
    rows = set()
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[1].startswith("`"):
            rows.add((cells[0], cells[1].strip("`"), cells[2], cells[3]))
    declared = set()
    for model, c in schemas.SENSITIVITY.items():
        for name, fc in c.fields.items():
            how = fc.coarsening.value if fc.sensitivity is HIGH else ""
            declared.add((model.__name__, name, fc.sensitivity.value, how))
    assert rows == declared
