"""The service never reads its own host for a job: a working directory is a directory on the node that runs it.

The exploit this guards against: a `user` token submitting ``--workdir <the service's data dir> -- cat admin.token``,
which Ray's client would have answered by zipping the service's data directory and uploading it to the cluster.
In process (`tests.inprocess.AppService`) on SQLite, with a scheduler whose Ray is unreachable: the refusal is
the API's, before anything is stored or dispatched.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.inprocess import AppService
from tests.integration.service.helpers import create_token
from tests.servers import free_port

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AppService]:
    """The application with a scheduler whose Ray cannot be reached (jobs queue; nothing runs them)."""
    workdir = tmp_path_factory.mktemp("workdir-service")
    config = workdir / "scheduler.toml"
    config.write_text(f'[ray]\naddress = "http://127.0.0.1:{free_port()}"\n')
    app = AppService(f"sqlite:///{workdir / 'suanli.db'}", workdir, scheduler_config=str(config)).start()
    yield app
    app.stop()


def test_a_user_cannot_point_a_job_at_the_services_data_directory(service: AppService) -> None:
    """The exploit body (the service's own data directory given relatively, by URI or with ``..``) gets 422
    problem+json naming runtime_env.working_dir, and no job is stored."""
    with service.client() as admin:
        user = create_token(admin, "user")["token"]
        before = admin.get("/v1/jobs", params={"limit": 1000}).json()
    data_dir = service.admin_token_file.parent
    attempts = [
        "admin.token/..",
        f"{data_dir}/../{data_dir.name}",
        f"file://{data_dir}",
        f"https://example.com/{data_dir.name}.zip",
        str(data_dir.relative_to(data_dir.anchor)),
    ]
    with service.client(user) as client:
        for working_dir in attempts:
            body = {
                "name": "steal",
                "class": "general",
                "entrypoint": "cat admin.token",
                "runtime_env": {"working_dir": working_dir},
            }
            response = client.post("/v1/jobs", json=body)
            assert response.status_code == 422, (working_dir, response.text)
            assert response.headers["content-type"].startswith(PROBLEM)
            assert response.json()["detail"].startswith("runtime_env.working_dir: "), response.text
    with service.client() as admin:
        assert admin.get("/v1/jobs", params={"limit": 1000}).json() == before


def test_an_absolute_node_directory_is_accepted_and_shown_as_given(service: AppService) -> None:
    """An absolute directory (a path on the node, which the service never reads) is queued and shown verbatim."""
    with service.client() as admin:
        user = create_token(admin, "user")["token"]
    body = {"name": "here", "class": "general", "entrypoint": "pwd", "runtime_env": {"working_dir": "/scratch/run"}}
    with service.client(user) as client:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code in {201, 202}, response.text
        assert response.json()["spec"]["runtime_env"]["working_dir"] == "/scratch/run"
