"""deploy/: Kubernetes manifests validated offline against the Kubernetes schemas, and consistent with the code."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate checks the manifests")
yaml = pytest.importorskip("yaml")

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _objects() -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for p in MANIFESTS for d in _documents(p)}


def _container() -> dict:
    (container,) = _objects()[("Deployment", "mxbai-rerank")]["spec"]["template"]["spec"]["containers"]
    return container


@pytest.mark.parametrize("path", MANIFESTS, ids=[p.name for p in MANIFESTS])
def test_manifest_validates_strictly_against_the_kubernetes_schema(path):
    for document in _documents(path):
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_schema_validation_rejects_a_misspelled_field():
    deployment = copy.deepcopy(_objects()[("Deployment", "mxbai-rerank")])
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


def test_probes_use_tritons_health_endpoints_on_the_http_port():
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    from mxbai_triton.model_repository.server import TritonServer

    defaults = TritonServer("repo")
    assert ports == {"http": defaults.http_port, "grpc": defaults.grpc_port, "metrics": defaults.metrics_port}


def test_container_runs_tritonserver_like_serve_does_with_the_repository_from_object_storage():
    from mxbai_triton.model_repository.server import ADMIN_HEADER, RESTRICTED_APIS

    args = _container()["args"]
    assert any(a.startswith("--model-repository=s3://") for a in args)
    assert {"--model-control-mode=none", "--strict-readiness=true", "--exit-on-error=true"} <= set(args)
    rule = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}=$(ADMIN_TOKEN)"
    assert {f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"} <= set(args)


def test_credentials_come_from_the_secret_and_every_key_exists_there():
    secret = _objects()[("Secret", "mxbai-rerank-credentials")]
    refs = [e["valueFrom"]["secretKeyRef"] for e in _container()["env"] if "valueFrom" in e]
    assert {r["name"] for r in refs} == {secret["metadata"]["name"]}
    assert {r["key"] for r in refs} == set(secret["stringData"])
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ADMIN_TOKEN"} <= {r["key"] for r in refs}


def test_pod_requests_a_gpu_and_mounts_a_memory_backed_dev_shm():
    container = _container()
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    volumes = {v["name"]: v for v in _objects()[("Deployment", "mxbai-rerank")]["spec"]["template"]["spec"]["volumes"]}
    (shm,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    assert volumes[shm["name"]]["emptyDir"]["medium"] == "Memory"


def test_prometheus_scrapes_the_metrics_port():
    template = _objects()[("Deployment", "mxbai-rerank")]["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for p in _container()["ports"]}
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true" and int(annotations["prometheus.io/port"]) == ports["metrics"]


def test_autoscaler_scales_the_deployment_on_the_metric_the_adapter_serves():
    hpa = _objects()[("HorizontalPodAutoscaler", "mxbai-rerank")]
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mxbai-rerank"}
    (metric,) = hpa["spec"]["metrics"]
    adapter = yaml.safe_load((DEPLOY / "prometheus-adapter" / "values.yaml").read_text())
    served = {rule["name"]["as"] for rule in adapter["rules"]["custom"]}
    assert metric["pods"]["metric"]["name"] in served
    assert all("nv_inference_queue_duration_us" in rule["seriesQuery"] for rule in adapter["rules"]["custom"])


@pytest.mark.parametrize("kind, name", [("PodDisruptionBudget", "mxbai-rerank"), ("Service", "mxbai-rerank"),
                                        ("Service", "mxbai-rerank-headless")])
def test_selectors_match_the_deployments_pods(kind, name):
    labels = _objects()[("Deployment", "mxbai-rerank")]["spec"]["template"]["metadata"]["labels"]
    spec = _objects()[(kind, name)]["spec"]
    selector = spec["selector"].get("matchLabels", spec["selector"])
    assert selector.items() <= labels.items()
