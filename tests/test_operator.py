"""An operator's first hour with `serve`: it never claims ports it does not own, leaves no process behind however
it dies, and speaks only about what matters unless asked."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from mxbai_triton.model_repository.metrics_port import read_counters
from mxbai_triton.processes import busy_ports, free_port
from tests.conftest import serve_command
from tests.waiting import GUARD, wait_until

pytestmark = pytest.mark.triton


def _processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain `text` (ours: the repository path or a port)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if text in cmdline:
                found.append(f"{entry.name}: {cmdline[:120]}")
    return found


def _start(command: list[str]) -> tuple[subprocess.Popen, list[str]]:
    """A serve process, and its stdout lines up to and including the gateway's (or Triton's) ready line."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    wants_api = "--api-port" in command
    for line in process.stdout:
        lines.append(line)
        if ("rerank API on" in line) if wants_api else ("models ready" in line):
            return process, lines
    raise AssertionError(f"serve exited {process.wait()}: {process.stderr.read()}")


@pytest.fixture(scope="module")
def quiet_serve(tiny_repository):
    """`mxbai-triton -q serve --api-port`: Triton and the gateway, as an operator starts them."""
    api_port = free_port()
    command, ports = serve_command(tiny_repository, "--api-port", str(api_port))
    command.insert(command.index("serve"), "-q")
    process, lines = _start(command)
    yield process, lines, {**ports, "api": api_port}
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=60)


def test_a_second_serve_on_busy_ports_exits_1_naming_the_port_and_never_says_ready(quiet_serve, tiny_repository):
    _, _, ports = quiet_serve
    command, _ = serve_command(tiny_repository)
    command[command.index("--grpc-port") + 1] = str(ports["grpc"])
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1
    assert "models ready" not in run.stdout
    assert run.stderr.strip() == (f"mxbai-triton serve: error: cannot serve on 127.0.0.1: gRPC port {ports['grpc']} "
                                  "already in use by another process (choose other ports: --http-port, --grpc-port, "
                                  "--metrics-port)")


def test_a_busy_api_port_is_refused_before_triton_starts(quiet_serve, tiny_repository):
    _, _, ports = quiet_serve
    command, own = serve_command(tiny_repository, "--api-port", str(ports["api"]))
    run = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and f"API port {ports['api']} already in use" in run.stderr
    assert busy_ports("127.0.0.1", {"HTTP": own["http"]}) == []  # nothing of the refused serve stayed up


def test_quiet_serve_prints_only_its_own_ready_lines(quiet_serve):
    process, lines, ports = quiet_serve
    assert [line.split(":")[0] for line in lines] == ["models ready", "rerank API on http"]
    # One request through the gateway and Triton, then the stop: stderr is read to the end, so any line printed
    # after start-up, while serving or while stopping is in it.
    scored = httpx.post(f"http://127.0.0.1:{ports['api']}/v1/rerank", json={"query": "q", "documents": ["a", "b"]})
    assert scored.status_code == 200
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    third_party = [line for line in stderr.splitlines() if re.match(r"[IWE]\d{4} |INFO:|WARNING:", line)]
    assert third_party == []


@pytest.fixture(scope="module")
def own_repository(tiny_repository, tmp_path_factory):
    """A copy of the tiny repository at a path no other test's server has in its command line (under pytest-xdist
    another worker serves tiny_repository itself), so that "no process mentions it" is about ours alone."""
    return shutil.copytree(tiny_repository, tmp_path_factory.mktemp("operator") / "repository", symlinks=True)


def test_kill_9_of_serve_leaves_no_process_and_no_port_behind(own_repository):
    api_port = free_port()
    command, ports = serve_command(own_repository, "--api-port", str(api_port))
    process, _ = _start(command)
    ours = {**ports, "api": api_port}
    process.send_signal(signal.SIGKILL)
    process.wait()
    named = {name: port for name, port in ours.items()}
    assert wait_until(lambda: busy_ports("127.0.0.1", named) == [], timeout=10), busy_ports("127.0.0.1", named)
    assert wait_until(lambda: not _processes_mentioning(f"127.0.0.1:{ports['grpc']}"), timeout=10)
    assert wait_until(lambda: not _processes_mentioning(str(own_repository)), timeout=10), \
        _processes_mentioning(str(own_repository))


def test_kill_9_of_serve_in_the_middle_of_scoring_leaves_no_python_backend_stub(own_repository):
    import threading

    from mxbai_triton.client import NO_RETRY, RerankClient
    from mxbai_triton.perf.workload import mixed_documents

    command, ports = serve_command(own_repository)
    process, _ = _start(command)
    documents = mixed_documents(1000, 0.6, median=200, outliers=3, seed=5)
    busy = threading.Event()

    def keep_scoring():
        with RerankClient(f"127.0.0.1:{ports['grpc']}", model="rr", retry=NO_RETRY) as client:
            while True:
                busy.set()
                try:
                    client.scores("q", documents)
                except Exception:  # noqa: BLE001 - the server is killed under it
                    return

    threading.Thread(target=keep_scoring, daemon=True).start()
    busy.wait()
    metrics = f"http://127.0.0.1:{ports['metrics']}"
    assert wait_until(lambda: read_counters(metrics, ("mxbai_dispatch_sub_batches",))["mxbai_dispatch_sub_batches"] > 0, GUARD)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert wait_until(lambda: not _processes_mentioning(str(own_repository)), timeout=10), \
        _processes_mentioning(str(own_repository))


def test_the_python_backends_shared_memory_is_readable_by_its_user_only(served):
    regions = list(Path("/dev/shm").glob(f"{served.shm_prefix}*"))
    assert regions and {oct(r.stat().st_mode & 0o777) for r in regions} == {"0o600"}



def test_serve_started_in_the_background_by_a_script_stops_on_sigint_and_says_so(tiny_repository, tmp_path):
    # bash starts a non-interactive script's background job with SIGINT ignored; serve must still stop on it.
    command, ports = serve_command(tiny_repository)
    out, pidfile = tmp_path / "serve.out", tmp_path / "serve.pid"
    shell = subprocess.Popen(["bash", "-c", f"{shlex.join(command)} > {out} 2>&1 & echo $! > {pidfile}; wait $!"],
                             start_new_session=True)
    try:
        assert wait_until(lambda: "models ready" in (out.read_text() if out.exists() else ""), timeout=120), \
            out.read_text() if out.exists() else "no output"
        os.kill(int(pidfile.read_text()), signal.SIGINT)
        assert shell.wait(timeout=120) == 130  # serve's status: interrupted
    finally:
        if shell.poll() is None:
            os.killpg(os.getpgid(shell.pid), signal.SIGKILL)
    lines = out.read_text().splitlines()
    assert lines[-2].startswith("stopping: answering the requests already accepted") and lines[-1] == "stopped", lines
    assert not _processes_mentioning(f"127.0.0.1:{ports['grpc']}")
