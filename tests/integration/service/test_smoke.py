"""The service starts under uvicorn (`suanli serve`) on both backends, migrates, seeds regions and protects its
routes."""

from __future__ import annotations

from api.db.seed import region_rows
from tests.service import ServiceProcess


def test_service_starts_seeds_regions_and_requires_a_token(server: ServiceProcess) -> None:
    """After start every region of seeds/regions.csv is listed for the admin; without a token the call is 401."""
    with server.client() as client:
        regions = client.get("/v1/regions").json()
    assert {r["code"] for r in regions} >= {"CN", "440000", "440100", "440106"}
    assert len(regions) == len(region_rows())
    with server.client("") as anonymous:
        response = anonymous.get("/v1/regions")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
