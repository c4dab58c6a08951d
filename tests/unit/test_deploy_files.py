"""deploy/ cannot be run here (no Docker engine, no cluster): check its structure against the app."""

import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"


def load_all(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


@pytest.mark.parametrize("path", sorted(p.relative_to(ROOT).as_posix() for p in DEPLOY.rglob("*.y*ml")))
def test_yaml_parses(path):
    assert load_all(ROOT / path)


def compose():
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


def test_compose_references_existing_services_and_files():
    services = compose()["services"]
    assert {"web", "worker", "postgres", "redis", "prometheus", "grafana", "jaeger", "alertmanager"} <= set(services)
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown service {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
        build = service.get("build")
        if build:
            assert (DEPLOY / build["context"] / build["dockerfile"]).exists()


def test_prometheus_scrapes_compose_services():
    services = compose()["services"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = [t for job in config["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]]
    assert targets
    for target in targets:
        host, _, port = target.partition(":")
        assert host in services, target
        assert port.isdigit()
    alertmanagers = config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"]
    assert all(t.split(":")[0] in services for t in alertmanagers)
    assert config["rule_files"]


def test_grafana_datasource_uids_match_dashboard_links():
    datasources = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/datasources.yml").read_text())
    uids = {d["uid"] for d in datasources["datasources"]}
    for d in datasources["datasources"]:
        for link in d.get("jsonData", {}).get("exemplarTraceIdDestinations", []):
            assert link["datasourceUid"] in uids


def test_kubernetes_probes_use_the_app_endpoints():
    from django.urls import reverse

    paths = {reverse("django_observe:healthz"), reverse("django_observe:readyz")}
    docs = load_all(DEPLOY / "kubernetes" / "web.yaml")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    port_names = {p["name"] for p in container["ports"]}
    probes = {k: v for k, v in container.items() if k.endswith("Probe")}
    assert set(probes) == {"livenessProbe", "readinessProbe", "startupProbe"}
    assert probes["livenessProbe"]["httpGet"]["path"] == reverse("django_observe:healthz")
    assert probes["readinessProbe"]["httpGet"]["path"] == reverse("django_observe:readyz")
    for probe in probes.values():
        assert probe["httpGet"]["path"] in paths
        assert probe["httpGet"]["port"] in port_names
        # Kubernetes' default timeout is 1 s: every shipped probe states its own.
        assert isinstance(probe.get("timeoutSeconds"), int) and probe["timeoutSeconds"] >= 1, probe
    service = next(d for d in docs if d["kind"] == "Service")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names


def test_the_worker_liveness_probe_is_the_heartbeat_command():
    from django.core.management import get_commands, load_command_class

    docs = load_all(DEPLOY / "kubernetes" / "worker.yaml")
    worker = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "worker")
    container = worker["spec"]["template"]["spec"]["containers"][0]
    command = container["livenessProbe"]["exec"]["command"]
    assert command[1:4] == ["manage.py", "observe_health", "--celery-worker"]
    parser = load_command_class(get_commands()["observe_health"], "observe_health").create_parser("manage.py", "x")
    options = parser.parse_args(command[3:])
    assert options.celery_worker and options.max_age >= 3 * float(
        next(e["value"] for e in container["env"] if e["name"] == "CELERY_HEARTBEAT_INTERVAL")
    )
    beat = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "beat")
    assert beat["spec"]["replicas"] == 1 and "beat" in beat["spec"]["template"]["spec"]["containers"][0]["command"]


PROJECT_VARIABLES = {"DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "ALLOWED_HOSTS", "SECRET_KEY"}


def test_environment_variables_in_examples_are_real_options():
    from django_observe import conf

    known = set(conf.option_names()) | PROJECT_VARIABLES
    used = set(compose()["x-app"]["environment"])
    for path in ("web.yaml", "worker.yaml"):
        for doc in load_all(DEPLOY / "kubernetes" / path):
            if doc["kind"] == "Deployment":
                for container in doc["spec"]["template"]["spec"]["containers"]:
                    used |= {e["name"] for e in container.get("env", [])}
    unknown = {name for name in used if not name.startswith("OTEL_")} - known
    assert not unknown, f"example environment variables that nothing reads: {sorted(unknown)}"


def test_example_ports_match_the_metrics_defaults():
    from django_observe.conf import ObserveConfig

    web = ObserveConfig.__dataclass_fields__["metrics_port"].default
    worker = ObserveConfig.__dataclass_fields__["metrics_worker_port"].default
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    ports = {
        job["job_name"]: int(job["static_configs"][0]["targets"][0].split(":")[1]) for job in config["scrape_configs"]
    }
    assert ports == {"django": web, "celery": worker}
    for path, port in (("web.yaml", web), ("worker.yaml", worker)):
        deployment = next(d for d in load_all(DEPLOY / "kubernetes" / path) if d["kind"] == "Deployment")
        assert deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(port)


def _generated_dashboards():
    import runpy

    generated = runpy.run_path(str(DEPLOY / "grafana" / "generate.py"))
    return {"api": generated["API"], "celery": generated["CELERY"], "infrastructure": generated["INFRA"]}


def test_dashboards_are_the_generator_output():
    for name, board in _generated_dashboards().items():
        committed = (DEPLOY / "grafana" / "dashboards" / f"{name}.json").read_text()
        assert committed == json.dumps(board, indent=2) + "\n", f"regenerate {name}: python deploy/grafana/generate.py"


def test_panels_do_not_overlap():
    for name, board in _generated_dashboards().items():
        cells = {}
        for p in board["panels"]:
            g = p["gridPos"]
            for x in range(g["x"], g["x"] + g["w"]):
                for y in range(g["y"], g["y"] + g["h"]):
                    assert (x, y) not in cells, f"{name}: {p['title']!r} overlaps {cells[(x, y)]!r}"
                    cells[(x, y)] = p["title"]


def test_genai_metrics_have_panels_that_query_what_the_catalogue_records():
    """Each GenAI histogram of the catalogue has a panel; its names and grouping labels are what a call records."""
    from prometheus_client import CollectorRegistry

    from django_observe.llm.usage import Usage
    from django_observe.metrics.catalogue import build_catalogue
    from django_observe.metrics.genai import CallFacts, record_llm_call
    from tests import promql

    registry = CollectorRegistry()
    catalogue = build_catalogue(registry=registry)
    facts = CallFacts(
        "chat", "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", 0.5, Usage(input=10, output=20), None, 0.1
    )
    record_llm_call(catalogue, facts, {"input": 1.5e-6, "output": 12e-6}, "USD")
    labels: dict[str, set[str]] = {}
    families = list(registry.collect())
    assert {f.name for f in families} >= promql.GENAI_METRICS
    for family in families:
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)

    queried = set()
    for where, expr in promql.shipped_expressions().items():
        names = promql.metric_names(expr)
        genai = {n for n in names if promql.base_name(n) in promql.GENAI_METRICS}
        if not genai:
            continue
        queried |= {promql.base_name(n) for n in genai}
        assert genai <= set(labels), (where, genai - set(labels))
        available = set.intersection(*(labels[n] for n in genai))
        assert promql.grouping_labels(expr) <= available, (where, promql.grouping_labels(expr) - available)
    assert queried == promql.GENAI_METRICS, f"no panel queries {sorted(promql.GENAI_METRICS - queried)}"


# --- safe to copy (#34 finding 15)


def test_compose_publishes_only_the_app_on_every_interface():
    services = compose()["services"]
    for name, service in services.items():
        for mapping in service.get("ports", []):
            published = str(mapping)
            if name == "web" and published == "8000:8000":
                continue
            assert published.startswith("127.0.0.1:"), f"{name} publishes {published} on every interface"
            assert not published.endswith(("4317", "4318", "8001", "8002")), f"{name} publishes {published}"


def test_compose_takes_secrets_from_the_environment():
    text = (DEPLOY / "docker-compose.yml").read_text()
    environment = compose()["x-app"]["environment"]
    assert environment["SECRET_KEY"].startswith("${SECRET_KEY:?"), "no default secret key"
    grafana = compose()["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"]
    assert grafana.startswith("${GRAFANA_ADMIN_PASSWORD:?"), "no default Grafana password"
    assert "admin/admin" not in text


def test_the_image_does_not_run_as_root():
    users = [line.split()[1] for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    web = next(d for d in load_all(DEPLOY / "kubernetes" / "web.yaml") if d["kind"] == "Deployment")
    assert web["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_metrics_port_is_fenced_in_kubernetes():
    docs = load_all(DEPLOY / "kubernetes" / "web.yaml")
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    assert policy["spec"]["podSelector"]["matchLabels"] == {"app": "web"}
    metrics_rules = [rule for rule in policy["spec"]["ingress"] if {"port": "metrics"} in rule.get("ports", [])]
    assert metrics_rules and all(rule.get("from") for rule in metrics_rules), "8001 only from selected peers"
    monitor = load_all(DEPLOY / "kubernetes" / "servicemonitor.yaml")[0]
    credentials = monitor["spec"]["endpoints"][0]["authorization"]["credentials"]
    assert credentials == {"name": "app-env", "key": "METRICS_TOKEN"}
    secret = load_all(DEPLOY / "kubernetes" / "secret.example.yaml")[0]
    assert "METRICS_TOKEN" in secret["stringData"]
