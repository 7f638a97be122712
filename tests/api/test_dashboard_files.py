"""The web dashboard's files: the page at /, its own files under /web, and exactly the
listed browser libraries under /vendor from WEB_VENDOR_DIR (the page itself is tested in
a browser: tests/integration/test_dashboard_browser.py)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from backend.api.app import create_app
from backend.api.context import ApiContext
from backend.api.parties import PartyRegistry
from backend.api.routes.dashboard import VENDOR_FILES, WEB_DIR
from backend.core.settings import Settings
from tests.api.conftest import Api

REPO = Path(__file__).resolve().parents[2]


def test_the_page_is_served_at_the_root_without_a_key(api: Api) -> None:
    r = api.client.get("/")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/web/app.js">' in r.text
    for path in ("/web/app.js", "/web/style.css"):
        f = api.client.get(path)
        assert f.status_code == 200, path
        assert f.content == (WEB_DIR / path.removeprefix("/web/")).read_bytes()
    assert "javascript" in api.client.get("/web/app.js").headers["content-type"]


def test_every_file_the_page_names_is_served(api: Api) -> None:
    """index.html, app.js and style.css name /web/… and /vendor/… files: each answers 200."""
    names: set[str] = set()
    for f in ("index.html", "app.js", "style.css"):
        names |= set(
            re.findall(r"""["'(](/(?:web|vendor)/[\w.\-]+)["')]""", (WEB_DIR / f).read_text())
        )
    assert {"/web/app.js", "/vendor/uPlot.esm.js", "/vendor/countries-110m.json"} <= names
    for name in sorted(names):
        assert api.client.get(name).status_code == 200, name


def test_vendor_files_come_from_the_npm_packages(api: Api) -> None:
    vendor = api.context.settings.WEB_VENDOR_DIR
    for name, inner in VENDOR_FILES.items():
        r = api.client.get(f"/vendor/{name}")
        assert r.status_code == 200, name
        assert r.content == (vendor / inner).read_bytes()


@pytest.mark.parametrize(
    "path",
    [
        "/vendor/uplot",
        "/vendor/..%2Fpackage.json",
        "/vendor/uplot%2Fdist%2FuPlot.cjs.js",
        "/vendor/x.js",
    ],
)
def test_nothing_else_of_the_vendor_directory_is_served(api: Api, path: str) -> None:
    r = api.client.get(path)
    assert r.status_code == 404
    assert r.json()["code"] == "not_found"


def test_a_missing_vendor_directory_is_named(
    tmp_path: Path, factory: sessionmaker[Session], parties: PartyRegistry
) -> None:
    settings = Settings(DEV_MODE=True, WEB_VENDOR_DIR=tmp_path / "none", _env_file=None)  # type: ignore[call-arg]
    context = ApiContext(settings=settings, session_factory=factory, parties=parties)
    with TestClient(create_app(context)) as client:
        r = client.get("/vendor/uPlot.esm.js")
        assert client.get("/").status_code == 200  # the page itself says what is missing
    assert r.status_code == 404
    body = r.json()
    assert body["code"] == "vendor_missing"
    assert "WEB_VENDOR_DIR" in body["message"] and "uplot/dist/uPlot.esm.js" in body["message"]


def test_the_dashboard_routes_stay_out_of_the_openapi_document(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith(("/web", "/vendor"))]


def test_the_page_is_package_data_and_in_the_image() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert "web/*" in pyproject["tool"]["setuptools"]["package-data"]["backend.api"]
    dockerfile = (REPO / "deploy" / "Dockerfile").read_text()
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    for inner in VENDOR_FILES.values():
        assert f"contracts/node_modules/{inner}" in dockerfile, inner
        assert f"!contracts/node_modules/{inner}" in ignore, inner
