"""Run the tritonserver binary bundled in the nvidia-pytriton wheel: start, wait for readiness, stop."""

from __future__ import annotations

import logging
import os
import re
import shutil
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

from mxbai_triton.core.drain import DRAIN_FILE_ENV
from mxbai_triton.processes import busy_ports, free_port, pid_alive, spawn, stop

from .dispatch_telemetry import LOG_REQUESTS_ENV
from .server_log import KNOWN_LOAD_ABORT, STARTED, failure_reason, tail, tee

__all__ = ["ServerError", "TritonServer"]
log = logging.getLogger(__name__)

# Triton's administrative APIs: who holds the token may list/load models, map shared memory, change
# logging and tracing. Inference, health, metadata, config and statistics stay open.
RESTRICTED_APIS = ("model-repository", "shared-memory", "logging", "trace")
ADMIN_HEADER = "admin-token"  # HTTP header; gRPC clients send it as metadata GRPC_ADMIN_HEADER
GRPC_ADMIN_HEADER = f"triton-grpc-protocol-{ADMIN_HEADER}"
TOKEN_ENV = "MXBAI_TRITON_ADMIN_TOKEN"
_TOKEN_PATTERN = re.compile(r"^[A-Za-z0-9._~+/-]{16,}$")


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


SHM_PREFIX = "mxbai_triton_"


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
    # The python backend's shared-memory regions get this prefix, with our PID in it, so that stop()
    # removes what a killed server leaves in /dev/shm, and the next start what a killed owner left.
    shm_prefix: str = field(default_factory=lambda: f"{SHM_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:8]}_")
    # Terminal output of the server's log with start(stream_log=True): lines at this level and above,
    # as they are ("text") or as JSON objects ("json").
    stream_level: int = logging.WARNING
    log_format: str = "text"
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
            *(["--log-verbose=1"] if self.stream_level <= logging.DEBUG else []),
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
        """Check a local repository and the ports, start tritonserver and wait until every model is ready.

        Raises:
            ServerError: naming the missing or broken files, a busy port, or why tritonserver did not start.
        """
        from .preflight import check_repository, is_remote

        if not is_remote(self.repository):
            problems = check_repository(self.repository)
            if problems:
                raise ServerError(f"model repository {self.repository} cannot be served:\n  " + "\n  ".join(problems))
        self._check_ports()
        remove_orphaned_shared_memory()
        self._launch(stream_log)
        try:
            self.wait_ready(timeout)
        except ServerError:
            if KNOWN_LOAD_ABORT not in self._log_text() or self.process.poll() is None:
                raise
            # Triton 24.10's python backend can abort as its stubs start on a busy machine (the crash
            # triton-inference-server/server#8882 reports while serving): nothing was served yet, so once more.
            first_try = self.log_path.rename(self.log_path.with_suffix(".aborted.log"))
            log.warning("tritonserver aborted while loading the python models (%s, a known Triton 24.10 "
                        "python-backend crash; log: %s); starting it once more", KNOWN_LOAD_ABORT, first_try)
            self.stop(0)
            self._check_ports()
            self._launch(stream_log)
            self.wait_ready(timeout)
        return self

    def _check_ports(self) -> None:
        busy = busy_ports(self.host, {"HTTP": self.http_port, "gRPC": self.grpc_port, "metrics": self.metrics_port})
        if busy:
            raise ServerError(f"cannot serve on {self.host}: {', '.join(busy)} already in use by another process "
                              "(choose other ports: --http-port, --grpc-port, --metrics-port)")

    def _launch(self, stream_log: bool) -> None:
        if self.log_path is None:
            self.log_path = Path(tempfile.mkstemp(prefix="tritonserver-", suffix=".log")[1])
        log_file = open(self.log_path, "wb")
        self.drain_flag.unlink(missing_ok=True)
        env = {**server_environment(), DRAIN_FILE_ENV: str(self.drain_flag), **self.env}
        if self.stream_level <= logging.DEBUG:  # Triton logs verbosely: the dispatch adds a line per request
            env[LOG_REQUESTS_ENV] = "1"
        self.process = spawn(self.command(), env=env,
                             stdout=subprocess.PIPE if stream_log else log_file, stderr=subprocess.STDOUT)
        self.log_thread = None
        if stream_log:  # the terminal sees what matters live; the file keeps every line for error reports
            self.log_thread = threading.Thread(target=tee, daemon=True, args=(
                self.process.stdout, log_file, self.stream_level, self.log_format == "json"))
            self.log_thread.start()
        else:
            log_file.close()

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def wait_ready(self, timeout: float) -> None:
        """Until this server's own process has started its services and every model is ready."""
        deadline, announced = time.monotonic() + timeout, time.monotonic() + 1.0
        services = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ServerError(f"tritonserver exited with code {self.process.returncode}: {self.failure_reason()}")
            services = services or self.started_services()  # read the log until it announced them, not after
            if services and self.is_ready():
                self.restrict_shared_memory()
                return
            if time.monotonic() >= announced:
                log.info("waiting for tritonserver to load the models of %s (up to %.0f s)", self.repository, timeout)
                announced = deadline + 1
            time.sleep(0.25)
        self.stop()
        raise ServerError(f"tritonserver not ready after {timeout:.0f}s:\n{self.log_tail()}")

    def started_services(self) -> bool:
        """Whether our process's log announces all three services (another server on the ports would not)."""
        text = self._log_text()
        return all(re.search(pattern, text) for pattern in STARTED.values())

    def _log_text(self) -> str:
        if self.log_thread is not None and self.process is not None and self.process.poll() is not None:
            self.log_thread.join(timeout=5)  # the process has exited: the copy ends at end of file
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return self.log_path.read_text(errors="replace")

    def failure_reason(self) -> str:
        """Why the server did not start, in one line per failed model or service (else its log's last lines)."""
        return failure_reason(self._log_text(), self.log_path)

    def log_tail(self, lines: int = 40) -> str:
        return tail(self._log_text(), lines)

    @property
    def drain_flag(self) -> Path:
        """The flag that makes the dispatch refuse requests it has not started (core/drain.py)."""
        return Path(tempfile.gettempdir()) / f"{self.shm_prefix}drain"

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM, then SIGKILL after `timeout` (default `stop_grace`); drain.drain() first to lose no request."""
        stop(self.process, self.stop_grace if timeout is None else timeout)
        self.remove_shared_memory()
        self.drain_flag.unlink(missing_ok=True)

    def restrict_shared_memory(self) -> None:
        """Make this server's python-backend regions (they carry request text) readable by this user only.

        The backend creates them 0644 whatever the umask (boost.interprocess sets the mode); with model
        control mode "none" every region exists once the models are ready.
        """
        shm = Path("/dev/shm")
        for region in shm.glob(f"{self.shm_prefix}*") if shm.is_dir() else ():
            region.chmod(0o600)

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


def remove_orphaned_shared_memory() -> list[str]:
    """Delete /dev/shm regions of our servers whose owning process is gone (killed with no chance to clean)."""
    removed, shm = [], Path("/dev/shm")
    for region in shm.glob(f"{SHM_PREFIX}*_*") if shm.is_dir() else ():
        owner = region.name[len(SHM_PREFIX):].split("_", 1)[0]
        if owner.isdigit() and not pid_alive(int(owner)) and region.stat().st_uid == os.getuid():
            region.unlink(missing_ok=True)
            removed.append(region.name)
    if removed:
        log.debug("removed %d shared-memory regions of servers whose owner died", len(removed))
    return removed
