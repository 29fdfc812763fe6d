"""Child processes that never outlive us: each in its own group, killed when we die however we die, files private."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence

# Run in a fresh single-threaded interpreter between fork and the real program: ask the kernel to
# SIGKILL the child when its parent dies (PR_SET_PDEATHSIG = 1, kept across exec), then exec it.
# A preexec_fn would do the same inside our own process, where gRPC threads make fork-then-Python unsafe.
_DIE_WITH_PARENT = """
import ctypes, os, sys
parent, command = int(sys.argv[1]), sys.argv[2:]
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, 9)
except (OSError, AttributeError):
    pass  # not Linux: the parent's stop() and its signal handlers still end the child
if os.getppid() != parent:
    os._exit(1)  # the parent died before prctl: nothing will stop this child
os.execvp(command[0], command)
"""


def spawn(command: Sequence[str], **popen_kwargs) -> subprocess.Popen:
    """Start `command` in a new process group with umask 077, SIGKILLed by the kernel when this process dies.

    The kernel ties the child to the *thread* that starts it: call this from a thread that lives as long
    as the child should (the main thread, in our commands and tests).
    """
    wrapper = [sys.executable, "-S", "-c", _DIE_WITH_PARENT, str(os.getpid()), *command]
    # umask 077: what the child creates — the python backend's /dev/shm regions hold request text — is
    # readable by this user only.
    return subprocess.Popen(wrapper, start_new_session=True, umask=0o077, **popen_kwargs)


def stop(process: subprocess.Popen | None, grace: float) -> None:
    """SIGTERM to `process`'s group, SIGKILL after `grace` seconds (at once when 0); waits for it."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM if grace > 0 else signal.SIGKILL)
        process.wait(grace if grace > 0 else None)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        process.wait()


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(_family(host)) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def busy_ports(host: str, ports: dict[str, int]) -> list[str]:
    """'NAME port P' for each of `ports` that something already listens on at `host`."""
    busy = []
    for name, port in ports.items():
        with socket.socket(_family(host)) as s:
            # As the servers bind: a port in TIME_WAIT is free, one with a listener is not.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                busy.append(f"{name} port {port}")
    return busy


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def wait_until(condition, timeout: float, interval: float = 0.1) -> bool:
    """Poll `condition()` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
    return True


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
