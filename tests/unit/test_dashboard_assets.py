"""The dashboard's static routes, in process (FastAPI's TestClient; no lifespan, no database): plotly.js comes from
the installed plotly package, the page's assets carry content hashes and long cache headers, and the page has
its Content-Security-Policy; and the page's strings exist in both languages (read from app.js's string tables)."""

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


# --- the page's strings: every label in both languages ---------------------------------------------------------

STATIC = resources.files("api") / "dashboard" / "static"
LANGUAGE_TABLE = re.compile(r"\bconst (\w*I18N) = \{")  # app.js's string tables: {en: {...}, zh: {...}} each
ADDED_STRINGS = re.compile(r"Object\.assign\(I18N\.(en|zh), \{")  # another script's strings added to I18N
KEY = re.compile(r"\s*(?:\"([^\"]+)\"|([A-Za-z_]\w*))\s*:")  # a property name, bare or quoted, and its colon


def _object_at(source: str, start: int) -> str:
    """The JavaScript object literal whose "{" is at `start` (braces inside strings and comments skipped)."""
    depth, i, quote = 0, start, ""
    while i < len(source):
        ch = source[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'`":
            quote = ch
        elif source.startswith("//", i):
            i = source.index("\n", i)
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return source[start : i + 1]
        i += 1
    raise AssertionError(f"unbalanced object at {start}")


def _top_level_keys(literal: str) -> set[str]:
    """The keys of an object literal's own properties (not those of objects nested in it)."""
    keys, depth, i, quote, expect_key = set(), 0, 0, "", False
    while i < len(literal):
        ch = literal[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif depth == 1 and expect_key and (found := KEY.match(literal, i)):
            keys.add(found.group(1) or found.group(2))
            i = found.end()
            expect_key = False
            continue
        elif ch in "\"'`":
            quote = ch
        elif ch in "{[(":
            depth += 1
            expect_key = depth == 1
        elif ch in "}])":
            depth -= 1
        elif ch == "," and depth == 1:
            expect_key = True
        i += 1
    return keys


def _strings() -> dict[str, set[str]]:
    """Per language, every key of app.js's string tables."""
    source = (STATIC / "app.js").read_text(encoding="utf-8")
    out: dict[str, set[str]] = {"en": set(), "zh": set()}
    tables = list(LANGUAGE_TABLE.finditer(source))
    assert {t.group(1) for t in tables} >= {"I18N", "UTIL_I18N"}
    for found in tables:
        table = found.group(1)
        literal = _object_at(source, found.end() - 1)
        for language in out:
            inner = re.search(rf"\n\s*{language}: \{{", literal)
            assert inner, f"{table} has no {language} strings"
            out[language] |= _top_level_keys(_object_at(literal, inner.end() - 1))
    for path in sorted((p for p in STATIC.iterdir() if p.name.endswith(".js")), key=lambda p: p.name):
        other = path.read_text(encoding="utf-8")
        for found in ADDED_STRINGS.finditer(other):
            out[found.group(1)] |= _top_level_keys(_object_at(other, found.end() - 1))
    return out


def test_every_string_of_the_page_exists_in_english_and_chinese() -> None:
    """The page's string tables (app.js's I18N, the utilisation section's UTIL_I18N, any other ...I18N, and the
    strings another script such as planning.js adds to I18N) name the same keys in English and Chinese, and every
    key the page uses (data-i18n in index.html, t("...") in any of its scripts) is in them: no label falls back to
    English or shows its key."""
    strings = _strings()
    assert len(strings["en"]) > 100
    assert strings["en"] - strings["zh"] == set(), "English only"
    assert strings["zh"] - strings["en"] == set(), "Chinese only"
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    script = "\n".join(
        path.read_text(encoding="utf-8")
        for path in sorted((p for p in STATIC.iterdir() if p.name.endswith(".js")), key=lambda p: p.name)
    )
    used = set(re.findall(r'data-i18n="([^"]+)"', html)) | set(re.findall(r'\bt\("([^"]+)"', script))
    assert {"utilisationTitle", "energyTitle", "termCoreHours", "prov_mixed"} <= used | strings["en"]
    assert used - strings["en"] == set(), "used but not defined"


def test_the_key_reader_sees_top_level_keys_only() -> None:
    """The test's reader of JavaScript objects takes own keys (bare or quoted), skips nested objects and
    text that looks like a key inside strings, so the check above can fail."""
    literal = '{ a: "x: y", "b-c": 1, d: { e: 2 }, f: `g: ${"h"}`,\n  i: [1, { j: 3 }] }'
    assert _top_level_keys(literal) == {"a", "b-c", "d", "f", "i"}
