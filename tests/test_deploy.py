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


def _container(name: str = "tritonserver") -> dict:
    containers = _objects()[("Deployment", "mxbai-rerank")]["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == name]
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


def test_the_rerank_api_sidecar_runs_the_gateway_from_the_same_image_against_local_triton():
    from mxbai_triton.gateway.cli import ENV_PREFIX
    from mxbai_triton.model_repository.server import TritonServer

    api, triton = _container("rerank-api"), _container()
    env = {e["name"]: e.get("value") for e in api["env"]}
    assert api["image"] == triton["image"] and api["command"] == ["mxbai-triton", "api"]
    assert env[f"{ENV_PREFIX}TRITON"] == f"127.0.0.1:{TritonServer('repo').grpc_port}"
    assert env[f"{ENV_PREFIX}HOST"] == "0.0.0.0"
    assert {p["name"]: p["containerPort"] for p in api["ports"]} == {"api": int(env[f"{ENV_PREFIX}PORT"])}
    assert api["readinessProbe"]["httpGet"] == {"path": "/health", "port": "api"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/live", "port": "api"}
    (keys,) = [m for m in api["volumeMounts"] if env[f"{ENV_PREFIX}KEY_FILE"].startswith(m["mountPath"] + "/")]
    volumes = {v["name"]: v for v in _objects()[("Deployment", "mxbai-rerank")]["spec"]["template"]["spec"]["volumes"]}
    secret = _objects()[("Secret", volumes[keys["name"]]["secret"]["secretName"])]
    assert env[f"{ENV_PREFIX}KEY_FILE"].rsplit("/", 1)[1] in secret["stringData"]
    service_ports = {p["name"]: p["targetPort"] for p in _objects()[("Service", "mxbai-rerank")]["spec"]["ports"]}
    assert service_ports["api"] == "api"


def test_the_image_installs_the_gateway_it_runs():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY gateway /src/gateway" in dockerfile and "'/src[api]'" in dockerfile


def test_the_image_build_context_leaves_out_exports_engines_and_virtualenvs():
    root = DEPLOY.parent
    ignored = {line for line in (root / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")}
    assert {"artifacts", ".venv", ".venv-ma", "build", ".git", "*.onnx", "*.plan"} <= ignored
    copied = [line.split()[1] for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")]
    assert not set(copied) & ignored


@pytest.mark.slow
def test_every_package_the_image_installs_has_a_wheel_for_the_containers_python(tmp_path):
    import re
    import subprocess
    import sys

    dockerfile = (DEPLOY / "Dockerfile").read_text()
    python = re.search(r"^# python: (3\.\d+)", dockerfile, re.MULTILINE).group(1)
    (target,) = re.findall(r"pip install --no-cache-dir '/src(\[\w+\])'", dockerfile)
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--target", str(tmp_path),
         "--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--abi", "cp" + python.replace(".", ""),
         *(f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")),
         f"{DEPLOY.parent}{target}"],
        capture_output=True, text=True, timeout=600,
    )
    if run.returncode and re.search(r"NewConnectionError|Failed to establish|Temporary failure in name resolution", run.stderr):
        pytest.skip("the package index is unreachable from here")
    assert run.returncode == 0, run.stderr[-2000:]
