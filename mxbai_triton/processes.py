"""Child processes that never outlive us: each in its own group, killed when we die however we die, files private."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence

# A supervisor in a fresh single-threaded interpreter (a preexec_fn would run Python between fork and
# exec inside our own process, where gRPC threads make that unsafe). It leads the child's process
# group, asks the kernel for SIGUSR1 when our process dies (PR_SET_PDEATHSIG = 1) and then kills the
# whole group, grandchildren included (Triton's python-backend stubs, which outlive a killed
# tritonserver in the middle of a long execution). The program runs as its child with SIGKILL as
# its own parent-death signal; when it exits, the supervisor kills what it left and exits with its
# code. SIGTERM reaches the program through the group (stop()); the supervisor ignores it.
_SUPERVISOR = """
import ctypes, os, signal, sys
parent, command = int(sys.argv[1]), sys.argv[2:]
group = os.getpgrp()

def parent_death_signal(sig):
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, sig)
    except (OSError, AttributeError):
        pass  # not Linux: stop() and the caller's signal handlers still end the group

def kill_rest():
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    if int(stat.read().rsplit(")", 1)[1].split()[2]) == group:
                        os.kill(int(entry), signal.SIGKILL)
            except (OSError, ValueError, IndexError):
                pass

signal.signal(signal.SIGUSR1, lambda *_: os.killpg(group, signal.SIGKILL))
signal.signal(signal.SIGTERM, signal.SIG_IGN)
parent_death_signal(signal.SIGUSR1)
if os.getppid() != parent:
    os.killpg(group, signal.SIGKILL)  # our parent died before prctl
supervisor = os.getpid()
child = os.fork()
if child == 0:
    signal.signal(signal.SIGUSR1, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    parent_death_signal(signal.SIGKILL)
    if os.getppid() != supervisor:
        os._exit(1)
    try:
        os.execvp(command[0], command)
    except OSError as error:
        print(f"cannot run {command[0]}: {error}", file=sys.stderr)
        os._exit(127)
status = os.waitpid(child, 0)[1]
kill_rest()
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""


def spawn(command: Sequence[str], **popen_kwargs) -> subprocess.Popen:
    """Start `command` in a new process group with umask 077; the group is SIGKILLed when this process dies.

    The kernel ties the supervisor to the *thread* that starts it: call this from a thread that lives
    as long as the child should (the main thread, in our commands and tests). The returned process
    is the supervisor: signal its group (stop()), not the process alone; its exit code is the program's.
    """
    supervised = [sys.executable, "-S", "-c", _SUPERVISOR, str(os.getpid()), *command]
    # umask 077: what the child creates — the python backend's /dev/shm regions hold request text — is
    # readable by this user only.
    return subprocess.Popen(supervised, start_new_session=True, umask=0o077, **popen_kwargs)


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


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps a port on this machine ("localhost", 127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True



def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
