"""The agent's Prometheus exporter: a custom collector over the latest report and the agent's health.

Built like prometheus/client_python's own collectors: `AgentCollector.collect` reads a consistent snapshot of
`AgentState` and yields metric families at scrape time, so nothing is kept in step by hand.  Names follow
Prometheus conventions (base units, ``_total`` on counters) and pass ``promtool check metrics``.
"""

from __future__ import annotations

from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from census_agent import __version__
from census_agent.agent import Agent
from census_agent.models import Precision, Report


class AgentCollector(Collector):
    """Inventory and peak gauges for the node, and the agent's push and spool health."""

    def __init__(self, agent: Agent) -> None:
        self._agent = agent

    def collect(self) -> Iterator[Metric]:
        """Yield every family, from one snapshot of the agent's state."""
        state = self._agent.state
        spool = self._agent.spool
        with state.lock:
            report = state.report
            last_success = state.last_success_unixtime
            pushes, failures = state.pushes_total, state.push_failures_total
            consecutive, write_errors = state.consecutive_failures, state.spool_write_errors_total
            cycles, collect_errors = state.cycles_total, state.collect_errors_total
        depth, size = spool.depth, spool.size_bytes

        yield from self._node(report)
        yield from self._usage(report)

        info = InfoMetricFamily("suanli_agent_build", "Version of the census agent.")
        info.add_metric([], {"version": __version__})
        yield info
        yield GaugeMetricFamily(
            "suanli_agent_last_push_success_timestamp_seconds",
            "Unix time of the last report the server acknowledged (0: never).",
            value=last_success or 0.0,
        )
        yield CounterMetricFamily("suanli_agent_reports", "Reports built by this agent.", value=cycles)
        yield CounterMetricFamily(
            "suanli_agent_collect_errors", "Cycles in which no report could be built.", value=collect_errors
        )
        yield CounterMetricFamily("suanli_agent_pushes", "Push attempts to the census server.", value=pushes)
        yield CounterMetricFamily(
            "suanli_agent_push_failures", "Push attempts that did not store the report.", value=failures
        )
        yield GaugeMetricFamily(
            "suanli_agent_consecutive_push_failures",
            "Failed pushes since the last success.",
            value=consecutive,
        )
        yield GaugeMetricFamily("suanli_agent_spool_reports", "Reports waiting in the spool.", value=depth)
        yield GaugeMetricFamily("suanli_agent_spool_bytes", "Bytes of the reports waiting in the spool.", value=size)
        yield CounterMetricFamily(
            "suanli_agent_spool_dropped_reports",
            "Oldest reports dropped because the spool was over its bound.",
            value=spool.dropped_total,
        )
        yield CounterMetricFamily(
            "suanli_agent_rejected_reports",
            "Reports the server refused as invalid (kept in the spool's rejected/ folder).",
            value=spool.rejected_total,
        )
        yield CounterMetricFamily(
            "suanli_agent_spool_write_errors",
            "Reports that could not be written to the spool.",
            value=write_errors,
        )

    @staticmethod
    def _node(report: Report | None) -> Iterator[Metric]:
        if report is None:
            return
        inv = report.inventory
        node = InfoMetricFamily("suanli_node", "Identity and census tier of this node.")
        node.add_metric(
            [],
            {
                "node_id": inv.host.node_id,
                "hostname": inv.host.hostname,
                "tier": report.tier.tier.value,
                "region": inv.labels.region or "",
                "organisation": inv.labels.organisation or "",
                "architecture": inv.cpu.architecture,
                "cpu_model": inv.cpu.model_name,
            },
        )
        yield node
        yield GaugeMetricFamily("suanli_node_cpu_sockets", "CPU sockets.", value=inv.cpu.sockets)
        yield GaugeMetricFamily("suanli_node_cpu_cores", "Physical CPU cores.", value=inv.cpu.physical_cores)
        yield GaugeMetricFamily("suanli_node_cpu_threads", "Logical CPUs (hardware threads).", value=inv.cpu.threads)
        yield GaugeMetricFamily(
            "suanli_node_cpu_base_clock_hertz",
            "CPU base clock used for peaks.",
            value=inv.cpu.base_clock_hz or 0.0,
        )
        yield GaugeMetricFamily("suanli_node_memory_bytes", "Main memory.", value=inv.memory.total_bytes)
        yield GaugeMetricFamily(
            "suanli_node_memory_available_bytes", "Main memory available.", value=inv.memory.available_bytes
        )
        accelerators = GaugeMetricFamily(
            "suanli_node_accelerators", "Accelerators on this node by model.", labels=["vendor", "model"]
        )
        counts: dict[tuple[str, str], int] = {}
        for acc in inv.accelerators:
            counts[(acc.vendor, acc.model)] = counts.get((acc.vendor, acc.model), 0) + 1
        for (vendor, model), count in sorted(counts.items()):
            accelerators.add_metric([vendor, model], count)
        yield accelerators
        acc_memory = GaugeMetricFamily(
            "suanli_node_accelerator_memory_bytes", "Memory of each accelerator.", labels=["index", "model"]
        )
        for acc in inv.accelerators:
            if acc.memory_bytes is not None:
                acc_memory.add_metric([str(acc.index), acc.model], acc.memory_bytes)
        yield acc_memory
        peak = GaugeMetricFamily(
            "suanli_node_peak_flops",
            "Peak (Rpeak) throughput of this node per precision (int8 in ops/s); provenance says how it was obtained.",
            labels=["precision", "provenance"],
        )
        for precision in Precision:
            figure = report.peaks.figures[precision]
            peak.add_metric([precision.value, figure.provenance.value], figure.flops)
        yield peak
        component = GaugeMetricFamily(
            "suanli_node_component_peak_flops",
            "Peak throughput of each component (the CPUs, each accelerator) per precision.",
            labels=["component", "model", "precision", "provenance"],
        )
        for part in report.peaks.components:
            for precision, fig in part.figures.items():
                component.add_metric([part.component, part.model, precision.value, fig.provenance.value], fig.flops)
        yield component
        if report.measurements:
            measured = GaugeMetricFamily(
                "suanli_node_measured_flops",
                "Measured dense matrix-multiply rate (Rmax-like).",
                labels=["precision"],
            )
            for m in report.measurements:
                measured.add_metric([m.precision.value], m.flops)
            yield measured

    @staticmethod
    def _usage(report: Report | None) -> Iterator[Metric]:
        """The consumed layer of the latest report: absent until the agent's second cycle."""
        usage = report.usage if report is not None else None
        if report is None or usage is None:
            return
        yield GaugeMetricFamily(
            "suanli_node_cpu_busy_cores",
            "Logical CPUs busy on average over the last interval (from /proc/stat).",
            value=usage.cpu_busy_cores,
        )
        yield GaugeMetricFamily(
            "suanli_node_memory_used_bytes",
            "Main memory in use (MemTotal - MemAvailable).",
            value=usage.memory_used_bytes,
        )
        yield GaugeMetricFamily(
            "suanli_node_usage_interval_seconds",
            "Length of the interval the usage figures cover.",
            value=usage.interval_seconds,
        )
        models = {acc.index: acc.model for acc in report.inventory.accelerators}
        families = {
            "utilisation": GaugeMetricFamily(
                "suanli_node_accelerator_utilisation_ratio",
                "Share of the last sample period each accelerator was busy (NVML utilization.gpu).",
                labels=["index", "model"],
            ),
            "memory_used_bytes": GaugeMetricFamily(
                "suanli_node_accelerator_memory_used_bytes",
                "Memory in use on each accelerator.",
                labels=["index", "model"],
            ),
            "power_watts": GaugeMetricFamily(
                "suanli_node_accelerator_power_watts", "Power draw of each accelerator.", labels=["index", "model"]
            ),
            "power_limit_watts": GaugeMetricFamily(
                "suanli_node_accelerator_power_limit_watts",
                "Power limit each accelerator's driver enforces.",
                labels=["index", "model"],
            ),
        }
        for acc in usage.accelerators:
            labels = [str(acc.index), models.get(acc.index, "")]
            for name, family in families.items():
                value = getattr(acc, name)
                if value is not None:
                    family.add_metric(labels, value)
        yield from families.values()
        power = GaugeMetricFamily(
            "suanli_node_power_watts",
            "Power read without privilege: coverage cpu-package (RAPL package domains) or accelerators (NVML).",
            labels=["coverage", "source"],
        )
        for reading in usage.power:
            power.add_metric([reading.coverage, reading.source], reading.watts)
        yield power


def registry_for(agent: Agent) -> CollectorRegistry:
    """A registry with the agent collector and the standard process metrics."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(AgentCollector(agent))
    ProcessCollector(registry=registry)
    return registry


def serve(agent: Agent, host: str, port: int) -> WSGIServer:
    """Start the exporter on host:port in a daemon thread; returns the server (``server.server_port``)."""
    server, _thread = start_http_server(port, addr=host, registry=registry_for(agent))
    return server
