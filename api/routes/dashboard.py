"""The web dashboard: `/` serves the single-page app, `/static/...` its files and the installed Plotly.

No build step and no CDN: the page is plain HTML, CSS and JavaScript modules under api/static, and the
charting library is the `plotly.min.js` bundled with the `plotly` Python package, so the dashboard works
offline. Static files are served from a whitelist (known suffixes, inside api/static, no hidden parts)
with ETags, so browsers revalidate cheaply and always see the current files.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import resources
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from api.access import COOKIE, scopes_of

router = APIRouter(tags=["dashboard"])

STATIC_DIR = Path(__file__).resolve().parents[1] / "static"
INDEX = STATIC_DIR / "index.html"
# Content types by suffix; anything else under api/static is not served.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
APP_CACHE = "no-cache"  # revalidate every time (ETag): a new deployment shows at once
VENDOR_CACHE = "public, max-age=86400"  # Plotly changes only with the installed package


class DashboardSettings(BaseModel):
    """What the page needs to know about the server before its first request."""

    api_key_required: bool = Field(description="whether requests need an API key (X-API-Key header)")
    plotly_version: str | None = Field(description="version of the bundled Plotly library, if installed")


class SessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    api_key: str = Field(min_length=1, max_length=512)


class SessionOut(BaseModel):
    scopes: list[str] = Field(description="the scopes of the key")


@lru_cache(maxsize=1)
def plotly_bundle() -> Path | None:
    """The `plotly.min.js` inside the installed plotly package, or None when it is missing."""
    try:
        path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    except (ModuleNotFoundError, TypeError):
        return None
    return path if path.is_file() else None


@lru_cache(maxsize=1)
def plotly_version() -> str | None:
    try:
        from plotly import __version__
    except ImportError:
        return None
    return str(__version__)


def _etag(path: Path) -> str:
    stat = path.stat()
    return '"' + hashlib.sha1(f"{path}:{stat.st_mtime_ns}:{stat.st_size}".encode()).hexdigest()[:20] + '"'


def _serve(path: Path, request: Request, cache_control: str) -> Response:
    """The file with its content type and an ETag; 304 when the browser's copy is current."""
    etag = _etag(path)
    headers = {"Cache-Control": cache_control, "ETag": etag, "X-Content-Type-Options": "nosniff"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    media_type = CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
    return FileResponse(path, media_type=media_type, headers=headers)


def static_file(relative: str) -> Path | None:
    """The file `relative` names inside api/static if it may be served, else None (never one outside it)."""
    if not relative or len(relative) > 200 or "\\" in relative or "\x00" in relative:
        return None
    parts = relative.split("/")
    if any(not p or p.startswith(".") for p in parts):
        return None
    path = (STATIC_DIR / relative).resolve()
    if not path.is_relative_to(STATIC_DIR) or path.suffix.lower() not in CONTENT_TYPES or not path.is_file():
        return None
    return path


@router.head("/", include_in_schema=False)
@router.get(
    "/",
    summary="The web dashboard (runs, training form, sweeps, classifier and transliterator playgrounds)",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "the single-page app"},
        304: {"description": "not modified: the If-None-Match ETag is current"},
    },
)
def dashboard(request: Request) -> Response:
    return _serve(INDEX, request, APP_CACHE)


@router.get(
    "/dashboard/settings",
    summary="Settings the dashboard reads at start: whether an API key is needed",
    response_model=DashboardSettings,
)
def dashboard_settings(request: Request) -> DashboardSettings:
    return DashboardSettings(api_key_required=bool(request.app.state.api_keys), plotly_version=plotly_version())


@router.post(
    "/dashboard/session",
    summary="Hand the dashboard's API key to the browser as an HttpOnly, SameSite=Strict cookie",
    response_model=SessionOut,
    responses={401: {"description": "unknown API key"}},
)
def open_session(body: SessionRequest, request: Request, response: Response) -> SessionOut:
    """The page's images, downloads and event streams cannot send headers; this cookie carries the key."""
    scopes = scopes_of(body.api_key, request.app.state.api_keys)
    if scopes is None:
        raise HTTPException(401, "unknown API key")
    response.set_cookie(COOKIE, body.api_key, httponly=True, samesite="strict", path="/",
                        secure=request.url.scheme == "https")
    return SessionOut(scopes=sorted(scopes))


@router.post("/dashboard/logout", status_code=204, summary="Forget the dashboard's API key cookie")
def close_session(response: Response) -> Response:
    response.delete_cookie(COOKIE, path="/")
    response.status_code = 204
    return response


@router.api_route(
    "/static/vendor/plotly.min.js",
    methods=["GET", "HEAD"],
    summary="Plotly, from the installed plotly Python package (the dashboard's charts)",
    response_class=FileResponse,
    include_in_schema=False,
)
def plotly_js(request: Request) -> Response:
    bundle = plotly_bundle()
    if bundle is None:
        raise HTTPException(404, "plotly.min.js not found: install the plotly package (requirements.txt)")
    return _serve(bundle, request, VENDOR_CACHE)


@router.api_route(
    "/static/{relative:path}",
    methods=["GET", "HEAD"],
    summary="A file of the dashboard (HTML, CSS, JavaScript modules, icons)",
    response_class=FileResponse,
    include_in_schema=False,
)
def static(relative: str, request: Request) -> Response:
    path = static_file(relative)
    if path is None:
        raise HTTPException(404, f"no dashboard file {relative[:80]!r}")
    return _serve(path, request, APP_CACHE)
