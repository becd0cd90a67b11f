"""The planners' dashboard: the page at ``/``, its own script and style sheet, and the chart library.

These routes are public (no token) because they carry no data: the page is static, and the browser fetches every
figure from the ``/v1`` routes with the token the user typed in, under that token's role. They must never embed
census figures, tokens or anything read from the database, and never point the browser off this origin: the
service runs in air-gapped data centres, so the charts use the plotly.js bundled in the installed ``plotly``
wheel, read from site-packages at run time (a copy of it must never be committed).

The page's own files live in ``api/dashboard/static/`` (package data, shipped in the wheel). The page is sent
with a strict Content-Security-Policy (no inline script, nothing from another origin; only styles, which
plotly.js injects, may be inline) and ``no-cache``; its assets are addressed with a content hash
(``?v=``) and cached for a year, gzip-compressed once per process.
"""

from __future__ import annotations

import gzip
import hashlib
from contextlib import suppress
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from api.errors import NotFound

router = APIRouter(include_in_schema=False)

STATIC = resources.files("api") / "dashboard" / "static"
PAGE_PATH = "/"
PLOTLY_PATH = "/dashboard/vendor/plotly.min.js"
# URL path -> (file in api/dashboard/static, media type)
OWN_ASSETS = {
    "/dashboard/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/dashboard/planning.js": ("planning.js", "text/javascript; charset=utf-8"),
    "/dashboard/style.css": ("style.css", "text/css; charset=utf-8"),
}
DASHBOARD_PATHS = frozenset({PAGE_PATH, PLOTLY_PATH, *OWN_ASSETS})
"""The dashboard's routes: public, like health and the API docs (see ``api.routers.health.PUBLIC_PATHS``)."""

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        # plotly.js styles its SVG with style attributes and injects its own rules (modebar, hover, map) as inline
        # <style> elements; styles cannot run code, and every script must still come from this origin
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
LONG_CACHE = "public, max-age=31536000, immutable"
COMMON_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True, slots=True)
class Asset:
    """A file as served: its bytes, the same gzip-compressed, and a strong ETag."""

    body: bytes
    gzipped: bytes
    etag: str
    media_type: str

    @classmethod
    def of(cls, body: bytes, media_type: str) -> Asset:
        """`body` compressed once (deterministically: no timestamp in the gzip header) and hashed."""
        digest = hashlib.sha256(body).hexdigest()[:20]
        return cls(body, gzip.compress(body, compresslevel=9, mtime=0), f'"{digest}"', media_type)

    @property
    def version(self) -> str:
        """The ETag without quotes, for ``?v=`` in the page's URLs."""
        return self.etag.strip('"')


@cache
def own_asset(path: str) -> Asset:
    """One of the dashboard's own files (``OWN_ASSETS``)."""
    name, media_type = OWN_ASSETS[path]
    return Asset.of((STATIC / name).read_bytes(), media_type)


@cache
def plotly_asset() -> Asset:
    """plotly.min.js from the installed plotly package; `NotFound` if plotly is not installed."""
    try:
        source = resources.files("plotly") / "package_data" / "plotly.min.js"
        body = source.read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise NotFound("plotly.min.js is not available: install the plotly package (the server extra)") from None
    return Asset.of(body, "text/javascript; charset=utf-8")


def page_html() -> bytes:
    """index.html with every asset URL carrying its content hash, so the assets can be cached for a year."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    for path in OWN_ASSETS:
        html = html.replace(f'"{path}"', f'"{path}?v={own_asset(path).version}"')
    with suppress(NotFound):  # without plotly the page still works, and says the charts are unavailable
        html = html.replace(f'"{PLOTLY_PATH}"', f'"{PLOTLY_PATH}?v={plotly_asset().version}"')
    return html.encode("utf-8")


def accepts_gzip(request: Request) -> bool:
    """Whether the client's Accept-Encoding admits gzip (and does not refuse it with q=0)."""
    for item in request.headers.get("accept-encoding", "").split(","):
        coding, _, params = item.strip().partition(";")
        if coding.strip().lower() in ("gzip", "*"):
            quality = params.strip().removeprefix("q=").strip() if params.strip().startswith("q=") else "1"
            try:
                return float(quality) > 0
            except ValueError:
                return False
    return False


def serve(request: Request, asset: Asset, cache_control: str) -> Response:
    """`asset` with its ETag (304 when the client has it), gzip-compressed if the client accepts that."""
    headers = {**COMMON_HEADERS, "Cache-Control": cache_control, "ETag": asset.etag, "Vary": "Accept-Encoding"}
    if asset.etag in (tag.strip() for tag in request.headers.get("if-none-match", "").split(",")):
        return Response(status_code=304, headers=headers)
    if accepts_gzip(request):
        return Response(asset.gzipped, media_type=asset.media_type, headers={**headers, "Content-Encoding": "gzip"})
    return Response(asset.body, media_type=asset.media_type, headers=headers)


@router.get(PAGE_PATH, summary="The dashboard page", response_class=HTMLResponse)
def page() -> Response:
    """The page (no data in it: it asks for a token and then reads the API)."""
    headers = {
        **COMMON_HEADERS,
        "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "Cache-Control": "no-cache",
        "X-Frame-Options": "DENY",
    }
    return Response(page_html(), media_type="text/html; charset=utf-8", headers=headers)


@router.get("/dashboard/app.js", summary="The dashboard's script", response_class=Response)
def app_js(request: Request) -> Response:
    """The page's script (plain JavaScript, no build step)."""
    return serve(request, own_asset("/dashboard/app.js"), LONG_CACHE)


@router.get("/dashboard/planning.js", summary="The dashboard's planning panels", response_class=Response)
def planning_js(request: Request) -> Response:
    """The what-if and projection panels' script (plain JavaScript, loaded after app.js, whose helpers it uses)."""
    return serve(request, own_asset("/dashboard/planning.js"), LONG_CACHE)


@router.get("/dashboard/style.css", summary="The dashboard's style sheet", response_class=Response)
def style_css(request: Request) -> Response:
    """The page's style sheet."""
    return serve(request, own_asset("/dashboard/style.css"), LONG_CACHE)


@router.get(PLOTLY_PATH, summary="plotly.js from the installed plotly package", response_class=Response)
def plotly_js(request: Request) -> Response:
    """The chart library, straight from site-packages (never from a CDN)."""
    return serve(request, plotly_asset(), LONG_CACHE)
