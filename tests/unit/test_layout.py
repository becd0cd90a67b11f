"""The package layout's promises that import-linter cannot see: what importing the CLI actually loads."""

import json
import subprocess
import sys

SERVER_PACKAGES = ("fastapi", "starlette", "sqlalchemy", "ray", "kubernetes", "uvicorn", "alembic")


def test_importing_the_cli_and_sdk_loads_no_server_package() -> None:
    """`suanli --help` and the SDK run on a user's laptop: importing them must not pull in the server's stack."""
    code = (
        "import json, sys; import api.cli.main, api.cli.client, api.cli.jobs, api.cli.k8s; "
        f"print(json.dumps(sorted(m for m in {SERVER_PACKAGES!r} if m in sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(done.stdout) == []


def test_the_client_commands_start_without_pydantic() -> None:
    """`suanli census`, `nodes`, `token`, `submit`...: a command that prints what the service sends loads no pydantic
    (a third of its start-up: the report models behind `census_agent.render`); its tables come from
    `census_agent.units`. Only serve, up and k8s-sync load the models, when they run."""
    code = "import sys, api.cli.main; print('pydantic' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"


def test_the_seeded_regions_are_read_without_sqlalchemy() -> None:
    """`suanli k8s-sync --dry-run` checks region codes against the seed file on an operator's machine: reading it
    (`api.db.seed.region_rows`) loads no SQLAlchemy."""
    code = "import sys; from api.db.seed import region_rows; region_rows(); print('sqlalchemy' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "False"


def test_python_dash_m_api_cli_is_the_suanli_command() -> None:
    """`python -m api.cli --help` answers like the installed `suanli` entry point."""
    done = subprocess.run(
        [sys.executable, "-m", "api.cli", "--help"], capture_output=True, text=True, timeout=60, check=True
    )
    assert "usage: suanli" in done.stdout


def test_the_service_imports_ray_only_when_a_scheduler_is_configured() -> None:
    """Ray is half of the service's import time: `api.app` must not load it until a scheduler is built."""
    code = "import sys, api.app; print('ray' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "False"
