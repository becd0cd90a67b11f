"""The Helm chart, checked with a real helm: lint, render, Kubernetes schemas, and agreement with the code.

Rendered manifests of built-in kinds are validated offline against the Kubernetes OpenAPI schemas that
`kubernetes_validate` ships (strict: unknown fields are errors), at the chart's oldest supported Kubernetes
(1.25) and a current one (1.33).  The two CRD kinds it cannot know (KubeRay's RayCluster, the Prometheus
Operator's ServiceMonitor) are checked by `check_crd_object` below: apiVersion, kind and the fields their
operators require, not their full schemas.
"""

from __future__ import annotations

import base64
import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest

from api.settings import Settings
from census_agent.config import AgentConfig, load_config
from scheduler.config import SchedulerConfig
from tests.deploy.helm import CHART, FULL_VALUES, NAMESPACE, RELEASE, ROOT, find, helm, template

KUBERNETES_VERSIONS = ("1.25.0", "1.33.0")
CRD_KINDS = {("ray.io/v1", "RayCluster"), ("monitoring.coreos.com/v1", "ServiceMonitor")}
TIERS = ("general", "ai", "hpc", "edge")
VALUE_SETS = {"default": (), "full": ("-f", str(FULL_VALUES))}


@pytest.fixture(scope="module")
def default_docs() -> list[dict[str, Any]]:
    return template()


@pytest.fixture(scope="module")
def full_docs() -> list[dict[str, Any]]:
    return template("-f", str(FULL_VALUES))


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(where, pod spec) of every pod template rendered: Deployments, DaemonSets, RayCluster heads and workers."""
    found = []
    for doc in docs:
        name = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in ("Deployment", "DaemonSet"):
            found.append((name, doc["spec"]["template"]["spec"]))
        elif doc["kind"] == "RayCluster":
            found.append((f"{name} head", doc["spec"]["headGroupSpec"]["template"]["spec"]))
            found += [(f"{name} {g['groupName']}", g["template"]["spec"]) for g in doc["spec"]["workerGroupSpecs"]]
    return found


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's literal environment, with $(VAR) references expanded; secret/field refs as placeholders."""
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            value = item["value"]
            for name, known in env.items():
                value = value.replace(f"$({name})", known)
            env[item["name"]] = value
        else:
            env[item["name"]] = "node-a" if item["name"] == "NODE_NAME" else "from-a-reference"
    return env


def check_crd_object(doc: dict[str, Any]) -> None:
    """The explicit check for the CRD kinds kubernetes_validate cannot know: what their operators require."""
    spec = doc["spec"]
    assert doc["metadata"]["name"]
    if doc["kind"] == "RayCluster":
        assert spec["rayVersion"]
        groups = [("head", spec["headGroupSpec"])] + [(g["groupName"], g) for g in spec["workerGroupSpecs"]]
        for group_name, group in groups:
            assert isinstance(group["rayStartParams"], dict), group_name
            assert all(isinstance(v, str) for v in group["rayStartParams"].values()), "rayStartParams are strings"
            containers = group["template"]["spec"]["containers"]
            assert containers, group_name
            assert all(c["name"] and c["image"] for c in containers)
        for group in spec["workerGroupSpecs"]:
            assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    else:  # ServiceMonitor
        assert spec["selector"]["matchLabels"]
        assert spec["endpoints"]
        for endpoint in spec["endpoints"]:
            assert endpoint["port"]
            if "authorization" in endpoint:
                credentials = endpoint["authorization"]["credentials"]
                assert credentials["name"]
                assert credentials["key"]


@pytest.mark.parametrize("values", VALUE_SETS)
def test_helm_lint_strict_passes(values: str) -> None:
    """`helm lint --strict` finds nothing to say about the chart with the default and with the full values."""
    result = helm("lint", "--strict", str(CHART), *VALUE_SETS[values])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("values", VALUE_SETS)
def test_rendered_manifests_are_valid_kubernetes_objects(values: str, version: str) -> None:
    """Every object `helm template` renders validates (strict) against the Kubernetes schemas of `version`; the
    CRD kinds (RayCluster, ServiceMonitor) pass the explicit check instead; no other kind appears."""
    docs = template(*VALUE_SETS[values])
    assert docs
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            check_crd_object(doc)
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} is invalid for Kubernetes {version}: {exc}")


def test_full_values_turn_every_optional_part_on(full_docs: list[dict[str, Any]]) -> None:
    """ci/full-values.yaml renders every optional object: ingress, a RayCluster per tier, both ServiceMonitors,
    discovery RBAC, the GPU DaemonSet and the scheduler's ConfigMap; and no PVC (PostgreSQL)."""
    kinds = {d["kind"] for d in full_docs}
    assert {"Ingress", "RayCluster", "ServiceMonitor", "ClusterRole", "DaemonSet", "ConfigMap"} <= kinds
    assert sorted(d["metadata"]["labels"]["suanli.io/tier"] for d in find(full_docs, "RayCluster")) == sorted(TIERS)
    assert len(find(full_docs, "ServiceMonitor")) == 2
    assert len(find(full_docs, "DaemonSet")) == 2
    assert not find(full_docs, "PersistentVolumeClaim")


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (("--set", "api.replicaz=2"), "replicaz"),
        (("--set", "agent.settings.intervall_seconds=30"), "intervall_seconds"),
        (("--set", "database.type=mysql"), "database"),
        (("--set", "api.replicas=2"), "replicas"),  # SQLite (the default) allows one writer
        (("--set", "agent.labels.region=Tianhe"), "region"),
        (("--set", "agent.token.mode=shared"), "mode"),
        (("--set", "agent.state.hostPath="), "agent.token.mode enrol needs agent.state.hostPath"),
        (("--set", "agent.token.mode=nodeFile", "--set", "agent.state.hostPath="), "nodeFile needs agent.state"),
        (("--set", "agent.token.mode=perNode"), "every node's agent token into every agent pod"),
        (("--set", "adminToken.value=short"), "at least 32 characters"),
        (("--set", "enrolment.knownNodesOnly=true"), "needs discovery.kubernetes.enabled"),
        (("--set", "enrolment.tokenTtlSeconds=9999999"), "must not exceed enrolment.maxTokenTtlSeconds"),
        (("--set", "authFailures.burst=-1"), "burst"),
        (("--set", "authFailures.trustedProxies[0]=ingress.local"), "trustedProxies"),
    ],
)
def test_values_schema_rejects_typos_and_bad_values(args: tuple[str, str], complaint: str) -> None:
    """values.schema.json makes helm refuse a misspelt key, an unknown database, two SQLite replicas, a region
    that is not a six-digit code, an unknown token mode, a negative failure burst and a proxy that is not an
    address; the chart refuses enrolment (or node files) without a state directory that outlives the pod, the old
    perNode token mode, a short admin token, known-nodes-only enrolment without discovery and a default
    enrolment-token lifetime over the maximum: `helm template` exits non-zero and names the problem."""
    result = helm("template", RELEASE, str(CHART), *args)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_default_install_is_one_sqlite_replica_with_probes_and_a_volume(default_docs: list[dict[str, Any]]) -> None:
    """Default: the API on SQLite in a PVC, one replica, strategy Recreate, probes on /healthz and /readyz, and the
    admin token read from the chart's own Secret (never generated by the service, so never printed)."""
    (deployment,) = find(default_docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    (api,) = pod["containers"]
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = container_env(api)
    assert env["SUANLI_DATABASE_URL"] == "sqlite:////data/suanli.db"
    assert env["SUANLI_ADMIN_TOKEN_FILE"] == "/etc/suanli/admin/admin-token"
    assert {m["mountPath"] for m in api["volumeMounts"]} >= {"/data", "/tmp"}
    (claim,) = find(default_docs, "PersistentVolumeClaim")
    assert pod["volumes"][1]["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
    assert pod["automountServiceAccountToken"] is False


def test_postgresql_from_a_secret_allows_rolling_updates(full_docs: list[dict[str, Any]]) -> None:
    """With PostgreSQL the URL comes from the named Secret, replicas may grow, and the admin token is mounted
    from its Secret as the file the service reads at first start."""
    (deployment,) = find(full_docs, "Deployment")
    assert deployment["spec"]["strategy"]["type"] == "RollingUpdate"
    assert deployment["spec"]["replicas"] == 2
    (api,) = deployment["spec"]["template"]["spec"]["containers"]
    url = next(e for e in api["env"] if e["name"] == "SUANLI_DATABASE_URL")
    assert url["valueFrom"]["secretKeyRef"] == {"name": "suanli-database", "key": "database-url"}
    admin_file = container_env(api)["SUANLI_ADMIN_TOKEN_FILE"]
    mount = next(m for m in api["volumeMounts"] if m["name"] == "admin-token")
    assert admin_file == f"{mount['mountPath']}/admin-token"
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "admin-token")
    assert volume["secret"]["secretName"] == "suanli-admin"


def test_several_postgresql_replicas_get_a_disruption_budget_and_all_run_serve() -> None:
    """On PostgreSQL, three API replicas render one PodDisruptionBudget selecting exactly the API pods (at most one
    evicted at a time, or the value given), and every replica runs plain `serve` (its default role, all: the
    singleton duties are elected among the replicas, not split into another Deployment); one replica gets no budget,
    as a budget that allows no eviction would block every drain; SQLite refuses a second replica (above)."""
    postgresql = ("--set", "database.type=postgresql", "--set", "database.postgresql.existingSecret=db")
    docs = template(*postgresql, "--set", "api.replicas=3")
    (deployment,) = find(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 3
    (api,) = deployment["spec"]["template"]["spec"]["containers"]
    assert api["args"] == ["serve"]
    (budget,) = find(docs, "PodDisruptionBudget")
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["maxUnavailable"] == 1
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = budget["spec"]["selector"]["matchLabels"]
    assert selector == deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    for doc in docs:  # the budget selects no other pods (the agents')
        if doc["kind"] == "DaemonSet":
            assert not selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(budget, version, strict=True)
    wider = template(*postgresql, "--set", "api.replicas=5", "--set", "api.podDisruptionBudget.maxUnavailable=2")
    assert find(wider, "PodDisruptionBudget")[0]["spec"]["maxUnavailable"] == 2
    assert not find(template(*postgresql, "--set", "api.replicas=1"), "PodDisruptionBudget")
    assert not find(template(), "PodDisruptionBudget")
    refused = helm("template", RELEASE, str(CHART), *postgresql, "--set", "api.podDisruptionBudget.maxUnavailable=0")
    assert refused.returncode != 0
    assert "maxUnavailable" in refused.stderr


@pytest.mark.parametrize("values", VALUE_SETS)
def test_every_container_is_non_root_with_requests_and_limits(values: str) -> None:
    """Every container the chart runs (Ray's too) has resource requests and limits and cannot escalate; the
    chart's own pods run as a non-root user on a read-only root filesystem; the one container that runs as root
    is the agent's state-owner init step."""
    for where, pod in pod_specs(template(*VALUE_SETS[values])):
        for container in pod.get("initContainers", []) + pod["containers"]:
            if container.get("securityContext", {}).get("runAsUser") == 0:
                assert container["name"] == "state-owner", where
            assert container["resources"]["requests"], where
            assert container["resources"]["limits"], where
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, where
            if not where.startswith("RayCluster"):
                assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
        if not where.startswith("RayCluster"):
            assert pod["securityContext"]["runAsNonRoot"] is True, where
            assert pod["securityContext"]["runAsUser"] != 0, where


def test_service_environment_is_accepted_by_the_service_settings(
    full_docs: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every SUANLI_* variable the chart gives the API is a setting api.settings.Settings accepts with that value,
    and the schema's api.settings names only real settings."""
    (deployment,) = find(full_docs, "Deployment")
    env = container_env(deployment["spec"]["template"]["spec"]["containers"][0])
    for name in [n for n in os.environ if n.startswith("SUANLI_")]:
        monkeypatch.delenv(name)
    suanli = {k: v for k, v in env.items() if k.startswith("SUANLI_")}
    suanli["SUANLI_DATABASE_URL"] = "postgresql://user@db:5432/suanli"
    assert {k.removeprefix("SUANLI_").lower() for k in suanli} <= set(Settings.model_fields)
    for name, value in suanli.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.host == "0.0.0.0"
    assert settings.stale_after_seconds == 180
    assert settings.headline["ai"] == "fp16"  # type: ignore[index]
    assert (settings.enrol_token_ttl_seconds, settings.enrol_token_max_ttl_seconds) == (604800, 2592000)
    assert settings.enrol_known_nodes_only is True
    assert (settings.auth_failure_burst, settings.auth_failure_window_seconds) == (50, 120.0)
    assert [str(n) for n in settings.trusted_proxies] == ["10.244.0.0/16", "fd00::/8"]
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(schema["properties"]["api"]["properties"]["settings"]["properties"]) <= set(Settings.model_fields)


@pytest.mark.parametrize("values", VALUE_SETS)
def test_agent_environment_and_generated_config_are_accepted_by_the_agent(values: str, tmp_path: Path) -> None:
    """The agent containers' SUANLI_AGENT_* environment and the config file the init container writes load with
    census_agent.config.load_config; the root is /host where the host's proc and sys are mounted read-only. By
    default (token mode enrol) the agent trades the shared enrolment token for its own, kept in the node's state
    directory (the full values: from an existing Secret)."""
    docs = template(*VALUE_SETS[values])
    config_file = tmp_path / "agent.toml"
    config_file.write_text('[labels]\nregion = "440106"\n')
    for daemonset in find(docs, "DaemonSet"):
        pod = daemonset["spec"]["template"]["spec"]
        (agent,) = pod["containers"]
        env = {k: v for k, v in container_env(agent).items() if k.startswith("SUANLI_AGENT_")}
        args = agent["args"]
        assert args[0] == "run"
        config = load_config(config_file if "--config" in args else None, environ=env)
        assert isinstance(config, AgentConfig)
        assert config.root == Path("/host")
        assert config.enrol_token_file == Path("/etc/suanli/agent-tokens/enrol-token")
        assert config.token_file == Path("/var/lib/suanli-agent/agent.token")
        assert config.metrics_port == 9464
        mounts = {m["mountPath"]: m for m in agent["volumeMounts"]}
        for host_path in ("/proc", "/sys", "/etc/machine-id"):
            mount = mounts[f"/host{host_path}"]
            assert mount["readOnly"] is True
            volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
            assert volume["hostPath"]["path"] == host_path
        assert config.spool_dir.is_relative_to(Path(next(p for p in mounts if p.startswith("/var/lib"))))
        assert pod["automountServiceAccountToken"] is False
        schema = json.loads((CHART / "values.schema.json").read_text())
        agent_schema = schema["properties"]["agent"]["properties"]
        assert set(agent_schema["settings"]["properties"]) <= set(AgentConfig.model_fields)


def test_the_agents_state_outlives_the_pod_in_a_host_directory_handed_over_by_a_minimal_root_step(
    default_docs: list[dict[str, Any]],
) -> None:
    """The spool and the node's own token live in a hostPath (so an enrolled node keeps its token and its unsent
    reports across pod restarts and upgrades); the only root step is an init container that chowns it to the
    agent's user with CAP_CHOWN and CAP_FOWNER alone, while the agent itself runs as that non-root user."""
    (daemonset,) = find(default_docs, "DaemonSet")
    pod = daemonset["spec"]["template"]["spec"]
    state = next(v for v in pod["volumes"] if v["name"] == "state")
    assert state["hostPath"] == {"path": "/var/lib/suanli-agent", "type": "DirectoryOrCreate"}
    owner = next(c for c in pod["initContainers"] if c["name"] == "state-owner")
    user, group = pod["securityContext"]["runAsUser"], pod["securityContext"]["runAsGroup"]
    assert owner["command"] == ["chown", f"{user}:{group}", "/var/lib/suanli-agent"]
    assert owner["securityContext"]["runAsUser"] == 0
    assert owner["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["CHOWN", "FOWNER"]}
    assert owner["securityContext"]["allowPrivilegeEscalation"] is False
    (agent,) = pod["containers"]
    assert "runAsUser" not in agent["securityContext"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_gpu_nodes_get_their_own_daemonset_with_the_nvidia_runtime(full_docs: list[dict[str, Any]]) -> None:
    """With agent.gpu: the -gpu DaemonSet runs on the GPU nodes with runtimeClassName nvidia and NVML on; the
    other DaemonSet keeps off those nodes and leaves NVML off."""
    plain, gpu = sorted(find(full_docs, "DaemonSet"), key=lambda d: d["metadata"]["name"])
    assert gpu["metadata"]["name"].endswith("-agent-gpu")
    gpu_pod, plain_pod = gpu["spec"]["template"]["spec"], plain["spec"]["template"]["spec"]
    assert gpu_pod["runtimeClassName"] == "nvidia"
    assert gpu_pod["nodeSelector"]["nvidia.com/gpu.present"] == "true"
    assert "runtimeClassName" not in plain_pod
    (term,) = plain_pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term["matchExpressions"] == [{"key": "nvidia.com/gpu.present", "operator": "NotIn", "values": ["true"]}]
    assert container_env(gpu_pod["containers"][0])["SUANLI_AGENT_NVML"] == "true"
    assert container_env(plain_pod["containers"][0])["SUANLI_AGENT_NVML"] == "false"
    assert plain["spec"]["selector"] != gpu["spec"]["selector"]


def test_rbac_is_only_what_is_used(default_docs: list[dict[str, Any]], full_docs: list[dict[str, Any]]) -> None:
    """RBAC grants only reads of Nodes: `get` for the agent's node-labels init container, get/list/watch for
    Kubernetes discovery when enabled; with no node labels mapped and discovery off there is no RBAC at all."""

    def rules(docs: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        assert not find(docs, "Role")
        return {d["metadata"]["name"]: d["rules"] for d in find(docs, "ClusterRole")}

    nodes = {"apiGroups": [""], "resources": ["nodes"]}
    assert list(rules(default_docs).values()) == [[{**nodes, "verbs": ["get"]}]]
    full = rules(full_docs)
    assert sorted(r[0]["verbs"] for r in full.values()) == [["get"], ["get", "list", "watch"]]
    assert all(len(r) == 1 and r[0]["resources"] == ["nodes"] for r in full.values())
    for binding in find(full_docs, "ClusterRoleBinding"):
        (subject,) = binding["subjects"]
        assert subject["kind"] == "ServiceAccount"
        assert subject["namespace"] == NAMESPACE
    no_labels = [f"--set=agent.nodeLabels.{label}=" for label in ("region", "organisation", "site", "tier")]
    bare = template(*no_labels)
    assert not find(bare, "ClusterRole")
    assert not find(bare, "ClusterRoleBinding")
    (daemonset,) = find(bare, "DaemonSet")
    init = [c["name"] for c in daemonset["spec"]["template"]["spec"]["initContainers"]]
    assert init == ["state-owner"]  # no node-labels init container, so no Kubernetes API access


def test_scheduler_config_routes_each_tier_to_its_ray_cluster(full_docs: list[dict[str, Any]], tmp_path: Path) -> None:
    """With KubeRay on, the generated scheduler.toml loads with scheduler.config (its token files as the API pod
    mounts them) and sends each tier to the Jobs API of the RayCluster whose raylets all start with --labels
    suanli.io/tier=<tier>."""
    (configmap,) = find(full_docs, "ConfigMap", f"{RELEASE}-suanli-scheduler")
    text = configmap["data"]["scheduler.toml"]
    config = SchedulerConfig.parse(mount_ray_tokens(full_docs, text, tmp_path))
    assert tomllib.loads(text)["policy"]["quotas"]["*"]["ai"]["gpus"] == 16
    for cluster in find(full_docs, "RayCluster"):
        tier = cluster["metadata"]["labels"]["suanli.io/tier"]
        groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
        assert {g["rayStartParams"]["labels"] for g in groups} == {f"suanli.io/tier={tier}"}
        head_service = f"{cluster['metadata']['name']}-head-svc.{NAMESPACE}.svc:8265"
        target = {t.value: v for t, v in config.targets.items()}[tier]
        assert target.address == f"http://{head_service}"
        assert target.gcs == head_service.replace(":8265", ":6379")  # where the dispatcher reads what is free


def test_service_monitors_select_the_rendered_services(full_docs: list[dict[str, Any]]) -> None:
    """Each ServiceMonitor selects a rendered Service by its labels and scrapes a port that Service names; the
    API's carries the operator token /metrics requires."""
    services = find(full_docs, "Service")
    for monitor in find(full_docs, "ServiceMonitor"):
        wanted = monitor["spec"]["selector"]["matchLabels"]
        matches = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        assert len(matches) == 1, monitor["metadata"]["name"]
        ports = {p["name"] for p in matches[0]["spec"]["ports"]}
        assert {e["port"] for e in monitor["spec"]["endpoints"]} <= ports
    api_monitor = next(m for m in find(full_docs, "ServiceMonitor") if m["metadata"]["name"].endswith("-api"))
    assert api_monitor["spec"]["endpoints"][0]["authorization"]["credentials"]["name"] == "suanli-prometheus-token"


def test_chart_version_matches_the_package() -> None:
    """The chart's appVersion (the default image tag) is the package version in pyproject.toml."""
    chart = (CHART / "Chart.yaml").read_text()
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f'appVersion: "{version}"' in chart


# --- secrets stay out of logs and away from other nodes ---------------------------------------------------------


def admin_token_secret(docs: list[dict[str, Any]]) -> dict[str, Any] | None:
    found = find(docs, "Secret", f"{RELEASE}-suanli-admin-token")
    return found[0] if found else None


def test_the_chart_generates_the_first_admin_token_into_a_kept_secret_that_the_api_reads(
    default_docs: list[dict[str, Any]],
) -> None:
    """With no admin token named, the chart makes a Secret holding a random sl_admin_ token of 43 alphanumerics
    (256 bits; another render, another token), kept on uninstall (the database keeps the token it was first
    given); the API mounts only that key, read-only, as the file SUANLI_ADMIN_TOKEN_FILE names, and no token is in
    any container's environment."""
    secret = admin_token_secret(default_docs)
    assert secret is not None
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    token = base64.b64decode(secret["data"]["admin-token"]).decode()
    assert re.fullmatch(r"sl_admin_[A-Za-z0-9]{43}", token), token
    again = admin_token_secret(template())
    assert again is not None
    assert again["data"]["admin-token"] != secret["data"]["admin-token"]
    (deployment,) = find(default_docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if v["name"] == "admin-token")
    assert volume["secret"] == {
        "secretName": secret["metadata"]["name"],
        "defaultMode": 0o400,
        "items": [{"key": "admin-token", "path": "admin-token"}],
    }
    for where, spec in pod_specs(default_docs):
        for container in spec.get("initContainers", []) + spec["containers"]:
            assert not any(token in str(e.get("value", "")) for e in container.get("env", [])), where


def test_an_admin_token_given_as_a_value_or_an_existing_secret_is_used_as_given() -> None:
    """adminToken.value becomes the chart's Secret as given; adminToken.existingSecret makes the chart create no
    admin Secret and mount the one named."""
    given = "a" * 40
    secret = admin_token_secret(template("--set", f"adminToken.value={given}"))
    assert secret is not None
    assert base64.b64decode(secret["data"]["admin-token"]).decode() == given
    docs = template("--set", "adminToken.existingSecret=mine", "--set", "adminToken.existingSecretKey=token")
    assert admin_token_secret(docs) is None
    (deployment,) = find(docs, "Deployment")
    (api,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container_env(api)["SUANLI_ADMIN_TOKEN_FILE"] == "/etc/suanli/admin/token"
    volume = next(v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "admin-token")
    assert volume["secret"]["secretName"] == "mine"


@pytest.mark.parametrize(
    ("args", "mounted_key", "token_file"),
    [
        ((), "enrol-token", "/var/lib/suanli-agent/agent.token"),
        (("-f", str(FULL_VALUES)), "enrol-token", "/var/lib/suanli-agent/agent.token"),
        (
            ("--set", "agent.token.mode=single", "--set", "agent.token.key=node-a"),
            "node-a",
            "/etc/suanli/agent-tokens/node-a",
        ),
        (("--set", "agent.token.mode=nodeFile"), None, "/var/lib/suanli-agent/agent.token"),
    ],
)
def test_an_agent_pod_gets_at_most_the_one_token_it_reads(
    args: tuple[str, ...], mounted_key: str | None, token_file: str
) -> None:
    """Whatever the token mode, an agent pod mounts at most one key of the tokens Secret (the enrolment token, or
    a single node's token), never the whole Secret; with mode nodeFile it mounts none and reads the node's own
    token from its state directory on the node. Even with many tokens in the values, only the one key reaches a
    pod; the manifests stay valid Kubernetes objects."""
    many = (
        "--set",
        "agent.token.tokens.enrol-token=e",
        "--set",
        "agent.token.tokens.node-a=a",
        "--set",
        "agent.token.tokens.node-b=b",
    )
    docs = template(*args, *many)
    daemonsets = find(docs, "DaemonSet")
    assert daemonsets
    for daemonset in daemonsets:
        pod = daemonset["spec"]["template"]["spec"]
        (agent,) = pod["containers"]
        assert container_env(agent)["SUANLI_AGENT_TOKEN_FILE"] == token_file
        secrets = [v for v in pod["volumes"] if "secret" in v and v["name"] == "agent-tokens"]
        if mounted_key is None:
            assert not secrets
            assert not any(m["name"] == "agent-tokens" for m in agent["volumeMounts"])
        else:
            (volume,) = secrets
            assert volume["secret"]["items"] == [{"key": mounted_key, "path": mounted_key}]
    if mounted_key is None:
        assert not find(docs, "Secret", f"{RELEASE}-suanli-agent-tokens")
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) not in CRD_KINDS:
            kubernetes_validate.validate(doc, "1.33.0", strict=True)


def test_enrolment_bounds_and_failure_limits_reach_the_service() -> None:
    """By default the API gets a 24 h enrolment-token lifetime, a 30-day maximum, enrolment of any node, 30
    failures per minute per address and no trusted proxy; with discovery on, knownNodesOnly turns on only-known
    enrolment."""
    (deployment,) = find(template(), "Deployment")
    env = container_env(deployment["spec"]["template"]["spec"]["containers"][0])
    assert env["SUANLI_ENROL_TOKEN_TTL_SECONDS"] == "86400"
    assert env["SUANLI_ENROL_TOKEN_MAX_TTL_SECONDS"] == "2592000"
    assert env["SUANLI_ENROL_KNOWN_NODES_ONLY"] == "false"
    assert (env["SUANLI_AUTH_FAILURE_BURST"], env["SUANLI_AUTH_FAILURE_WINDOW_SECONDS"]) == ("30", "60")
    assert env["SUANLI_TRUSTED_PROXIES"] == "[]"
    known = ("--set", "discovery.kubernetes.enabled=true", "--set", "enrolment.knownNodesOnly=true")
    (deployment,) = find(template(*known), "Deployment")
    assert (
        container_env(deployment["spec"]["template"]["spec"]["containers"][0])["SUANLI_ENROL_KNOWN_NODES_ONLY"]
        == "true"
    )


# -- Ray's control plane: token authentication and NetworkPolicies ------------------------------------------------


def mount_ray_tokens(docs: list[dict[str, Any]], scheduler_toml: str, root: Path) -> str:
    """Lay out under `root` the API pod's ray-tokens volume as Kubernetes would (each projected Secret item a file
    with the volume's defaultMode, from the rendered Secret's data) and return `scheduler_toml` with the mount path
    pointing there: what the scheduler reads in the pod."""
    (deployment,) = find(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "ray-tokens"]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == "ray-tokens"]
    mode = volume["projected"]["defaultMode"]
    for source in volume["projected"]["sources"]:
        (secret,) = find(docs, "Secret", source["secret"]["name"])
        for item in source["secret"]["items"]:
            path = root / item["path"]
            path.write_bytes(base64.b64decode(secret["data"][item["key"]]))
            path.chmod(mode)
    return scheduler_toml.replace(mount["mountPath"] + "/", f"{root}/")


def ray_auth_env(container: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
    """(RAY_AUTH_MODE's value, RAY_AUTH_TOKEN's secretKeyRef) of a container or autoscalerOptions."""
    env = {item["name"]: item for item in container.get("env", [])}
    mode = env.get("RAY_AUTH_MODE", {}).get("value")
    token = env.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef")
    return mode, token


def test_every_ray_process_runs_with_token_auth_and_its_own_clusters_token(
    full_docs: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Each RayCluster's head, workers and autoscaler run with RAY_AUTH_MODE=token and RAY_AUTH_TOKEN from the
    chart's Secret under the key of that cluster's tier; the four tokens differ, are 64 characters, and the
    scheduler in the API pod reads for each tier exactly the token its cluster was given."""
    (secret,) = find(full_docs, "Secret", f"{RELEASE}-suanli-ray-auth")
    tokens = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert sorted(tokens) == sorted(TIERS)
    assert len(set(tokens.values())) == len(TIERS)
    assert all(len(token) == 64 for token in tokens.values())
    for cluster in find(full_docs, "RayCluster"):
        tier = cluster["metadata"]["labels"]["suanli.io/tier"]
        spec = cluster["spec"]
        groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
        containers = [c for g in groups for c in g["template"]["spec"]["containers"]]
        if spec["enableInTreeAutoscaling"]:
            containers.append(spec["autoscalerOptions"])
        for container in containers:
            assert ray_auth_env(container) == ("token", {"name": secret["metadata"]["name"], "key": tier}), tier
    (configmap,) = find(full_docs, "ConfigMap", f"{RELEASE}-suanli-scheduler")
    config = SchedulerConfig.parse(mount_ray_tokens(full_docs, configmap["data"]["scheduler.toml"], tmp_path))
    assert {tier.value: target.token for tier, target in config.targets.items()} == tokens


def test_an_existing_ray_auth_secret_is_used_and_none_is_created() -> None:
    """ray.auth.existingSecret: the chart renders no token Secret and every Ray process and the API pod read the
    operator's Secret; without ray.enabled there is neither a token Secret nor a NetworkPolicy."""
    docs = template("-f", str(FULL_VALUES), "--set", "ray.auth.existingSecret=ops-ray-tokens")
    assert not [d for d in find(docs, "Secret") if d["metadata"]["name"].endswith("ray-auth")]
    for cluster in find(docs, "RayCluster"):
        head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert ray_auth_env(head)[1]["name"] == "ops-ray-tokens"  # type: ignore[index]
    (deployment,) = find(docs, "Deployment")
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "ray-tokens"]
    assert volume["projected"]["sources"][0]["secret"]["name"] == "ops-ray-tokens"
    default = template()
    assert not find(default, "NetworkPolicy")
    assert not [d for d in find(default, "Secret") if d["metadata"]["name"].endswith("ray-auth")]


def test_an_outside_ray_clusters_token_comes_from_a_secret(tmp_path: Path) -> None:
    """scheduler.rayAddress with scheduler.rayTokenSecret: [ray] gets a token_file the API pod mounts from that
    Secret (read-only, owner and group only), and every tier's target carries it; without the Secret, no token."""
    address = "http://ray-head.ray.svc:8265"
    docs = template(
        "--set", f"scheduler.enabled=true,scheduler.rayAddress={address}",
        "--set", "scheduler.rayTokenSecret.name=outside-ray,scheduler.rayTokenSecret.key=tok",
    )  # fmt: skip
    (configmap,) = find(docs, "ConfigMap", f"{RELEASE}-suanli-scheduler")
    (deployment,) = find(docs, "Deployment")
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == "ray-tokens"]
    items = [{"key": "tok", "path": "ray.token"}]
    assert volume["projected"]["sources"] == [{"secret": {"name": "outside-ray", "items": items}}]
    assert volume["projected"]["defaultMode"] & 0o007 == 0
    text = configmap["data"]["scheduler.toml"].replace("/etc/suanli/ray/", f"{tmp_path}/")
    (tmp_path / "ray.token").write_text("outside-token")
    (tmp_path / "ray.token").chmod(volume["projected"]["defaultMode"])
    assert {t.token for t in SchedulerConfig.parse(text).targets.values()} == {"outside-token"}
    bare = template("--set", f"scheduler.enabled=true,scheduler.rayAddress={address}")
    (configmap,) = find(bare, "ConfigMap", f"{RELEASE}-suanli-scheduler")
    assert "token_file" not in configmap["data"]["scheduler.toml"]
    (deployment,) = find(bare, "Deployment")
    assert "ray-tokens" not in {v["name"] for v in deployment["spec"]["template"]["spec"]["volumes"]}


def admits(policy: dict[str, Any], source: dict[str, str], port: int) -> bool:
    """Whether the NetworkPolicy's ingress rules let a pod labelled `source` (same namespace) reach `port`/TCP."""
    for rule in policy["spec"].get("ingress", []):
        peers = rule.get("from", [])
        peer_ok = not peers or any(
            "podSelector" in p and "namespaceSelector" not in p
            and p["podSelector"].get("matchLabels", {}).items() <= source.items()
            for p in peers
        )  # fmt: skip
        ports = rule.get("ports", [])
        port_ok = not ports or any(
            p.get("protocol", "TCP") == "TCP" and p["port"] <= port <= p.get("endPort", p["port"]) for p in ports
        )
        if peer_ok and port_ok:
            return True
    return False


def test_network_policies_let_only_the_api_reach_the_jobs_api_and_only_a_clusters_pods_its_ray_ports(
    full_docs: list[dict[str, Any]],
) -> None:
    """One NetworkPolicy per tier cluster selects exactly that cluster's pods (head and workers). The API pod
    reaches the dashboard port 8265 and the GCS port 6379 (where the dispatcher reads what Ray says is free) and no
    other Ray port; the cluster's own pods reach its Ray ports (GCS 6379, a raylet's, a worker's) but not 8265;
    another tier's Ray pods, the agents and any other pod reach nothing."""
    policies = find(full_docs, "NetworkPolicy")
    (deployment,) = find(full_docs, "Deployment")
    api = deployment["spec"]["template"]["metadata"]["labels"]
    agent = find(full_docs, "DaemonSet")[0]["spec"]["template"]["metadata"]["labels"]
    pods = {}
    for cluster in find(full_docs, "RayCluster"):
        groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
        pods[cluster["metadata"]["labels"]["suanli.io/tier"]] = [g["template"]["metadata"]["labels"] for g in groups]
    assert len(policies) == len(TIERS)
    for tier, own_pods in pods.items():
        (policy,) = [p for p in policies if p["spec"]["podSelector"]["matchLabels"].items() <= own_pods[0].items()]
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert all(selector.items() <= labels.items() for labels in own_pods)
        for other, other_pods in pods.items():
            if other != tier:
                assert not any(selector.items() <= labels.items() for labels in other_pods)
                assert not any(admits(policy, other_pods[0], port) for port in (6379, 8265, 10001, 52365, 20000))
        assert admits(policy, api, 8265)
        assert admits(policy, api, 6379)
        assert not any(admits(policy, api, port) for port in (10001, 52365, 20000))
        for port in (6379, 10001, 52365, 20000, 65535):
            assert admits(policy, own_pods[-1], port), port
        assert not admits(policy, own_pods[-1], 8265)
        assert not any(admits(policy, source, port) for source in (agent, {"app": "other"}) for port in (6379, 8265))


def test_network_policies_can_admit_more_peers_to_the_dashboard_or_be_left_out() -> None:
    """ray.networkPolicy.dashboardFrom adds peers to the dashboard rule only (not to the GCS's); enabled=false
    renders none."""
    peer = '{"namespaceSelector":{"matchLabels":{"kubernetes.io/metadata.name":"kuberay"}}}'
    docs = template("-f", str(FULL_VALUES), "--set-json", f"ray.networkPolicy.dashboardFrom=[{peer}]")
    for policy in find(docs, "NetworkPolicy"):
        ray_rule, dashboard_rule, gcs_rule = policy["spec"]["ingress"]
        assert json.loads(peer) in dashboard_rule["from"]
        assert json.loads(peer) not in ray_rule["from"]
        assert json.loads(peer) not in gcs_rule["from"]
    assert not find(template("-f", str(FULL_VALUES), "--set", "ray.networkPolicy.enabled=false"), "NetworkPolicy")
