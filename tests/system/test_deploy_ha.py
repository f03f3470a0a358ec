"""deploy/k8s/ha/ and the compose `ha` profile, checked offline like the base manifests (tests/system/test_deploy.py).

Core kinds validate against the Kubernetes schemas (kubernetes-validate, strict). The CloudNativePG Cluster is a
custom resource whose schema is not bundled: the fields the app depends on are checked by hand below (instances,
synchronous replication, the database and owner), and its -rw/-ro Services are the ones the app's URLs name.
"""
from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from shared.config import Settings
from tests.system.test_deploy import K8S, K8S_VERSION, ROOT, SERVICES, cli_accepts, substitute

HA = K8S / "ha"
PATCHES = ("config-patch.yaml", "secret-patch.yaml")


def ha_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(HA.glob("*.yaml")):
        if path.name == "kustomization.yaml" or path.name in PATCHES:
            continue
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in ha_documents() if doc["kind"] == kind}


def overlay_env() -> dict[str, str]:
    """The app's environment under the overlay: the base ConfigMap and Secret with the patches applied."""
    env: dict[str, str] = {}
    for base, patch in (("configmap.yaml", "config-patch.yaml"), ("secret.yaml", "secret-patch.yaml")):
        key = "data" if base == "configmap.yaml" else "stringData"
        env.update(yaml.safe_load((K8S / base).read_text())[key])
        env.update(yaml.safe_load((HA / patch).read_text())[key])
    return env


@pytest.mark.parametrize("name, doc", [d for d in ha_documents() if d[1]["kind"] != "Cluster"],
                         ids=lambda v: v if isinstance(v, str) else f"{v['kind']}-{v['metadata']['name']}")
def test_every_core_manifest_validates_against_the_schema(name: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_builds_on_the_base_and_lists_every_file() -> None:
    kustomization = yaml.safe_load((HA / "kustomization.yaml").read_text())
    assert kustomization["resources"][0] == "../"
    listed = kustomization["resources"][1:] + [p["path"] for p in kustomization["patches"]]
    assert sorted(listed) == sorted(p.name for p in HA.glob("*.yaml") if p.name != "kustomization.yaml")
    for patch in PATCHES:  # a patch must name an object of the base, or kustomize refuses it
        doc = yaml.safe_load((HA / patch).read_text())
        base = {d["metadata"]["name"] for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml"
                for d in yaml.safe_load_all(p.read_text()) if d and d["kind"] == doc["kind"]}
        assert doc["metadata"]["name"] in base


def test_the_cloudnativepg_cluster_replicates_synchronously_and_the_app_uses_its_services() -> None:
    [(name, cluster)] = by_kind("Cluster").items()
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1"
    spec = cluster["spec"]
    assert spec["instances"] >= 3  # RPO 0 and writes during one failure need a primary and two standbys
    assert 1 <= spec["minSyncReplicas"] <= spec["maxSyncReplicas"] < spec["instances"]
    assert set(spec) <= {"instances", "imageName", "minSyncReplicas", "maxSyncReplicas", "primaryUpdateStrategy",
                         "postgresql", "bootstrap", "storage", "resources", "affinity"}
    env = overlay_env()
    settings = Settings.from_env(env)
    write, [replica] = urlsplit(settings.database_url), settings.database_replica_urls
    assert write.hostname == f"{name}-rw" and "target_session_attrs=read-write" in write.query
    assert urlsplit(replica).hostname == f"{name}-ro"
    assert urlsplit(env["DATABASE_DIRECT_URL"]).hostname == f"{name}-rw"
    owner = spec["bootstrap"]["initdb"]
    assert (write.username, write.path.strip("/")) == (owner["owner"], owner["database"])
    assert settings.database_pooler == "none"


def test_the_app_finds_redis_through_the_sentinels_that_are_deployed() -> None:
    settings = Settings.from_env(overlay_env())
    sentinels = by_kind("StatefulSet")["redis-sentinel"]
    assert settings.redis_sentinels == tuple(
        (f"redis-sentinel-{i}.redis-sentinel", 26379) for i in range(sentinels["spec"]["replicas"]))
    script = by_kind("ConfigMap")["taskdeck-redis-scripts"]["data"]["sentinel.sh"]
    name, quorum = re.search(r"sentinel monitor (\S+) \S+ 6379 (\d+)", script).groups()
    assert name == settings.redis_sentinel_master
    assert int(quorum) == sentinels["spec"]["replicas"] // 2 + 1
    assert by_kind("PodDisruptionBudget")["redis-sentinel"]["spec"]["minAvailable"] == int(quorum)
    assert by_kind("StatefulSet")["redis"]["spec"]["replicas"] >= 2


HA_SERVICES = {name: service for name, service in SERVICES.items() if "ha" in service.get("profiles", [])}


def test_compose_ha_profile_has_the_whole_topology() -> None:
    assert {"etcd", "pg1", "pg2", "redis-replica", "sentinel1", "sentinel2", "sentinel3",
            "web-ha", "worker-ha", "migrate-ha"} <= set(HA_SERVICES)


@pytest.mark.parametrize("name", ["web-ha", "worker-ha", "migrate-ha"])
def test_compose_ha_app_services_find_every_node_and_the_sentinels(name: str) -> None:
    service = SERVICES[name]
    cli_accepts(service["command"] if isinstance(service["command"], list) else service["command"].split())
    env = {key: substitute(str(value), {"SECRET_KEY": "x" * 48}) for key, value in service["environment"].items()}
    settings = Settings.from_env(env)
    hosts = {h.split(":")[0] for h in urlsplit(settings.database_url).netloc.split("@")[-1].split(",")}
    assert hosts == {"pg1", "pg2"} and "target_session_attrs=read-write" in settings.database_url
    assert {host for host, _ in settings.redis_sentinels} == {"sentinel1", "sentinel2", "sentinel3"}
    for dependency in service.get("depends_on", {}):
        assert dependency in SERVICES


def test_compose_patroni_nodes_share_one_etcd_and_scope() -> None:
    for node in ("pg1", "pg2"):
        env = SERVICES[node]["environment"]
        assert env["PATRONI_ETCD3_HOSTS"] == "etcd:2379" and env["PATRONI_SCOPE"] == "taskdeck"
        assert env["PATRONI_NAME"] == node and env["PATRONI_POSTGRESQL_CONNECT_ADDRESS"] == f"{node}:5432"
        assert SERVICES[node]["build"] == "deploy/patroni"
    config = yaml.safe_load((ROOT / "deploy" / "patroni" / "patroni.yml").read_text())
    dcs = config["bootstrap"]["dcs"]
    assert dcs["synchronous_mode"] is True and not dcs.get("synchronous_mode_strict")
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]  # Patroni's own rule
    assert (ROOT / "deploy" / "patroni" / "post-bootstrap.sh").exists()
    sentinel = " ".join(SERVICES["sentinel1"]["command"])
    assert "sentinel monitor taskdeck redis 6379 2" in sentinel and SERVICES["sentinel3"] == SERVICES["sentinel1"]
