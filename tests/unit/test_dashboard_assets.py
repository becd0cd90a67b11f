"""The dashboard's static routes, in process (FastAPI's TestClient; no lifespan, no database): plotly.js comes from
the installed plotly package, the page's assets carry content hashes and long cache headers, and the page has
its Content-Security-Policy."""

from __future__ import annotations

import re
from importlib import resources

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.routers.dashboard import LONG_CACHE, OWN_ASSETS, PLOTLY_PATH
from api.settings import Settings


@pytest.fixture(scope="module")
def client() -> TestClient:
    """The service's application as built for serving (routes only: nothing is opened)."""
    return TestClient(create_app(Settings(database_url="sqlite://", admin_token_file=None)))


def test_plotly_route_serves_the_file_of_the_installed_plotly_package(client: TestClient) -> None:
    """GET /dashboard/vendor/plotly.min.js answers the bytes of plotly/package_data/plotly.min.js in site-packages
    (same length, same content), cached for a year, and the same bytes gzip-compressed when the browser accepts
    gzip; its ETag gets a 304."""
    installed = (resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
    plain = client.get(PLOTLY_PATH, headers={"Accept-Encoding": "identity"})
    assert plain.status_code == 200
    assert len(plain.content) == len(installed) > 1_000_000
    assert plain.content == installed
    assert plain.headers["cache-control"] == LONG_CACHE
    assert plain.headers["content-type"].startswith("text/javascript")
    assert "content-encoding" not in plain.headers
    compressed = client.get(PLOTLY_PATH, headers={"Accept-Encoding": "gzip, deflate"})
    assert compressed.headers["content-encoding"] == "gzip"
    assert int(compressed.headers["content-length"]) < len(installed) / 3
    assert compressed.content == installed  # httpx undoes the gzip
    cached = client.get(PLOTLY_PATH, headers={"If-None-Match": plain.headers["etag"]})
    assert cached.status_code == 304
    assert not cached.content


def test_gzip_refused_with_q0_is_not_sent(client: TestClient) -> None:
    """``Accept-Encoding: gzip;q=0`` means no gzip: the file is sent as it is."""
    response = client.get("/dashboard/app.js", headers={"Accept-Encoding": "gzip;q=0"})
    assert response.status_code == 200
    assert "content-encoding" not in response.headers


def test_the_page_names_its_assets_by_content_hash_and_has_a_strict_policy(client: TestClient) -> None:
    """The page at / is not cached, has a Content-Security-Policy with scripts from 'self' only, loads every
    asset (its script, style sheet, plotly.js) by a ``?v=`` URL whose hash is the asset's ETag, and holds no
    inline script."""
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["cache-control"] == "no-cache"
    assert "script-src 'self';" in page.headers["content-security-policy"]
    for path in [*OWN_ASSETS, PLOTLY_PATH]:
        found = re.search(rf'"{re.escape(path)}\?v=([0-9a-f]+)"', page.text)
        assert found, f"{path} is not referenced with a version"
        asset = client.get(f"{path}?v={found.group(1)}")
        assert asset.status_code == 200
        assert asset.headers["etag"] == f'"{found.group(1)}"'
        assert asset.headers["cache-control"] == LONG_CACHE
    assert re.findall(r"<script\b[^>]*>", page.text) == [
        f'<script src="{PLOTLY_PATH}?v={client.get(PLOTLY_PATH).headers["etag"].strip(chr(34))}" defer>',
        *(
            f'<script src="{path}?v={client.get(path).headers["etag"].strip(chr(34))}" defer>'
            for path in ("/dashboard/app.js", "/dashboard/planning.js")
        ),
    ]
