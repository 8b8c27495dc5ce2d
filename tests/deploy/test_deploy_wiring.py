"""Deployment files agree with the code: compose, Prometheus, Grafana, Dockerfile, Kubernetes, docs.

No Docker engine is needed: the files are parsed and every reference is checked
against the other files and against what the code reads and serves.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path, PurePosixPath
from types import ModuleType
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from handlers.ruleset import load_rules
from streams import metrics
from streams.settings import ENV_NAMES, Settings, shadow_conflicts
from streams.topics import topic_specs

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = ROOT / "docker-compose.yml"
K8S = DEPLOY / "k8s"
K8S_SHADOW = K8S / "shadow"
DOCS = ROOT / "docs" / "operations.md"

ENV_VARS = set(ENV_NAMES.values())
SETTING_OF = {env: name for name, env in ENV_NAMES.items()}
PROMQL_BUILTIN_LABELS = {"le", "job", "instance", "quantile"}


# ------------------------------------------------------------------ helpers
def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text("utf-8"))


def load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]


@cache
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def is_clientpulse(service: dict[str, Any]) -> bool:
    build = service.get("build")
    dockerfile = build.get("dockerfile") if isinstance(build, dict) else None
    return dockerfile == "deploy/Dockerfile" or str(service.get("image", "")).startswith("clientpulse")


def is_shadow(service: dict[str, Any]) -> bool:
    """A shadow worker (candidate rules on the live input): not part of the live deployment's configuration."""
    return settings_from_env(env_of(service)).shadow or "--shadow" in command_of(service)


def clientpulse_services(role: str | None = None, shadow: bool | None = False) -> dict[str, dict[str, Any]]:
    """The clientpulse services (of one role); live ones only unless `shadow` is True (shadows) or None (all)."""
    return {
        name: svc
        for name, svc in services().items()
        if is_clientpulse(svc)
        and (role is None or command_of(svc)[:1] == [role])
        and (shadow is None or is_shadow(svc) == shadow)
    }


def settings_from_env(env: dict[str, str]) -> Settings:
    """The settings a process with this environment loads (only the clientpulse variables)."""
    return Settings.model_validate({k: v for k, v in env.items() if k in SETTING_OF})


def listen_port(role: str, env: dict[str, str]) -> int:
    s = settings_from_env(env)
    return {"worker": s.web_port, "notifier": s.web_port, "deliver": s.web_port, "sink": s.api_port}[role]


def routes(role: str) -> set[str]:
    """HTTP paths the code serves for a role: Faust pages of the worker and notifier, aiohttp routes otherwise."""
    if role in ("worker", "notifier"):
        text = (ROOT / "streams" / role / "pipeline.py").read_text("utf-8")
        return set(re.findall(r"\.page\(\s*[\"']([^\"']+)[\"']", text))
    if role == "deliver":
        from streams.deliver.service import Deliverer, health_app
        from streams.sink.store import AlertStore

        deliverer = Deliverer.__new__(Deliverer)
        return {resource.canonical for resource in health_app(deliverer).router.resources()}
    from streams.api.app import create_api
    from streams.sink.store import AlertStore

    app = create_api(AlertStore("postgresql://unused"), None)
    return {resource.canonical for resource in app.router.resources()}


def metric_objects() -> list[MetricWrapperBase]:
    return [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]


def sample_names() -> dict[str, set[str]]:
    """Every series name /metrics can expose -> the label names it carries."""
    out: dict[str, set[str]] = {}
    for metric in metric_objects():
        family = next(iter(metric.describe()))
        labels = set(getattr(metric, "_labelnames", ()))
        if family.type == "counter":
            out[f"{family.name}_total"] = labels
        elif family.type == "histogram":
            for suffix in ("_bucket", "_sum", "_count"):
                out[family.name + suffix] = labels | ({"le"} if suffix == "_bucket" else set())
        else:
            out[family.name] = labels
    return out


def check_promql(expr: str, where: str) -> None:
    """Every clientpulse_* series exists in streams.metrics, every grouping label on one of them."""
    known = sample_names()
    used = set(re.findall(r"\bclientpulse_[a-z0-9_]+\b", expr))
    unknown = used - set(known)
    assert not unknown, f"{where}: no such metric {sorted(unknown)} in streams/metrics.py"
    available = set().union(*(known[name] for name in used)) | PROMQL_BUILTIN_LABELS if used else None
    for group in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        for label in (part.strip() for part in group.split(",") if part.strip()):
            assert available is None or label in available, f"{where}: label {label!r} is on none of {sorted(used)}"
    for matcher in re.findall(r"\{([^}]*)\}", expr):
        for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*[!=]~?", matcher):
            assert available is None or label in available, f"{where}: label {label!r} is on none of {sorted(used)}"


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path -> host path of each bind mount (./relative sources)."""
    out: dict[str, Path] = {}
    for volume in service.get("volumes") or []:
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            out[target] = (ROOT / source).resolve()
    return out


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """Where a file the container reads comes from on the host, following the bind mounts."""
    target = PurePosixPath(container_path)
    for mount, source in sorted(bind_mounts(service).items(), key=lambda kv: -len(kv[0])):
        if target == PurePosixPath(mount) or PurePosixPath(mount) in target.parents:
            return source / target.relative_to(mount)
    return None


def generate_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_generate", DEPLOY / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------- compose
def test_compose_references_resolve() -> None:
    svcs = services()
    for name, svc in svcs.items():
        deps = svc.get("depends_on") or {}
        for dep in deps if isinstance(deps, list) else deps.keys():
            assert dep in svcs, f"{name} depends on unknown service {dep}"
            if isinstance(deps, dict):
                condition = deps[dep].get("condition")
                assert condition in {"service_started", "service_healthy", "service_completed_successfully"}
                if condition == "service_healthy":
                    assert "healthcheck" in svcs[dep], f"{name} waits for {dep} to be healthy; it has no healthcheck"
        for secret in svc.get("secrets") or []:
            assert secret in (compose().get("secrets") or {}), f"{name}: undeclared secret {secret}"
        for volume in svc.get("volumes") or []:
            source = str(volume).split(":")[0]
            if not source.startswith((".", "/")):
                assert source in (compose().get("volumes") or {}), f"{name}: undeclared volume {source}"
    for name, secret in (compose().get("secrets") or {}).items():
        assert (ROOT / secret["file"]).is_file(), f"secret {name}: {secret['file']} does not exist"


def test_compose_bind_mounts_point_at_files_in_the_repo() -> None:
    for name, svc in services().items():
        for target, source in bind_mounts(svc).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) does not exist"
            assert ROOT in source.parents, f"{name}: {source} is outside the repository"


def test_compose_env_names_are_settings_the_code_reads() -> None:
    for name, svc in services().items():
        ours = is_clientpulse(svc)
        for var in env_of(svc):
            if var.startswith("CLIENTPULSE_") or var == "DATABASE_URL" or (ours and var.startswith("KAFKA_")):
                assert var in ENV_VARS, f"{name}: {var} is not a setting (streams/settings.py)"
    for svc in clientpulse_services().values():
        settings_from_env(env_of(svc))  # every value valid for its setting


def test_compose_clientpulse_processes_share_one_configuration() -> None:
    cps = clientpulse_services()
    assert {"topics", "worker", "sink", "simulate"} <= {command_of(s)[0] for s in cps.values()}
    loaded = {name: settings_from_env(env_of(svc)) for name, svc in cps.items()}
    for field in ("kafka_bootstrap", "partitions", "topic_prefix", "app_id", "rules_path"):
        values = {getattr(s, field) for s in loaded.values()}
        assert len(values) == 1, f"clientpulse services disagree on {ENV_NAMES[field]}: {values}"
    settings = next(iter(loaded.values()))
    assert str(settings.rules_path) == "/app/rules/default.yaml"
    for name, svc in cps.items():
        assert host_path(svc, str(settings.rules_path)) == (ROOT / "rules" / "default.yaml").resolve(), name

    host, _, port = settings.kafka_bootstrap.partition(":")
    assert host in services(), f"KAFKA_BOOTSTRAP names {host}, not a compose service"
    kafka_env = env_of(services()[host])
    assert f"//{host}:{port}" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]

    topics = clientpulse_services("topics")
    assert len(topics) == 1
    (topics_name,) = topics
    assert services()[topics_name].get("restart") == "no"
    dependants = {
        **clientpulse_services("worker"),
        **clientpulse_services("notifier"),
        **clientpulse_services("deliver"),
        **clientpulse_services("sink"),
    }
    for name, svc in dependants.items():
        assert svc["depends_on"][topics_name]["condition"] == "service_completed_successfully", name
    assert {spec.partitions for spec in topic_specs(settings)} == {settings.partitions}


def secured_kafka_example() -> dict[str, str]:
    """The commented secured-Kafka block of docker-compose.yml, uncommented."""
    text = COMPOSE.read_text("utf-8")
    block = text.split("# --- secured Kafka example ---", 1)[1].split("# --- end of the secured Kafka example ---", 1)[
        0
    ]
    lines = [line.strip().removeprefix("#").strip() for line in block.splitlines() if line.strip()]
    data = yaml.safe_load("\n".join(lines))
    assert isinstance(data, dict)
    return {str(k): str(v) for k, v in data.items()}


def test_compose_secured_kafka_example_is_valid_settings() -> None:
    example = secured_kafka_example()
    assert set(example) <= ENV_VARS, f"not settings: {set(example) - ENV_VARS}"
    settings = settings_from_env(example)
    assert settings.kafka_security_protocol == "SASL_SSL"
    assert settings.kafka_sasl_username and settings.kafka_sasl_password is None, "the password comes from a file"
    for path in (settings.kafka_ssl_ca_file, settings.kafka_sasl_password_file):
        assert path is not None and str(path).startswith("/run/secrets/"), path


def test_compose_kafka_is_apache_kafka_in_kraft_mode() -> None:
    kafka = services()["kafka"]
    assert str(kafka["image"]).startswith("apache/kafka:")
    env = env_of(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in env["KAFKA_LISTENERS"]
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "partition counts come from `clientpulse topics`"
    listeners = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    protocol_map = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert listeners <= set(protocol_map)


def test_compose_two_workers_share_partitions_with_distinct_ports() -> None:
    workers = clientpulse_services("worker")
    assert len(workers) >= 2
    envs = {name: env_of(svc) for name, svc in workers.items()}
    assert len({settings_from_env(e).app_id for e in envs.values()}) == 1, "one app id = one consumer group"
    names = [svc.get("container_name") for svc in workers.values()]
    assert all(names) and len(set(names)) == len(names)
    ports = {name: listen_port("worker", env) for name, env in envs.items()}
    assert len(set(ports.values())) == len(ports), f"workers need distinct web ports: {ports}"
    partitions = settings_from_env(next(iter(envs.values()))).partitions
    assert len(workers) <= partitions, "more workers than partitions leaves some idle"
    for name, svc in workers.items():
        published = {str(p).split(":")[-1] for p in svc.get("ports") or []}
        assert str(ports[name]) in published, f"{name} listens on {ports[name]} but publishes {published}"
        assert f":{ports[name]}/healthz" in " ".join(svc["healthcheck"]["test"])
        assert "/healthz" in routes("worker")


def test_compose_sink_and_database() -> None:
    (_, sink), *others = clientpulse_services("sink").items()
    assert not others
    env = env_of(sink)
    url = urlparse(env["DATABASE_URL"].replace("${POSTGRES_PASSWORD:-clientpulse}", "pw"))
    assert url.scheme.startswith("postgres") and url.hostname in services()
    assert sink["depends_on"][url.hostname]["condition"] == "service_healthy"
    postgres_env = env_of(services()[url.hostname])
    assert url.path.lstrip("/") == postgres_env["POSTGRES_DB"] and url.username == postgres_env["POSTGRES_USER"]
    port = listen_port("sink", env)
    assert str(port) in {str(p).split(":")[-1] for p in sink.get("ports") or []}
    served = routes("sink")
    assert {"/metrics", "/healthz", "/readyz"} <= served
    checked = re.findall(rf":{port}(/[a-z]+)", " ".join(sink["healthcheck"]["test"]))
    assert checked and set(checked) <= served, f"the healthcheck asks for {checked}"

    tokens_file = env["CLIENTPULSE_API_TOKENS_FILE"]
    secret_name = PurePosixPath(tokens_file).name
    assert tokens_file == f"/run/secrets/{secret_name}" and secret_name in sink["secrets"]
    token_config = (ROOT / compose()["secrets"][secret_name]["file"]).read_text("utf-8")
    auth = pytest.importorskip("streams.api.auth")
    assert auth.parse_token_config(token_config, "compose api tokens"), "the compose stack needs one usable token"


def test_compose_notifier_and_deliver_listen_where_their_healthchecks_look() -> None:
    for role in ("notifier", "deliver"):
        (_, svc), *others = clientpulse_services(role).items()
        assert not others, f"one {role} in the compose stack"
        env = env_of(svc)
        port = listen_port(role, env)
        assert str(port) in {str(p).split(":")[-1] for p in svc.get("ports") or []}
        assert f":{port}/healthz" in " ".join(svc["healthcheck"]["test"]) and "/healthz" in routes(role)
    ports = [
        listen_port(r, env_of(s))
        for r in ("worker", "notifier", "deliver")
        for s in clientpulse_services(r, shadow=None).values()
    ]
    assert len(ports) == len(set(ports)), f"web ports collide: {ports}"
    (deliver,) = clientpulse_services("deliver").values()
    assert deliver.get("profiles") == ["deliver"], "optional until the bank's webhook is configured"
    settings = settings_from_env(env_of(deliver))
    assert settings.deliver_url and settings.deliver_secret and settings.workbench_url


def test_compose_shadow_is_an_optional_worker_of_its_own_beside_the_live_ones() -> None:
    (name, svc), *others = clientpulse_services("worker", shadow=True).items()
    assert not others, "one shadow in the compose stack"
    assert svc.get("profiles") == ["shadow"], "started on purpose"
    env = env_of(svc)
    settings = settings_from_env(env)
    live = settings_from_env(env_of(next(iter(clientpulse_services("worker").values()))))
    assert settings.shadow and not shadow_conflicts(settings)
    assert settings.app_id == live.app_id, "it knows the live id, so it can refuse to join the live group"
    assert settings.worker_app_id not in live.live_consumer_groups
    assert settings.worker_alerts_topic == live.shadow_alerts_topic != live.alerts_topic
    assert (settings.kafka_bootstrap, settings.partitions, settings.topic_prefix) == (
        live.kafka_bootstrap,
        live.partitions,
        live.topic_prefix,
    )
    candidate = host_path(svc, str(settings.rules_path))
    assert candidate == (ROOT / "rules" / "candidate.yaml").resolve() and candidate.is_file()
    load_rules(candidate)
    assert svc["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    port = listen_port("worker", env)
    assert str(port) in {str(p).split(":")[-1] for p in svc.get("ports") or []}
    assert f":{port}/healthz" in " ".join(svc["healthcheck"]["test"])
    assert name not in [n for n, s in services().items() if not s.get("profiles")]


def test_compose_simulator_is_an_optional_profile() -> None:
    (name, sim), *others = clientpulse_services("simulate").items()
    assert not others
    assert sim.get("profiles") == ["simulate"]
    non_optional = [n for n, s in services().items() if not s.get("profiles")]
    assert name not in non_optional


# --------------------------------------------------------------- prometheus
def prometheus_service() -> dict[str, Any]:
    return services()["prometheus"]


def test_prometheus_scrapes_every_worker_and_the_sink_where_they_listen() -> None:
    prom = prometheus_service()
    config_path = next(a.split("=", 1)[1] for a in prom["command"] if a.startswith("--config.file="))
    config_file = host_path(prom, config_path)
    assert config_file == DEPLOY / "prometheus" / "prometheus.yml"
    config = load_yaml(config_file)

    for rule_file in config["rule_files"]:
        resolved = host_path(prom, rule_file)
        assert resolved is not None and resolved.is_file(), f"rule file {rule_file} is not mounted"

    scraped: dict[str, str] = {}
    for job in config["scrape_configs"]:
        path = job.get("metrics_path", "/metrics")
        for static in job["static_configs"]:
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                if host == "localhost":
                    continue
                assert host in services(), f"{job['job_name']}: {host} is not a compose service"
                svc = services()[host]
                role = command_of(svc)[0]
                assert int(port) == listen_port(role, env_of(svc)), f"{target}: {host} listens elsewhere"
                assert path in routes(role)
                scraped[host] = job["job_name"]
    roles = ("worker", "notifier", "deliver", "sink")
    expected = set().union(*(clientpulse_services(role, shadow=None) for role in roles))
    assert set(scraped) == expected, "every worker, notifier, deliver and the sink are scraped, nothing else"
    for role in roles:
        assert {scraped[n] for n in clientpulse_services(role)} == {f"clientpulse-{role}"}
    shadows = clientpulse_services("worker", shadow=True)
    assert shadows and {scraped[n] for n in shadows} == {"clientpulse-shadow"}, "a shadow is a job of its own"


def alert_rules() -> list[dict[str, Any]]:
    data = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
    return [rule for group in data["groups"] for rule in group["rules"]]


def test_alert_rules_cover_the_failure_modes_and_use_real_series() -> None:
    rules = alert_rules()
    names = {r["alert"] for r in rules}
    for needed in (
        "ClientpulseConsumerLagGrowing",
        "ClientpulseDeadLettersRising",
        "ClientpulseSinkDown",
        "ClientpulseNoEvents",
        "ClientpulseAlertRateSpike",
        "ClientpulseNotifierDown",
        "ClientpulseDeliveryFailing",
    ):
        assert needed in names
    assert len(names) == len(rules), "alert names are unique"
    jobs = {job["job_name"] for job in load_yaml(DEPLOY / "prometheus" / "prometheus.yml")["scrape_configs"]}
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", rule["for"])
        check_promql(rule["expr"], rule["alert"])
        for job in re.findall(r'job="([^"]+)"', rule["expr"]):
            assert job in jobs, f"{rule['alert']}: no scrape job {job}"


# ------------------------------------------------------------------ grafana
def grafana_service() -> dict[str, Any]:
    return services()["grafana"]


def test_grafana_provisioning_points_at_prometheus_and_the_dashboard() -> None:
    grafana = grafana_service()
    provisioning = host_path(grafana, "/etc/grafana/provisioning")
    assert provisioning is not None and provisioning.is_dir()
    datasources = [ds for f in (provisioning / "datasources").glob("*.yml") for ds in load_yaml(f)["datasources"]]
    assert datasources
    for ds in datasources:
        url = urlparse(ds["url"])
        assert url.hostname in services() and url.port == 9090
    providers = [p for f in (provisioning / "dashboards").glob("*.yml") for p in load_yaml(f)["providers"]]
    dashboards: list[Path] = []
    for provider in providers:
        folder = host_path(grafana, provider["options"]["path"])
        assert folder is not None and folder.is_dir()
        dashboards += sorted(folder.glob("*.json"))
    assert dashboards, "no dashboard JSON where the provider looks"
    home = host_path(grafana, env_of(grafana)["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"])
    assert home is not None and home.is_file()


def dashboard_panels() -> Iterator[dict[str, Any]]:
    data = json.loads((DEPLOY / "grafana" / "dashboards" / "clientpulse.json").read_text("utf-8"))
    assert data["uid"] and data["title"]
    for panel in data["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_dashboard_panels_query_existing_series_from_the_provisioned_datasource() -> None:
    provisioning = DEPLOY / "grafana" / "provisioning" / "datasources"
    uids = {ds["uid"] for f in provisioning.glob("*.yml") for ds in load_yaml(f)["datasources"]}
    panels = list(dashboard_panels())
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    exprs: list[str] = []
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids
            check_promql(target["expr"], panel["title"])
            exprs.append(target["expr"])
    joined = "\n".join(exprs)
    for series in (
        "clientpulse_events_consumed_total",
        "clientpulse_event_processing_seconds_bucket",
        "clientpulse_event_lag_seconds_bucket",
        "clientpulse_alerts_emitted_total",
        "clientpulse_events_rejected_total",
        "clientpulse_consumer_lag_messages",
        "clientpulse_alert_store_up",
        "clientpulse_notifications_pushed_total",
        "clientpulse_notifications_held_total",
        "clientpulse_digests_sent_total",
        "clientpulse_notifications_waiting",
        "clientpulse_deliveries_total",
    ):
        assert series in joined, f"the dashboard shows nothing of {series}"
    assert "histogram_quantile(0.5," in joined and "histogram_quantile(0.99," in joined


# --------------------------------------------------------------- dockerfile
def dockerfile_stages() -> list[list[str]]:
    text = (DEPLOY / "Dockerfile").read_text("utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    stages: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text("utf-8")
    args = dict(re.findall(r"^ARG\s+(\w+)=(\S+)", text, re.M))
    stages = dockerfile_stages()
    assert len(stages) >= 2, "wheels are built in a builder stage"
    final = stages[-1]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], final[0].split()[1])
    assert base.startswith("python:") and "slim" in base
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    final_text = "\n".join(final)
    for tool in ("build-essential", "gcc", "apt-get install"):
        assert tool not in final_text, f"{tool} in the final image"
    assert "from=builder" in final_text
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(line for line in final if line.upper().startswith("ENV "))))
    assert env["CLIENTPULSE_RULES"] == "/app/rules/default.yaml"
    assert all(k in ENV_VARS for k in env if k.startswith("CLIENTPULSE_"))
    assert any(re.match(r"COPY\s+rules/?\s+/app/rules/?$", line) for line in final)
    assert "ENTRYPOINT" in final_text and "clientpulse" in final_text

    allowed = {
        line[1:].rstrip("/")
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text("utf-8").splitlines()
        if line.startswith("!")
    }
    for stage in stages:
        for line in stage:
            if line.upper().startswith("COPY ") and "--from" not in line:
                for source in line.split()[1:-1]:
                    assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                    assert source.rstrip("/") in allowed, f"COPY {source}: excluded by Dockerfile.dockerignore"


# --------------------------------------------------------------- kubernetes
@cache
def manifests() -> tuple[dict[str, Any], ...]:
    """Every object of deploy/k8s and of the optional shadow run's deploy/k8s/shadow (applied beside it)."""
    docs: list[dict[str, Any]] = []
    for path in sorted(K8S.glob("*.yaml")) + sorted(K8S_SHADOW.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for doc in load_all(path):
            assert {"apiVersion", "kind", "metadata"} <= set(doc), f"{path.name}: not a Kubernetes object"
            docs.append(doc)
    return tuple(docs)


def objects(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def pod_templates() -> dict[str, dict[str, Any]]:
    out = {}
    for kind in ("Deployment", "StatefulSet", "Job"):
        for name, obj in objects(kind).items():
            out[name] = obj["spec"]["template"]["spec"]
    return out


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's effective environment (envFrom ConfigMaps/Secrets, then env)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(objects("ConfigMap")[source["configMapRef"]["name"]]["data"])
        if "secretRef" in source:
            env.update(objects("Secret")[source["secretRef"]["name"]]["stringData"])
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"].get("secretKeyRef") or item["valueFrom"].get("configMapKeyRef")
            kind = "Secret" if "secretKeyRef" in item["valueFrom"] else "ConfigMap"
            data = objects(kind)[ref["name"]].get("stringData" if kind == "Secret" else "data", {})
            env[item["name"]] = str(data[ref["key"]])
    return env


FILE_SETTINGS = ("rules_path", *(name for name in ENV_NAMES if name.endswith("_file")))
"""Settings naming a file a pod must have mounted: the rules, the token file, the Kafka CA, keys and secrets."""


def test_kustomization_lists_existing_manifests_and_never_the_secret() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource
        kinds = {d["kind"] for d in load_all(K8S / resource)}
        assert "Secret" not in kinds, f"{resource}: apply -k must not overwrite real secrets"
    assert "secret.yaml" not in kustomization["resources"], "apply -k must not overwrite real secrets"
    assert "kafka-secret.yaml" not in kustomization["resources"]
    listed = {d["metadata"]["name"] for r in kustomization["resources"] for d in load_all(K8S / r)}
    assert {
        "clientpulse-worker",
        "clientpulse-notifier",
        "clientpulse-deliver",
        "clientpulse-sink",
        "clientpulse-config",
        "clientpulse-rules",
        "clientpulse-deliver-routes",
    } <= listed
    assert not {name for name in listed if "shadow" in name}, "a shadow run is applied on purpose, never by default"


def test_shadow_kustomization_is_apart_from_the_base_and_complete() -> None:
    base = load_yaml(K8S / "kustomization.yaml")
    shadow = load_yaml(K8S_SHADOW / "kustomization.yaml")
    assert shadow["namespace"] == base["namespace"] and shadow["images"] == base["images"]
    assert "shadow" not in base["resources"] and "shadow/" not in " ".join(base["resources"])
    files = {path.name for path in K8S_SHADOW.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(shadow["resources"]) == files, "the shadow kustomization applies every shadow file"
    objects_listed = [d for r in shadow["resources"] for d in load_all(K8S_SHADOW / r)]
    assert {d["kind"] for d in objects_listed} == {"ConfigMap", "Deployment", "Service"}, "no Secret, nothing shared"
    assert all("shadow" in d["metadata"]["name"] for d in objects_listed), "it replaces nothing of the base"


def test_k8s_env_names_are_settings_and_references_resolve() -> None:
    for name, obj in objects("ConfigMap").items():
        if name == "clientpulse-config":
            assert set(obj["data"]) <= ENV_VARS, f"not settings: {set(obj['data']) - ENV_VARS}"
    for pod_name, pod in pod_templates().items():
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        for volume in volumes.values():
            if "configMap" in volume:
                assert volume["configMap"]["name"] in objects("ConfigMap")
            if "secret" in volume:
                secret = objects("Secret")[volume["secret"]["secretName"]]
                for item in volume["secret"].get("items") or []:
                    assert item["key"] in secret["stringData"]
        for container in pod["containers"]:
            env = container_env(container)  # resolves every envFrom / valueFrom reference
            names = {i["name"] for i in container.get("env") or []} | set(env)
            assert names <= ENV_VARS, f"{pod_name}: not settings: {names - ENV_VARS}"
            settings = settings_from_env(env)
            for mount in container.get("volumeMounts") or []:
                assert mount["name"] in volumes, f"{pod_name}: mounts unknown volume {mount['name']}"
            rules_readers = ("worker", "notifier", "deliver")
            for setting in FILE_SETTINGS:
                path = getattr(settings, setting)
                if path is None or (setting == "rules_path" and container.get("args", [""])[0] not in rules_readers):
                    continue
                mount = next(
                    m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) in PurePosixPath(path).parents
                )
                volume = volumes[mount["name"]]
                key = str(PurePosixPath(path).relative_to(mount["mountPath"]))
                if "configMap" in volume:
                    assert key in objects("ConfigMap")[volume["configMap"]["name"]]["data"], f"{pod_name}: {path}"
                else:
                    assert key in {i["path"] for i in volume["secret"]["items"]}, f"{pod_name}: {path}"


def test_k8s_every_pod_connects_to_kafka_the_same_secured_way_with_files_from_the_secret() -> None:
    """Worker, sink and the topics job: TLS and SASL, the CA and password as files of the clientpulse-kafka Secret."""
    security: set[tuple[Any, ...]] = set()
    for pod_name, pod in pod_templates().items():
        volumes = {v["name"]: v for v in pod.get("volumes") or []}
        (container,) = pod["containers"]
        settings = settings_from_env(container_env(container))
        assert settings.kafka_security_protocol == "SASL_SSL", pod_name
        assert settings.kafka_sasl_password is None, f"{pod_name}: the SASL password comes from a mounted file"
        security.add(
            (
                settings.kafka_bootstrap,
                settings.kafka_security_protocol,
                settings.kafka_sasl_mechanism,
                settings.kafka_sasl_username,
                settings.kafka_ssl_ca_file,
                settings.kafka_sasl_password_file,
            )
        )
        for path in (settings.kafka_ssl_ca_file, settings.kafka_sasl_password_file):
            assert path is not None
            mount = next(
                m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) in PurePosixPath(path).parents
            )
            volume = volumes[mount["name"]]
            assert volume["secret"]["secretName"] == "clientpulse-kafka", f"{pod_name}: {path}"
            assert mount.get("readOnly") is True
            if "fsGroup" not in pod["securityContext"]:
                raise AssertionError(f"{pod_name}: user {pod['securityContext']['runAsUser']} cannot read 0440 files")
    assert len(security) == 1, f"pods disagree on how to reach Kafka: {security}"


def test_k8s_workloads_have_probes_on_served_paths_resources_and_run_as_non_root() -> None:
    pods = pod_templates()
    roles = {
        "clientpulse-worker": "worker",
        "clientpulse-shadow": "worker",
        "clientpulse-notifier": "notifier",
        "clientpulse-deliver": "deliver",
        "clientpulse-sink": "sink",
    }
    for workload, role in roles.items():
        pod = pods[workload]
        (container,) = pod["containers"]
        assert container["args"][0] == role
        env = container_env(container)
        port = listen_port(role, env)
        named = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert port in named.values(), f"{workload}: listens on {port}, exposes {named}"
        served = routes(role)
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
            get = container[probe]["httpGet"]
            assert get["path"] == path and path in served, f"{workload}: {probe} on {get['path']}"
            assert named.get(get["port"], get["port"]) == port
        annotations = objects("Deployment")[workload]["spec"]["template"]["metadata"]["annotations"]
        assert int(annotations["prometheus.io/port"]) == port and annotations["prometheus.io/path"] in served
    for pod_name, pod in pods.items():
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"]:
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]) and {"cpu", "memory"} <= set(resources["limits"])
            assert container["securityContext"]["allowPrivilegeEscalation"] is False, pod_name


def test_k8s_worker_replicas_do_not_exceed_partitions() -> None:
    for name in ("clientpulse-worker", "clientpulse-shadow", "clientpulse-notifier"):
        deployment = objects("Deployment")[name]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        partitions = settings_from_env(container_env(container)).partitions
        assert 1 <= deployment["spec"]["replicas"] <= partitions, name
    services_by_name = objects("Service")
    names = ("clientpulse-worker", "clientpulse-shadow", "clientpulse-notifier", "clientpulse-deliver")
    for name in (*names, "clientpulse-sink"):
        selector = services_by_name[name]["spec"]["selector"]
        labels = objects("Deployment")[name]["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items(), f"Service {name} selects no pod"


def test_k8s_deliver_routes_file_is_valid_and_its_secret_files_are_mounted() -> None:
    from schemas.delivery import RoutesFile

    data = objects("ConfigMap")["clientpulse-deliver-routes"]["data"]
    routes = RoutesFile.model_validate(yaml.safe_load(data["routes.yaml"]))
    pod = pod_templates()["clientpulse-deliver"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    for target in routes.targets.values():
        for path in (target.url_file, target.secret_file):
            if path is None:
                continue
            folder, key = str(PurePosixPath(path).parent), PurePosixPath(path).name
            secret = objects("Secret")[mounts[folder]["secret"]["secretName"]]
            assert key in secret["stringData"], f"{path}: no key {key} in the mounted Secret"


def test_k8s_rules_configmap_is_the_rules_file() -> None:
    data = objects("ConfigMap")["clientpulse-rules"]["data"]
    assert data == {"default.yaml": (ROOT / "rules" / "default.yaml").read_text("utf-8")}
    candidate = objects("ConfigMap")["clientpulse-shadow-rules"]["data"]
    assert candidate == {"candidate.yaml": (ROOT / "rules" / "candidate.yaml").read_text("utf-8")}


def _pod_labels(name: str) -> dict[str, str]:
    return dict(objects("Deployment")[name]["spec"]["template"]["metadata"]["labels"])


def test_k8s_shadow_is_a_worker_of_its_own_with_the_candidate_rules(tmp_path: Path) -> None:
    pod = pod_templates()["clientpulse-shadow"]
    (container,) = pod["containers"]
    env = container_env(container)
    settings = settings_from_env(env)
    (live_container,) = pod_templates()["clientpulse-worker"]["containers"]
    live = settings_from_env(container_env(live_container))
    assert settings.shadow and container["args"] == ["worker"]
    # It never sets the app id itself: it reads the live one from clientpulse-config, joins <that>-shadow.
    assert "CLIENTPULSE_APP_ID" not in {item["name"] for item in container.get("env") or []}
    assert settings.app_id == live.app_id and not shadow_conflicts(settings)
    assert settings.worker_app_id not in live.live_consumer_groups and settings.worker_app_id != live.worker_app_id
    assert (
        settings.worker_alerts_topic == live.shadow_alerts_topic
        and settings.worker_alerts_topic not in live.live_topics
    )
    assert (settings.kafka_bootstrap, settings.partitions, settings.topic_prefix) == (
        live.kafka_bootstrap,
        live.partitions,
        live.topic_prefix,
    )
    # It mounts the candidate rules, not the live ones, and they are a valid rules file.
    volumes = {v["name"]: v for v in pod["volumes"]}
    rules_path = PurePosixPath(str(settings.rules_path))
    (mount,) = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) in rules_path.parents]
    assert volumes[mount["name"]]["configMap"]["name"] == "clientpulse-shadow-rules" and mount.get("readOnly")
    assert "clientpulse-rules" not in {v.get("configMap", {}).get("name") for v in volumes.values()}
    text = objects("ConfigMap")["clientpulse-shadow-rules"]["data"][str(rules_path.relative_to(mount["mountPath"]))]
    (tmp_path / "candidate.yaml").write_text(text, "utf-8")
    load_rules(tmp_path / "candidate.yaml")
    # The live workers' Service and disruption budget never select a shadow pod.
    shadow_labels = _pod_labels("clientpulse-shadow")
    for kind in ("Service", "PodDisruptionBudget"):
        live_obj = objects(kind)["clientpulse-worker"]
        selector = live_obj["spec"]["selector"].get("matchLabels", live_obj["spec"]["selector"])
        assert not selector.items() <= shadow_labels.items(), f"the live {kind} selects the shadow"
    assert objects("Service")["clientpulse-shadow"]["spec"]["selector"].items() <= shadow_labels.items()


# --------------------------------------------------------------------- docs
def test_generated_files_are_current() -> None:
    stale = generate_module().stale_files()
    assert not stale, f"stale: {[str(p.relative_to(ROOT)) for p in stale]}; run: python deploy/generate.py"


def test_operations_doc_covers_every_setting_metric_and_alert() -> None:
    doc = DOCS.read_text("utf-8")
    table = doc.split("<!-- config-table:start", 1)[1].split("<!-- config-table:end", 1)[0]
    for env in ENV_NAMES.values():
        assert f"| `{env}` |" in table, f"{env} missing from the configuration table"
    for name in sample_names():
        family = re.sub(r"_(total|bucket|sum|count)$", "", name)
        assert family in doc, f"metric {family} is not documented"
    for rule in alert_rules():
        assert rule["alert"] in doc, f"alert {rule['alert']} is not documented"
    assert "docker compose up" in doc


def test_k8s_replay_jobs_run_every_shard_once_and_merge_them() -> None:
    from streams.cli import build_parser

    replay = K8S / "replay"
    (shards,) = load_all(replay / "backtest-job.yaml")
    (merge,) = load_all(replay / "merge-job.yaml")
    spec = shards["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    (container,) = spec["template"]["spec"]["containers"]
    (index,) = [e for e in container["env"] if e["name"] == "SHARD"]
    assert "job-completion-index" in index["valueFrom"]["fieldRef"]["fieldPath"]
    args = container["args"]
    assert args[args.index("--shard") + 1] == f"$(SHARD)/{spec['completions']}"
    rules = {d["metadata"]["name"]: d for d in load_all(K8S / "rules.yaml")}["clientpulse-rules"]
    for job in (shards, merge):
        pod = job["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        rules_file = c["args"][c["args"].index("--rules") + 1]
        assert rules_file == f"{mounts['rules']}/default.yaml" and "default.yaml" in rules["data"]
        assert {v["name"] for v in pod["volumes"]} == {"replay", "rules"}
    # Every shard's arguments, and the merge's, are ones the command line takes.
    parser = build_parser()
    for k in range(spec["completions"]):
        parsed = parser.parse_args([a.replace("$(SHARD)", str(k)) for a in args])
        assert parsed.command == "backtest"
    assert parser.parse_args(merge["spec"]["template"]["spec"]["containers"][0]["args"]).command == "backtest-merge"
    # Not in the base: a deploy never starts a replay.
    base = load_all(K8S / "kustomization.yaml")[0]
    assert not any("replay" in str(r) for r in base.get("resources", []))
