"""Run the tritonserver binary bundled in the nvidia-pytriton wheel: start, wait for readiness, stop."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .dispatch import COUNTERS

# Triton's administrative APIs: who holds the token may list/load models, map shared memory, change
# logging and tracing. Inference, health, metadata, config and statistics stay open.
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")
ADMIN_HEADER = "admin-token"  # HTTP header; gRPC clients send it as metadata GRPC_ADMIN_HEADER
GRPC_ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"
TOKEN_ENV = "MXBAI_TRITON_ADMIN_TOKEN"
_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9._~+/-]{16,}$")


# Counters the tokenizer step publishes on Triton's metrics port (model_repository/dispatch.py).
DISPATCH_COUNTERS = tuple(COUNTERS)


def read_counters(metrics_url: str, names=DISPATCH_COUNTERS, **labels: str) -> dict[str, float]:
    """Sum of each named counter over its series that carry `labels`, from a Prometheus endpoint
    ("http://host:port"; 0 when absent)."""
    with urllib.request.urlopen(f"{metrics_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    totals = dict.fromkeys(names, 0.0)
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in totals and all(w in line for w in wanted):
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals


class ServerError(RuntimeError):
    """The server could not start, or died; the message carries the end of its log."""


def _pytriton_dir() -> Path:
    try:
        import pytriton
    except ImportError as error:
        raise ServerError("nvidia-pytriton is not installed: `make setup` installs it (pip install nvidia-pytriton)") from error
    return Path(pytriton.__file__).parent / "tritonserver"


def backend_directory() -> Path:
    """A backends/ folder holding the python backend with the stub for this interpreter's version.

    The wheel ships one stub per Python version beside the backend; Triton expects it inside the
    backend folder, so the folder is assembled once per version in a user cache directory.
    """
    source = _pytriton_dir()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = source / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton ships no python backend stub for Python {version}")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mxbai-triton"
    target = cache / f"backends-py{version}-{stub.stat().st_size}"
    if not (target / "python" / "triton_python_backend_stub").is_file():
        cache.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=cache))
        shutil.copytree(source / "backends" / "python", staging / "python")
        shutil.copy2(stub, staging / "python" / "triton_python_backend_stub")
        try:
            staging.rename(target)
        except OSError:  # another process won the race: use its copy
            shutil.rmtree(staging, ignore_errors=True)
    return target


def server_environment() -> dict[str, str]:
    """LD_LIBRARY_PATH for the wheel's bundled libraries; this interpreter's bin first on PATH.

    Python models import from the environment whose `python3` comes first on PATH.
    """
    env = dict(os.environ)
    site = Path(_pytriton_dir()).parent.parent
    libs = [str(site / "nvidia_pytriton.libs"), sysconfig.get_config_var("LIBDIR") or ""]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([p for p in libs if p] + [env.get("LD_LIBRARY_PATH", "")]).rstrip(os.pathsep)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _tee(source, log) -> None:
    with log:
        for line in source:
            sys.stdout.buffer.write(line)
            sys.stdout.flush()
            log.write(line)
            log.flush()


def _tail(log: str, lines: int = 40) -> str:
    return "\n".join(log.splitlines()[-lines:]) if log else "(no log)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TritonServer:
    """A tritonserver process; use as a context manager or call start()/stop().

    Binds 127.0.0.1 and runs with model control mode "none" unless told otherwise.
    """

    repository: str
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    host: str = "127.0.0.1"
    admin_token: str | None = None
    restricted_apis: tuple[str, ...] = RESTRICTED_APIS
    env: dict[str, str] = field(default_factory=dict)  # e.g. AWS_* credentials for an s3:// repository
    extra_args: list[str] = field(default_factory=list)
    log_path: Path | None = None
    # Seconds stop() gives in-flight requests after SIGTERM before SIGKILL; 0 kills at once (tests
    # and benchmarks, with nothing in flight: Triton's graceful unload polls once a second, ~4 s).
    stop_grace: float = 30.0
    # The python backend's shared-memory regions get this prefix, so that stop() can remove what a
    # killed server leaves in /dev/shm (a SIGKILL gives the stubs no chance to).
    shm_prefix: str = field(default_factory=lambda: f"mxbai_triton_{uuid.uuid4().hex[:12]}_")
    process: subprocess.Popen | None = None
    log_thread: threading.Thread | None = field(default=None, repr=False)

    @classmethod
    def on_free_ports(cls, repository: str | Path, **options) -> "TritonServer":
        """A server on three free loopback ports (tests, demos, benchmarks)."""
        return cls(str(repository), http_port=free_port(), grpc_port=free_port(), metrics_port=free_port(), **options)

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """Prometheus endpoint base (append /metrics)."""
        return f"http://{self.host}:{self.metrics_port}"

    def command(self) -> list[str]:
        return [
            str(_pytriton_dir() / "bin" / "tritonserver"),
            f"--model-repository={self.repository}",
            f"--backend-directory={backend_directory()}",
            "--model-control-mode=none",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--http-address={self.host}", f"--http-port={self.http_port}",
            f"--grpc-address={self.host}", f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.host}", f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            *self.restriction_args(),
            *self.extra_args,
        ]

    def restriction_args(self) -> list[str]:
        """Triton's restricted-api/-protocol flags: the APIs answer only requests carrying the token header."""
        if self.admin_token is None:
            return []
        if not _TOKEN_PATTERN.match(self.admin_token):
            raise ValueError("the admin token must be at least 16 characters of A-Z a-z 0-9 . _ ~ + / -")
        rule = f"{','.join(self.restricted_apis)}:{ADMIN_HEADER}={self.admin_token}"
        return [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]

    def start(self, *, timeout: float = 180.0, stream_log: bool = False) -> "TritonServer":
        """Check a local repository, start tritonserver and wait until every model is ready.

        Raises:
            ServerError: naming the missing or broken files, or the models tritonserver failed to load.
        """
        from .preflight import check_repository, is_remote

        if not is_remote(self.repository):
            problems = check_repository(self.repository)
            if problems:
                raise ServerError(f"model repository {self.repository} cannot be served:\n  " + "\n  ".join(problems))
        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            self.command(), env={**server_environment(), **self.env}, stdout=subprocess.PIPE if stream_log else log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.log_thread = None
        if stream_log:  # the terminal sees the log live; the file keeps it for error reports
            self.log_thread = threading.Thread(target=_tee, args=(self.process.stdout, log), daemon=True)
            self.log_thread.start()
        else:
            log.close()
        self.wait_ready(timeout)
        return self

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode}{self.load_failures()}")
            if self.is_ready():
                return
            time.sleep(0.25)
        self.stop()
        raise ServerError(f"tritonserver not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def _log_text(self) -> str:
        if self.log_thread is not None and self.process is not None and self.process.poll() is not None:
            self.log_thread.join(timeout=5)  # the process has exited: the copy ends at end of file
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")

    def load_failures(self) -> str:
        """The models that failed to load and why, from the log (else its last lines)."""
        log = self._log_text()
        failures = dict.fromkeys(
            f"model '{m.group(1)}' failed to load: {m.group(2).split(chr(92) + 'n')[0]}"
            for m in re.finditer(r"failed to load '([^']+)' version \d+: ([^\n\"]+)", log)
        )
        if not failures:
            return f":\n{_tail(log)}"
        return ":\n  " + "\n  ".join(failures) + f"\n(full log: {self.log_path})"

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self._log_text(), lines)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM (graceful: in-flight requests finish), then SIGKILL after `timeout` (default `stop_grace`)."""
        grace = self.stop_grace if timeout is None else timeout
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
                self.process.wait(grace if grace > 0 else None)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.remove_shared_memory()

    def remove_shared_memory(self) -> None:
        """Delete this server's python-backend regions left in /dev/shm (none after a graceful stop)."""
        shm = Path("/dev/shm")
        if self.process is not None and self.process.poll() is not None and shm.is_dir():
            for region in shm.glob(f"{self.shm_prefix}*"):
                region.unlink(missing_ok=True)

    def __enter__(self) -> "TritonServer":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
