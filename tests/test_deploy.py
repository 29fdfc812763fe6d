"""deploy/: what `kubectl apply` reads, validated offline against the Kubernetes schemas, safe as applied, and
consistent with the code."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate checks the manifests")
yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
# What `kubectl apply -f deploy/kubernetes/` reads: the folder's files with these extensions, not its subfolders.
APPLIED = sorted(p for p in KUBERNETES.iterdir() if p.is_file() and p.suffix in (".yaml", ".yml", ".json"))
PLACEHOLDER = re.compile(r"REPLACE|CHANGE.?ME|TODO|BUCKET|REGISTRY|example\.(com|org)|<[a-z ]+>", re.IGNORECASE)
TRITON_PORTS = {8000, 8001}


def _documents(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _applied() -> list[dict]:
    return [d for p in APPLIED for d in _documents(p)]


def _objects(documents: list[dict] | None = None) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in (documents if documents is not None else _applied())}


def _pod(documents: list[dict] | None = None) -> dict:
    return _objects(documents)[("Deployment", "mxbai-rerank")]["spec"]["template"]["spec"]


def _container(name: str = "tritonserver", documents: list[dict] | None = None) -> dict:
    (container,) = [c for c in _pod(documents)["containers"] if c["name"] == name]
    return container


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("path", APPLIED, ids=[p.name for p in APPLIED])
def test_manifest_validates_strictly_against_the_kubernetes_schema(path):
    for document in _documents(path):
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)


def test_schema_validation_rejects_a_misspelled_field():
    deployment = copy.deepcopy(_objects()[("Deployment", "mxbai-rerank")])
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, kubernetes_validate.latest_version(), strict=True)


# --- what `kubectl apply -f deploy/kubernetes/` applies ---

def test_the_applied_set_holds_no_secret_and_no_placeholder():
    kinds = sorted(d["kind"] for d in _applied())
    assert kinds == ["Deployment", "HorizontalPodAutoscaler", "NetworkPolicy", "PodDisruptionBudget", "Service",
                     "ServiceAccount"]
    found = [s for d in _applied() for s in _strings(d) if PLACEHOLDER.search(s)]
    assert found == []


def test_the_secrets_the_pods_read_are_the_ones_the_deploy_readme_says_to_create():
    pod = _pod()
    named = {e["valueFrom"]["secretKeyRef"]["name"] for c in pod["containers"] for e in c.get("env", [])
             if "secretKeyRef" in e.get("valueFrom", {})}
    named |= {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    created = set(re.findall(r"kubectl create secret generic ([a-z0-9-]+)", (DEPLOY / "README.md").read_text()))
    assert named == {"mxbai-rerank-s3-reader", "mxbai-rerank-admin-token", "mxbai-rerank-api-keys"}
    assert named <= created


def test_the_kustomize_base_is_exactly_the_applied_files_and_hidden_from_kubectl_apply_f():
    base = yaml.safe_load((KUBERNETES / "Kustomization").read_text())
    assert sorted(base["resources"]) == [p.name for p in APPLIED]
    assert "Kustomization" not in [p.name for p in APPLIED]


# --- who can reach what ---

def test_the_client_service_publishes_the_gateway_only():
    services = [d for d in _applied() if d["kind"] == "Service"]
    assert [(s["metadata"]["name"], p["name"], p["port"], p["targetPort"]) for s in services for p in s["spec"]["ports"]] == [
        ("mxbai-rerank", "api", 8080, "api")]


def test_triton_http_and_grpc_bind_loopback_inside_the_pod():
    args = _container()["args"]
    assert {"--http-address=127.0.0.1", "--grpc-address=127.0.0.1", "--http-port=8000", "--grpc-port=8001"} <= set(args)
    assert [p["containerPort"] for p in _container()["ports"]] == [8002]


def test_the_network_policy_lets_clients_reach_the_gateway_and_monitoring_the_metrics_only():
    policy = _objects()[("NetworkPolicy", "mxbai-rerank")]
    pod_labels = _objects()[("Deployment", "mxbai-rerank")]["spec"]["template"]["metadata"]["labels"]
    assert policy["spec"]["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    named = {p["name"]: p["containerPort"] for c in _pod()["containers"] for p in c["ports"]}
    rules = [({named[p["port"]] for p in rule["ports"]}, rule.get("from")) for rule in policy["spec"]["ingress"]]
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert rules == [({8080}, None), ({8002, 8081}, monitoring)]
    assert not any(ports & TRITON_PORTS for ports, _ in rules)


# --- what each container may do ---

@pytest.mark.parametrize("name", ["tritonserver", "rerank-api"])
def test_every_container_has_a_read_only_root_no_privilege_escalation_and_no_capabilities(name):
    context = _container(name)["securityContext"]
    assert context == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "runAsNonRoot": True,
                       "capabilities": {"drop": ["ALL"]}}


def test_no_service_account_token_is_mounted():
    account = _objects()[("ServiceAccount", "mxbai-rerank")]
    assert (_pod()["serviceAccountName"], _pod()["automountServiceAccountToken"]) == ("mxbai-rerank", False)
    assert account["automountServiceAccountToken"] is False


def test_writable_paths_are_memory_or_scratch_volumes_only():
    volumes = {v["name"]: v for v in _pod()["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in _container()["volumeMounts"]}
    assert set(mounts) == {"/dev/shm", "/tmp"} and all("emptyDir" in v for v in mounts.values())
    assert mounts["/dev/shm"]["emptyDir"]["medium"] == "Memory"


def test_the_repository_is_read_with_a_read_only_identity_never_the_publishers():
    reader = json.loads((DEPLOY / "iam" / "model-repository-reader.json").read_text())
    publisher = json.loads((DEPLOY / "iam" / "model-repository-publisher.json").read_text())
    actions = {a for s in reader["Statement"] for a in s["Action"]}
    assert actions == {"s3:ListBucket", "s3:GetObject"}
    assert {"s3:PutObject", "s3:DeleteObject"} <= {a for s in publisher["Statement"] for a in s["Action"]}
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in _container()["env"] if "secretKeyRef" in e.get("valueFrom", {})}
    assert {refs["AWS_ACCESS_KEY_ID"]["name"], refs["AWS_SECRET_ACCESS_KEY"]["name"]} == {"mxbai-rerank-s3-reader"}


# --- images by digest ---

def _site_example() -> dict:
    return yaml.safe_load((DEPLOY / "site.example" / "kustomization.yaml").read_text())


def test_the_site_kustomization_sets_every_container_image_by_digest():
    (image,) = _site_example()["images"]
    assert {c["image"] for c in _pod()["containers"]} == {image["name"]}
    assert set(image) == {"name", "newName", "digest"} and image["digest"].startswith("sha256:")


def test_a_filled_in_site_renders_valid_objects_with_images_by_digest_and_no_secret(tmp_path):
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (its built-in kustomize) renders the site")
    shutil.copytree(KUBERNETES, tmp_path / "kubernetes")
    site = tmp_path / "site"
    site.mkdir()
    text = (DEPLOY / "site.example" / "kustomization.yaml").read_text()
    text = text.replace("registry.example.com", "registry.internal").replace("REPLACE-BUCKET", "models")
    (site / "kustomization.yaml").write_text(text.replace("REPLACE-WITH-THE-64-HEX-DIGEST-OF-YOUR-PUSH", "ab" * 32))
    rendered = subprocess.run([kubectl, "kustomize", str(site)], capture_output=True, text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    documents = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    for document in documents:
        kubernetes_validate.validate(document, kubernetes_validate.latest_version(), strict=True)
    assert {c["image"] for c in _pod(documents)["containers"]} == {f"registry.internal/mxbai-triton-server@sha256:{'ab' * 32}"}
    (config,) = [d for d in documents if d["kind"] == "ConfigMap"]
    refs = {e["valueFrom"]["configMapKeyRef"]["name"] for e in _container(documents=documents)["env"]
            if "configMapKeyRef" in e.get("valueFrom", {})}
    assert refs == {config["metadata"]["name"]} and config["data"]["url"] == "s3://models/mxbai-rerank/v1"
    assert "Secret" not in {d["kind"] for d in documents}


def test_the_deployed_image_builds_on_nvidias_triton_by_digest():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert [line for line in dockerfile.splitlines() if line.startswith(("FROM ", "ARG TRITON"))] == [
        "ARG TRITON_BASE=nvcr.io/nvidia/tritonserver:26.10-py3", "FROM ${TRITON_BASE}"]
    readme = (DEPLOY / "README.md").read_text()
    assert "--build-arg TRITON_BASE=nvcr.io/nvidia/tritonserver:26.10-py3@sha256:" in readme


def test_the_gateways_dependencies_are_pinned_exactly():
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")
    api = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["api"]
    assert api and all(re.fullmatch(r"[\w.\[\]-]+==[\w.]+", requirement) for requirement in api), api


# --- consistent with the code ---

def test_probes_ask_tritons_health_endpoints_over_loopback():
    container = _container()
    for probe, path in (("startupProbe", "ready"), ("readinessProbe", "ready"), ("livenessProbe", "live")):
        command = container[probe]["exec"]["command"]
        assert command[:2] == ["python3", "-c"] and f"'http://127.0.0.1:8000/v2/health/{path}'" in command[2]
    from mxbai_triton.model_repository.server import TritonServer

    defaults = TritonServer("repo")
    assert (defaults.http_port, defaults.grpc_port, defaults.metrics_port) == (8000, 8001, 8002)


def test_container_runs_tritonserver_like_serve_does_with_the_repository_from_object_storage():
    from mxbai_triton.model_repository.server import ADMIN_HEADER, RESTRICTED_APIS

    args = _container()["args"]
    assert "--model-repository=$(MODEL_REPOSITORY)" in args
    assert {"--model-control-mode=none", "--strict-readiness=true", "--exit-on-error=true"} <= set(args)
    rule = f"{','.join(RESTRICTED_APIS)}:{ADMIN_HEADER}=$(ADMIN_TOKEN)"
    assert {f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"} <= set(args)
    env = {e["name"]: e["valueFrom"] for e in _container()["env"]}
    assert env["MODEL_REPOSITORY"] == {"configMapKeyRef": {"name": "mxbai-rerank-repository", "key": "url"}}


def test_pod_requests_a_gpu_and_mounts_a_memory_backed_dev_shm():
    assert _container()["resources"]["limits"]["nvidia.com/gpu"] == "1"


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


def test_the_pod_monitor_and_the_scrape_config_scrape_both_metrics_ports_of_the_deployments_pods():
    template = _objects()[("Deployment", "mxbai-rerank")]["spec"]["template"]
    ports = {p["name"] for c in template["spec"]["containers"] for p in c.get("ports", ())}
    (monitor,) = _documents(DEPLOY / "monitoring" / "podmonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= template["metadata"]["labels"].items()
    assert {e["port"] for e in monitor["spec"]["podMetricsEndpoints"]} == {"metrics", "api-metrics"} <= ports
    (config,) = _documents(DEPLOY / "monitoring" / "prometheus-scrape.yaml")
    keep = {r["source_labels"][0]: r["regex"] for r in config["scrape_configs"][0]["relabel_configs"] if r.get("action") == "keep"}
    assert set(keep["__meta_kubernetes_pod_container_port_name"].split("|")) == {"metrics", "api-metrics"}
    assert keep["__meta_kubernetes_pod_label_app_kubernetes_io_name"] == template["metadata"]["labels"]["app.kubernetes.io/name"]


@pytest.mark.parametrize("kind, name", [("PodDisruptionBudget", "mxbai-rerank"), ("Service", "mxbai-rerank")])
def test_selectors_match_the_deployments_pods(kind, name):
    labels = _objects()[("Deployment", "mxbai-rerank")]["spec"]["template"]["metadata"]["labels"]
    spec = _objects()[(kind, name)]["spec"]
    selector = spec["selector"].get("matchLabels", spec["selector"])
    assert selector.items() <= labels.items()


def test_the_rerank_api_sidecar_runs_the_gateway_from_the_same_image_against_local_triton(monkeypatch):
    from mxbai_triton.cli import build_parser
    from mxbai_triton.gateway.cli import ENV_NAMES, ENV_PREFIX

    api, triton = _container("rerank-api"), _container()
    env = {e["name"]: e["value"] for e in api["env"]}
    assert api["image"] == triton["image"] and api["command"] == ["mxbai-triton", "api"]
    assert set(env) <= {ENV_PREFIX + name for name in ENV_NAMES}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    args = build_parser().parse_args(["api"])
    assert (args.triton, args.host, args.port, args.api_metrics_port) == ("127.0.0.1:8001", "0.0.0.0", 8080, 8081)
    assert {p["name"]: p["containerPort"] for p in api["ports"]} == {"api": args.port, "api-metrics": args.api_metrics_port}
    assert api["readinessProbe"]["httpGet"] == {"path": "/health", "port": "api"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/live", "port": "api"}
    (keys,) = [m for m in api["volumeMounts"] if args.api_key_file.startswith(m["mountPath"] + "/")]
    volumes = {v["name"]: v for v in _pod()["volumes"]}
    assert volumes[keys["name"]]["secret"]["secretName"] == "mxbai-rerank-api-keys"
    assert (args.api_max_body_mib, args.api_buffered_mib) == (64, 128)


def test_the_image_installs_the_gateway_it_runs():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "COPY gateway /src/gateway" in dockerfile and "'/src[api]'" in dockerfile


def test_the_image_build_context_leaves_out_exports_engines_and_virtualenvs():
    ignored = {line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")}
    assert {"artifacts", ".venv", ".venv-ma", "build", ".git", "*.onnx", "*.plan"} <= ignored
    copied = [line.split()[1] for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("COPY ")]
    assert not set(copied) & ignored


@pytest.mark.slow
def test_every_package_the_image_installs_has_a_wheel_for_the_containers_python(tmp_path):
    import sys

    dockerfile = (DEPLOY / "Dockerfile").read_text()
    python = re.search(r"^# python: (3\.\d+)", dockerfile, re.MULTILINE).group(1)
    (target,) = re.findall(r"pip install --no-cache-dir '/src(\[\w+\])'", dockerfile)
    run = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--target", str(tmp_path),
         "--only-binary=:all:", "--python-version", python, "--implementation", "cp", "--abi", "cp" + python.replace(".", ""),
         *(f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")),
         f"{ROOT}{target}"],
        capture_output=True, text=True, timeout=600,
    )
    if run.returncode and re.search(r"NewConnectionError|Failed to establish|Temporary failure in name resolution", run.stderr):
        pytest.skip("the package index is unreachable from here")
    assert run.returncode == 0, run.stderr[-2000:]


def test_the_pods_drain_fits_its_grace_period_in_order():
    """Gateway first (preStop sleep, then its drain), tritonserver after it (preStop waits for the gateway's exit and
    an idle Triton), then Triton's own exit: the sum fits terminationGracePeriodSeconds."""
    gateway, triton = _container("rerank-api"), _container()
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    sleep = int(gateway["lifecycle"]["preStop"]["exec"]["command"][-1])
    drain = float(env["MXBAI_API_DRAIN_TIMEOUT"])
    hook = triton["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:3] == ["python3", "-m", "mxbai_triton.model_repository.drain"]
    waits = float(hook[hook.index("--timeout") + 1])
    assert hook[hook.index("--after-port") + 1] == env["MXBAI_API_METRICS_PORT"]  # open until the gateway exits
    exit_timeout = int(next(a.split("=")[1] for a in triton["args"] if a.startswith("--exit-timeout-secs=")))
    assert waits >= sleep + drain
    assert _pod()["terminationGracePeriodSeconds"] >= waits + exit_timeout


def test_the_drain_hook_runs_as_the_manifest_calls_it(monkeypatch):
    from mxbai_triton.model_repository import drain

    calls = []
    monkeypatch.setattr(drain, "wait_port_closed", lambda host, port, deadline: calls.append(("port", host, port)))
    monkeypatch.setattr(drain, "wait_drained", lambda url, deadline, flag=None: calls.append(("idle", url, flag)) or True)
    hook = _container()["lifecycle"]["preStop"]["exec"]["command"]
    assert drain.main(hook[3:]) == 0
    assert calls == [("port", "127.0.0.1", 8081), ("idle", "http://127.0.0.1:8002", None)]
