"""The census service unreachable for longer than an agent's spool can hold: the spool stays within its bound,
drops only its oldest reports and counts them, and delivers everything it kept, in order, once the service is back."""

from __future__ import annotations

from pathlib import Path

from tests.integration.faults.harness import FaultAgent, sequences_of, stored_reports
from tests.integration.service.helpers import create_token
from tests.servers import wait_for
from tests.service import ServiceProcess

MAX_REPORTS = 4
MAX_BYTES = 12 * 1024  # three or four reports of this machine (about 3 KiB each)
DROPS = 3  # how many reports each agent must have dropped before the service comes back


def test_outage_past_the_spool_bound_drops_only_the_oldest_counts_them_and_delivers_the_rest_in_order(
    tmp_path: Path,
) -> None:
    """Two real agents report every second, one spool bounded by count (4 reports), one by size (12 KiB).  The
    service is stopped until each agent has dropped at least 3 reports, then started again.  Meanwhile the spool
    never holds more than its bound (the exporter's depth and bytes, sampled throughout); afterwards the missing
    sequence numbers are exactly as many as `suanli_agent_spool_dropped_reports_total` says and form one run (the
    oldest were dropped, the newest kept), and every other report is stored once, in sequence order."""
    url = f"sqlite:///{tmp_path / 'suanli.db'}"
    service = ServiceProcess(url, tmp_path).start()
    agents: list[FaultAgent] = []
    try:
        with service.client() as admin:
            by_count, by_size = (create_token(admin, "agent")["token"] for _ in range(2))
        agents = [
            FaultAgent(tmp_path, service.url, by_count, "bounded-by-count", SPOOL_MAX_REPORTS=str(MAX_REPORTS)).start(),
            FaultAgent(tmp_path, service.url, by_size, "bounded-by-size", SPOOL_MAX_BYTES=str(MAX_BYTES)).start(),
        ]
        wait_for(
            lambda: all(a.metric("suanli_agent_last_push_success_timestamp_seconds") for a in agents),
            60,
            "both agents' first report to be acknowledged",
        )
        service.stop()

        peak_depth = dict.fromkeys((a.node_id for a in agents), 0.0)
        peak_bytes = dict.fromkeys((a.node_id for a in agents), 0.0)

        def dropped_enough() -> bool:
            for agent in agents:
                name = agent.node_id
                peak_depth[name] = max(peak_depth[name], agent.metric("suanli_agent_spool_reports") or 0)
                peak_bytes[name] = max(peak_bytes[name], agent.metric("suanli_agent_spool_bytes") or 0)
            return all((a.metric("suanli_agent_spool_dropped_reports_total") or 0) >= DROPS for a in agents)

        wait_for(dropped_enough, 60, f"both agents to drop {DROPS} reports while the service is down")
        service.start()
        wait_for(lambda: not any(a.spooled() for a in agents), 60, "both spools to drain")
        dropped = {a.node_id: a.metric("suanli_agent_spool_dropped_reports_total") for a in agents}
        left = {a.node_id: a.spooled() for a in agents}
        assert [a.stop() for a in agents] == [0, 0]
    finally:
        for agent in agents:
            agent.kill()
        service.stop()

    assert peak_depth["bounded-by-count"] == MAX_REPORTS
    # The size-bound spool's promise is its bytes; its depth only has to show it held several reports (how many
    # fit depends on this machine's inventory: 7 were seen here, so no report-size guess bounds it from above).
    assert peak_depth["bounded-by-size"] >= 2
    assert 0 < peak_bytes["bounded-by-size"] <= MAX_BYTES
    rows = stored_reports(url)
    for agent in agents:
        stored = sequences_of(rows, agent.node_id)
        assert stored == sorted(set(stored)), f"{agent.node_id}: out of order or stored twice: {stored}"
        made = set(stored) | set(left[agent.node_id])
        missing = sorted(set(range(1, max(made) + 1)) - made)
        count = dropped[agent.node_id]
        assert count is not None
        assert len(missing) == count >= DROPS, f"{agent.node_id}: dropped {count}, missing {missing}"
        assert missing == list(range(missing[0], missing[0] + len(missing))), f"{agent.node_id}: not the oldest"
        assert missing[0] > 1, f"{agent.node_id}: dropped a report made before the outage"
        assert "dropped the oldest report" in agent.log.read_text()
