"""The job store after an upgrade (`api.jobs.store.SqlJobStore.waiting`), on a real SQLite file: a queued job
stored under rules this version refuses fails alone, with the reason, instead of failing every dispatcher step."""

import json
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select, update

from api.db.engine import make_engine, migrate, write_transaction
from api.db.tables import job_events, jobs
from api.jobs.store import SqlJobStore, create
from scheduler.models import JobSpec


def test_a_queued_job_whose_stored_spec_no_longer_validates_is_failed_and_the_others_still_wait(
    tmp_path: Path,
) -> None:
    """An older version stored a service-host working directory (`data`); this one refuses it: that job ends
    failed naming `runtime_env.working_dir`, an event records it, and the valid job is still handed out."""
    engine = make_engine(f"sqlite:///{tmp_path / 'suanli.db'}")
    migrate(engine)
    spec = JobSpec.model_validate({"name": "ok", "class": "general", "entrypoint": "true"})
    now = datetime.now(tz=UTC)
    with write_transaction(engine) as conn:
        good = create(conn, spec, "alice", now, "queued", owner_id=None)
        old = create(conn, spec, "mallory", now, "queued", owner_id=None)
        stored = json.loads(spec.model_dump_json(by_alias=True)) | {"runtime_env": {"working_dir": "data"}}
        conn.execute(update(jobs).where(jobs.c.job_id == old).values(spec=json.dumps(stored)))

    waiting = SqlJobStore(engine).waiting()

    assert [job.job_id for job in waiting] == [good]
    with engine.connect() as conn:
        state, reason = conn.execute(select(jobs.c.state, jobs.c.reason).where(jobs.c.job_id == old)).one()
        events = conn.execute(select(job_events.c.state).where(job_events.c.job_id == old)).scalars().all()
    assert state == "failed"
    assert "runtime_env.working_dir" in reason
    assert events[-1] == "failed"
    assert [job.job_id for job in SqlJobStore(engine).waiting()] == [good]
