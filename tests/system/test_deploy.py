"""docker-compose.yml and deploy/k8s/, checked offline against the code (no Docker engine or cluster here).

Compose: every command is one the CLI accepts, every app container's environment builds valid Settings
(so every required variable is set), every bind-mounted file, named volume, dependency and port agrees
with the rest. Kubernetes: every manifest validates against the bundled schemas (kubernetes-validate,
strict), and probes, selectors, autoscaler targets and the ConfigMap/Secret split fit the code.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from launcher.cli import build_parser
from shared.config import ConfigError, Settings
from web.app import create_app

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
APP_SERVICES = ("migrate", "web", "worker")
# What an operator exports before `docker compose up` (the file refuses to start without it).
OPERATOR_ENV = {"SECRET_KEY": "an-operator-chosen-secret-key-of-48-characters-xx"}
K8S_VERSION = "1.37"


def substitute(value: str, env: dict[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}, and $$ for a literal $."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"{name} must be set: {arg}")
        return arg or ""
    return re.sub(r"\$\{(\w+)(?:(:[-?])([^}]*))?\}", one, value).replace("$$", "$")


def service_env(name: str) -> dict[str, str]:
    return {key: substitute(str(value), OPERATOR_ENV) for key, value in SERVICES[name]["environment"].items()}


def required_variables() -> set[str]:
    """What Settings refuses to start without, asked of Settings itself (not a list kept by hand)."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TASKDECK_ENV": "production"})
    return {problem.split()[0] for problem in info.value.problems if " is required" in problem}


def cli_accepts(command: list[str]) -> None:
    assert command[0] == "taskdeck", command
    try:
        build_parser().parse_args(command[1:])
    except SystemExit as exc:
        raise AssertionError(f"`{' '.join(command)}` is not a valid taskdeck command") from exc


def app_routes() -> set[str]:
    app = create_app(Settings(database_url="postgresql://h/d", redis_url="redis://h", secret_key="k" * 40))
    return {resource.canonical for resource in app.router.resources()}


def test_required_variables_are_known() -> None:
    assert required_variables() == {"DATABASE_URL", "REDIS_URL", "SECRET_KEY"}


def test_compose_has_the_whole_topology() -> None:
    assert {"postgres", "replica", "pgbouncer", "redis", "minio", "web", "worker", "nginx", "mailpit",
            "prometheus", "grafana", "migrate"} <= set(SERVICES)
    assert SERVICES["web"]["deploy"]["replicas"] == 2 and SERVICES["worker"]["deploy"]["replicas"] == 2
    assert "pg_basebackup" in SERVICES["replica"]["command"] and "-R" in SERVICES["replica"]["command"].split()


@pytest.mark.parametrize("name", APP_SERVICES)
def test_compose_app_services_run_real_commands_with_valid_settings(name: str) -> None:
    cli_accepts(SERVICES[name]["command"])
    env = service_env(name)
    assert required_variables() <= {key for key, value in env.items() if value}
    settings = Settings.from_env(env)  # raises ConfigError, one line per problem, if anything is off
    assert settings.environment == "production" and settings.s3 is not None
    assert settings.s3.endpoint_url == "http://minio:9000" and settings.s3.access_key_id


def test_compose_secret_key_is_required_from_the_operator() -> None:
    with pytest.raises(AssertionError, match="SECRET_KEY must be set"):
        substitute(SERVICES["web"]["environment"]["SECRET_KEY"], {})


def test_compose_files_volumes_and_dependencies_exist() -> None:
    declared_volumes = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in declared_volumes, f"{name} uses volume {source!r}, not declared"
        for dependency in service.get("depends_on", []):
            assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").exists()


def test_compose_ports_agree_with_each_other() -> None:
    web_port = SERVICES["web"]["command"][SERVICES["web"]["command"].index("--port") + 1]
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.search(rf"server web:{web_port};", nginx)
    assert f"listen {SERVICES['nginx']['ports'][0].split(':')[1]};" in nginx
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    scraped = [c for c in prometheus["scrape_configs"] if "web" in str(c)]
    assert scraped and all(str(web_port) in str(config) for config in scraped)

    env = service_env("web")
    assert urlsplit(env["DATABASE_URL"]).port == int(SERVICES["pgbouncer"]["environment"]["LISTEN_PORT"])
    assert urlsplit(env["DATABASE_URL"]).hostname == "pgbouncer"
    assert SERVICES["pgbouncer"]["environment"]["POOL_MODE"] == "transaction"
    assert urlsplit(env["DATABASE_REPLICA_URLS"]).hostname == "replica"
    assert urlsplit(service_env("migrate")["DATABASE_URL"]).hostname == "postgres"  # not through PgBouncer
    for variable, service in (("REDIS_URL", "redis"), ("SMTP_URL", "mailpit"), ("AWS_ENDPOINT_URL", "minio")):
        assert urlsplit(env[variable]).hostname == service
    bucket = env["EXPORT_STORAGE"].removeprefix("s3://").split("/")[0]
    assert f"local/{bucket}" in " ".join(SERVICES["minio-init"]["command"])

    health = SERVICES["web"]["healthcheck"]["test"][-1]
    assert f"127.0.0.1:{web_port}/health" in health and "/health" in app_routes()


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc["kind"] == kind}


@pytest.mark.parametrize("name, doc", k8s_documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_every_k8s_manifest_validates_against_the_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    listed = yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"]
    assert sorted(listed) == sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def test_k8s_a_manifest_with_a_mistake_is_refused() -> None:
    broken = {**by_kind("Deployment")["taskdeck-web"], "spec": {"replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["spec"]["template"]["spec"]["containers"]


def test_k8s_workloads_probe_request_and_run_real_commands() -> None:
    deployments, routes = by_kind("Deployment"), app_routes()
    assert set(deployments) == {"taskdeck-web", "taskdeck-worker"}
    [web] = containers(deployments["taskdeck-web"])
    assert web["readinessProbe"]["httpGet"]["path"] == "/ready" and "/ready" in routes
    assert web["livenessProbe"]["httpGet"]["path"] == "/health" and "/health" in routes
    port = web["command"][web["command"].index("--port") + 1]
    assert {p["name"]: p["containerPort"] for p in web["ports"]}["http"] == int(port)
    [worker] = containers(deployments["taskdeck-worker"])
    [migrate] = containers(by_kind("Job")["taskdeck-migrate"])
    for container in (web, worker, migrate):
        cli_accepts(container["command"])
        assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert migrate["command"] == ["taskdeck", "migrate"]
    # SIGTERM grace: the worker's own shutdown grace (20 s) must fit inside the pod's.
    from worker.settings import SHUTDOWN_GRACE

    assert deployments["taskdeck-worker"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > SHUTDOWN_GRACE


def test_k8s_autoscalers_and_disruption_budgets_point_at_the_deployments() -> None:
    deployments = by_kind("Deployment")
    for hpa in by_kind("HorizontalPodAutoscaler").values():
        target = hpa["spec"]["scaleTargetRef"]
        assert target["kind"] == "Deployment" and target["name"] in deployments
        assert hpa["spec"]["minReplicas"] >= 2
    budgets = by_kind("PodDisruptionBudget")
    assert budgets
    for budget in budgets.values():
        selector = budget["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= d["spec"]["template"]["metadata"]["labels"].items()
                   for d in deployments.values())
    for deployment in deployments.values():
        assert deployment["spec"]["selector"]["matchLabels"].items() <= \
            deployment["spec"]["template"]["metadata"]["labels"].items()


def test_k8s_config_and_secrets_are_split_and_complete() -> None:
    [config] = by_kind("ConfigMap").values()
    [secret] = by_kind("Secret").values()
    public, private = config["data"], secret["stringData"]
    assert not set(public) & set(private)
    assert not [k for k in public if re.search(r"SECRET|PASSWORD|_KEY|_URLS?$", k) and k != "PUBLIC_URL"]
    for name, doc in [*by_kind("Deployment").items(), *by_kind("Job").items()]:
        for container in containers(doc):
            refs = {next(iter(ref)): next(iter(ref.values()))["name"] for ref in container["envFrom"]}
            assert refs == {"configMapRef": config["metadata"]["name"], "secretRef": secret["metadata"]["name"]}, name
    env = {**public, **private}
    assert required_variables() <= set(env)
    settings = Settings.from_env(env)
    assert settings.s3 is not None and settings.database_replica_urls
