"""The web dashboard: static files at ``/`` and the browser libraries it uses.

The page (``backend/api/web/``: ``index.html``, ``app.js`` as plain ES modules,
``style.css``) needs no build step. It signs in with an API key and reads through
the same REST routes, with the same visibility, as any client (docs/dashboard.md).
The third-party libraries come from the npm packages the project installs
(``WEB_VENDOR_DIR``, default ``contracts/node_modules``): only the files listed in
:data:`VENDOR_FILES` are served, nothing else of that directory.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

from backend.api.deps import ContextDep
from backend.api.errors import ApiError
from backend.api.sharing import PolicyRoute

#: The page's own files (package data).
WEB_DIR = Path(__file__).resolve().parent.parent / "web"

#: URL name under ``/vendor/`` → path inside the vendor directory (npm packages).
VENDOR_FILES: dict[str, str] = {
    "uPlot.esm.js": "uplot/dist/uPlot.esm.js",
    "uPlot.min.css": "uplot/dist/uPlot.min.css",
    "countries-110m.json": "world-atlas/countries-110m.json",
}

# Static files, no data: PolicyRoute passes them through as they are (they have no
# response model); the page's data comes from the API's routes, filtered there.
router = APIRouter(include_in_schema=False, route_class=PolicyRoute)

_NO_STORE = {"Cache-Control": "no-cache"}


@router.get("/")
async def index() -> FileResponse:
    """The dashboard's single page."""
    return FileResponse(WEB_DIR / "index.html", headers=_NO_STORE)


def vendor_path(vendor_dir: Path, name: str) -> Path:
    """The file served as ``/vendor/<name>``; ApiError 404 naming what is missing."""
    inner = VENDOR_FILES.get(name)
    if inner is None:
        raise ApiError(404, "not_found", f"/vendor/{name} is not one of the dashboard's libraries")
    path = vendor_dir / inner
    if not path.is_file():
        raise ApiError(
            404,
            "vendor_missing",
            f"{inner} is not installed under WEB_VENDOR_DIR={vendor_dir}: "
            "run `make setup` (npm ci in contracts/) or point WEB_VENDOR_DIR at the npm packages",
        )
    return path


@router.get("/vendor/{name}")
async def vendor(ctx: ContextDep, name: str) -> FileResponse:
    """One of the browser libraries the dashboard uses, from the npm packages."""
    return FileResponse(
        vendor_path(ctx.settings.WEB_VENDOR_DIR, name),
        headers={"Cache-Control": "public, max-age=3600"},
    )


def install(app: FastAPI) -> None:
    """``/``, ``/web/*`` (the page's files) and ``/vendor/*`` on ``app``."""
    app.include_router(router)
    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")
