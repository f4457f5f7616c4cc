"""Kubernetes manifests: schema validation (offline, strict) and the contract between objects."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from fleetkit.app.server import KEEP_ALIVE_TIMEOUT
from fleetkit.config import Settings, load_settings
from tests.deployment.tooling import K8S, load_documents

# Oldest supported and newest schema shipped by kubernetes-validate.
VERSIONS = ["1.29", "1.37"]
# CRDs have no core schema; each gets a small structural schema of ours.
CRD_SCHEMAS = {
    "VerticalPodAutoscaler": Path(__file__).parent / "schemas" / "verticalpodautoscaler.json",
}
MANIFESTS = sorted(K8S.glob("*.yaml"))
# Read by the container entrypoint or the C library, not by Settings.
NON_SETTINGS_ENV = {"MALLOC_ARENA_MAX", "WAIT_TIMEOUT", "RUN_MIGRATIONS"}


def all_objects() -> list[tuple[str, dict[str, Any]]]:
    return [(path.name, doc) for path in MANIFESTS for doc in load_documents(path)]


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [doc for _, doc in all_objects()
               if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def container(deployment: dict[str, Any], name: str) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def validate_crd(doc: dict[str, Any]) -> None:
    schema = json.loads(CRD_SCHEMAS[doc["kind"]].read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)


def test_manifest_files_present() -> None:
    names = {p.name for p in MANIFESTS}
    assert {"namespace.yaml", "configmap.yaml", "deployment.yaml", "service.yaml", "hpa.yaml",
            "audit-worker.yaml"} <= names


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(version: str) -> None:
    checked = []
    for filename, doc in all_objects():
        where = f"{filename}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CRD_SCHEMAS:
            validate_crd(doc)
        else:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{where} invalid for Kubernetes {version} at {path}: {exc.message}")
            except kubernetes_validate.SchemaNotFoundError:
                pytest.fail(f"{where}: no schema in Kubernetes {version} (and no CRD schema here)")
        checked.append(doc["kind"])
    assert len(checked) >= 19
    assert {"Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Ingress", "Service",
            "ResourceQuota", "LimitRange", "NetworkPolicy", "VerticalPodAutoscaler"} <= set(checked)


def test_strict_validation_catches_a_misspelt_field() -> None:
    broken = copy.deepcopy(find("Deployment", "fleetkit"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)
    vpa = copy.deepcopy(find("VerticalPodAutoscaler", "fleetkit"))
    vpa["spec"]["updatePolicy"]["updateMode"] = "Sometimes"
    with pytest.raises(jsonschema.ValidationError):
        validate_crd(vpa)


def test_every_object_is_in_the_fleetkit_namespace() -> None:
    for filename, doc in all_objects():
        if doc["kind"] == "Namespace":
            assert doc["metadata"]["name"] == "fleetkit"
        else:
            assert doc["metadata"].get("namespace") == "fleetkit", f"{filename}: {doc['kind']}"


def test_api_deployment() -> None:
    dep = find("Deployment", "fleetkit")
    spec, pod = dep["spec"], dep["spec"]["template"]["spec"]
    assert spec["replicas"] == 20
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    app = container(dep, "fleetkit")
    assert app["resources"] == {"requests": {"cpu": "1", "memory": "2Gi"},
                                "limits": {"cpu": "4", "memory": "8Gi"}}
    assert app["startupProbe"]["httpGet"]["path"] == "/health/live"
    assert app["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert app["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    # The startup probe must allow a slow start before liveness may kill the pod.
    startup = app["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_pods_are_non_root_read_only_and_drop_all_capabilities() -> None:
    for name in ("fleetkit", "fleetkit-audit-worker"):
        pod = find("Deployment", name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == 10001  # the image's USER
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        assert pod["automountServiceAccountToken"] is False
        assert pod["serviceAccountName"] == "fleetkit"
        volumes = {v["name"]: v for v in pod["volumes"]}
        for c in pod["containers"] + pod.get("initContainers", []):
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False, c["name"]
            assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            assert "/tmp" in mounts, c["name"]
            # Every writable mount is an emptyDir (nothing persistent, nothing from the host).
            assert all("emptyDir" in volumes[v] for v in mounts.values()), c["name"]


def test_writable_paths_match_the_settings() -> None:
    data = find("ConfigMap", "fleetkit-config")["data"]
    for name in ("fleetkit", "fleetkit-audit-worker"):
        dep = find("Deployment", name)
        main = dep["spec"]["template"]["spec"]["containers"][0]
        mounts = {m["mountPath"] for m in main["volumeMounts"]}
        assert {data["PROMETHEUS_MULTIPROC_DIR"], data["AUDIT_SPOOL_DIR"], "/tmp"} <= mounts


def test_termination_budget_covers_prestop_and_drain() -> None:
    dep = find("Deployment", "fleetkit")
    pod = dep["spec"]["template"]["spec"]
    app = container(dep, "fleetkit")
    command = app["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    data = find("ConfigMap", "fleetkit-config")["data"]
    needed = int(command[1]) + float(data["SHUTDOWN_DELAY"]) + float(data["GRACEFUL_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] >= needed + 5


def test_configmap_is_a_valid_settings_environment() -> None:
    data = find("ConfigMap", "fleetkit-config")["data"]
    fields = {name.upper() for name in Settings.model_fields}
    unknown = set(data) - fields - NON_SETTINGS_ENV
    assert not unknown, f"not fleetkit settings: {sorted(unknown)}"
    # The Secret (fleetkit-secrets) supplies the datastore URLs; production refuses to start
    # without them (embedded mode).
    secret = {"REDIS_URL": "redis://:pw@redis:6379/0",
              "DATABASE_URL": "postgresql+asyncpg://fleetkit:pw@pgbouncer:5432/fleetkit",
              # required in production: keys tokens, account hashes and device cookies
              "SECRET_KEY": "from-the-secret-" * 3}
    settings = load_settings(env={**data, **secret})
    assert settings.environment == "production"
    assert settings.session_cookie_secure is True
    assert settings.web_concurrency == 2
    # Secrets never live in the ConfigMap.
    assert not {"REDIS_URL", "DATABASE_URL", "DATABASE_READ_URLS", "SECRET_KEY"} & set(data)


def test_every_container_reads_the_same_config_and_secret() -> None:
    images = set()
    for name in ("fleetkit", "fleetkit-audit-worker"):
        pod = find("Deployment", name)["spec"]["template"]["spec"]
        for c in pod["containers"] + pod.get("initContainers", []):
            refs = {next(iter(k for k in ref if k.endswith("Ref"))): ref for ref in c["envFrom"]}
            assert refs["configMapRef"]["configMapRef"]["name"] == "fleetkit-config"
            assert refs["secretRef"]["secretRef"]["name"] == "fleetkit-secrets"
            images.add(c["image"])
    assert len(images) == 1, images


def test_quota_admits_the_initial_rollout_with_surge() -> None:
    def cpu(v: str) -> float:
        return float(v[:-1]) / 1000 if v.endswith("m") else float(v)

    def mem_gi(v: str) -> float:
        units = {"Mi": 1 / 1024, "Gi": 1.0}
        return float(v[:-2]) * units[v[-2:]]

    hard = find("ResourceQuota", "fleetkit-quota")["spec"]["hard"]
    assert (hard["requests.cpu"], hard["requests.memory"], hard["pods"]) == ("50", "100Gi", "200")
    total_cpu = total_mem = 0.0
    pods = 0
    for name in ("fleetkit", "fleetkit-audit-worker"):
        dep = find("Deployment", name)
        surge = dep["spec"]["strategy"]["rollingUpdate"]["maxSurge"]
        replicas = dep["spec"]["replicas"]
        if str(surge).endswith("%"):
            count = replicas - (-replicas * int(surge[:-1]) // 100)  # ceil, as Kubernetes does
        else:
            count = replicas + int(surge)
        requests = dep["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]
        total_cpu += count * cpu(requests["cpu"])
        total_mem += count * mem_gi(requests["memory"])
        pods += count
    assert total_cpu <= cpu(hard["requests.cpu"])
    assert total_mem <= mem_gi(hard["requests.memory"])
    assert pods <= int(hard["pods"])


def test_limit_range_admits_every_container() -> None:
    limits = find("LimitRange", "fleetkit-limits")["spec"]["limits"][0]
    ratio = float(limits["maxLimitRequestRatio"]["cpu"])
    for name in ("fleetkit", "fleetkit-audit-worker"):
        pod = find("Deployment", name)["spec"]["template"]["spec"]
        for c in pod["containers"] + pod.get("initContainers", []):
            r = c["resources"]
            req, lim = r["requests"]["cpu"], r["limits"]["cpu"]
            as_float = [float(v[:-1]) / 1000 if v.endswith("m") else float(v) for v in (req, lim)]
            assert as_float[1] / as_float[0] <= ratio, c["name"]
            assert as_float[1] <= float(limits["max"]["cpu"]), c["name"]


def test_hpa() -> None:
    hpa = find("HorizontalPodAutoscaler", "fleetkit")["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                     "name": "fleetkit"}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (10, 200)
    replicas = find("Deployment", "fleetkit")["spec"]["replicas"]
    assert hpa["minReplicas"] <= replicas <= hpa["maxReplicas"]
    targets = {}
    for m in hpa["metrics"]:
        if m["type"] == "Resource":
            targets[m["resource"]["name"]] = m["resource"]["target"]["averageUtilization"]
        else:
            targets[m["pods"]["metric"]["name"]] = int(m["pods"]["target"]["averageValue"])
    assert targets == {"cpu": 70, "memory": 80, "http_requests_per_second": 1000}
    up, down = hpa["behavior"]["scaleUp"], hpa["behavior"]["scaleDown"]
    assert up["stabilizationWindowSeconds"] == 0 and up["selectPolicy"] == "Max"
    assert down["stabilizationWindowSeconds"] >= 300 and down["selectPolicy"] == "Min"
    # Up may at least double per period; down removes at most a tenth per minute.
    assert max(p["value"] for p in up["policies"] if p["type"] == "Percent") >= 100
    assert max(p["value"] for p in down["policies"] if p["type"] == "Percent") <= 10


def test_vpa_does_not_fight_the_hpa() -> None:
    vpa = find("VerticalPodAutoscaler", "fleetkit")["spec"]
    hpa = find("HorizontalPodAutoscaler", "fleetkit")["spec"]
    assert vpa["targetRef"]["name"] == hpa["scaleTargetRef"]["name"]
    hpa_resources = {m["resource"]["name"] for m in hpa["metrics"] if m["type"] == "Resource"}
    acting = vpa["updatePolicy"]["updateMode"] != "Off"
    controlled = {r for p in vpa["resourcePolicy"]["containerPolicies"]
                  for r in p.get("controlledResources", ["cpu", "memory"])}
    assert controlled == {"memory"}
    # If the VPA acted, it would have to leave every resource the HPA scales on alone.
    assert not acting or not (controlled & hpa_resources)


def test_pdbs() -> None:
    assert find("PodDisruptionBudget", "fleetkit")["spec"]["maxUnavailable"] == "30%"
    api_labels = find("Deployment", "fleetkit")["spec"]["template"]["metadata"]["labels"]
    selector = find("PodDisruptionBudget", "fleetkit")["spec"]["selector"]["matchLabels"]
    assert selector.items() <= api_labels.items()


def test_service_ingress_and_network_policy_reach_the_api_port() -> None:
    dep = find("Deployment", "fleetkit")
    labels = dep["spec"]["template"]["metadata"]["labels"]
    ports = {p["name"]: p["containerPort"] for p in container(dep, "fleetkit")["ports"]}
    svc = find("Service", "fleetkit")
    assert svc["spec"]["selector"].items() <= labels.items()
    assert svc["spec"]["type"] == "LoadBalancer"
    aws = "service.beta.kubernetes.io/aws-load-balancer-"
    assert svc["metadata"]["annotations"][aws + "type"] == "external"
    assert svc["metadata"]["annotations"][aws + "healthcheck-path"] == "/health/ready"
    svc_ports = {p["name"]: p for p in svc["spec"]["ports"]}
    for p in svc_ports.values():
        assert p["targetPort"] in ports
    ingress = find("Ingress", "fleetkit")
    notes = ingress["metadata"]["annotations"]
    assert notes["cert-manager.io/cluster-issuer"]
    assert notes["nginx.ingress.kubernetes.io/affinity"] == "cookie"
    assert "nginx.ingress.kubernetes.io/limit-rps" in notes
    assert ingress["spec"]["tls"][0]["hosts"] == [r["host"] for r in ingress["spec"]["rules"]]
    for _, doc in all_objects():
        if doc["kind"] == "Ingress":
            for rule in doc["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    backend = path["backend"]["service"]
                    assert backend["name"] == "fleetkit" and backend["port"]["name"] in svc_ports
    policy = find("NetworkPolicy", "fleetkit-api-ingress")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert {p["port"] for rule in policy["ingress"] for p in rule["ports"]} == {ports["http"]}


def test_readme_documents_the_apply_order() -> None:
    readme = (K8S / "README.md").read_text()
    applied = re.findall(r"kubectl apply -f deployment/k8s/([\w.-]+\.yaml)", readme)
    assert sorted(applied) == sorted(p.name for p in MANIFESTS), applied
    order = {name: i for i, name in enumerate(applied)}
    assert order["namespace.yaml"] == 0
    assert (order["configmap.yaml"] < order["deployment.yaml"] < order["service.yaml"]
            < order["hpa.yaml"])
    secret = readme.index("create secret generic fleetkit-secrets")
    assert secret < readme.index("apply -f deployment/k8s/deployment.yaml")


def test_readme_keeps_the_ingress_idle_timeout_below_the_servers() -> None:
    # The balancer, never the pod, must close an idle upstream connection: a POST written on one
    # the pod is closing fails (docs/deployment.md "Draining an instance").
    readme = (K8S / "README.md").read_text()
    values = re.findall(r'upstream-keepalive-timeout: "(\d+)"', readme)
    assert values, "the README does not set ingress-nginx's upstream-keepalive-timeout"
    assert all(int(v) < KEEP_ALIVE_TIMEOUT for v in values), values
