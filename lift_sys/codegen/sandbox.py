"""Run untrusted generated code in a sandboxed subprocess. Never in the server's process.

Layers, each catching what the others might miss:

* a fresh ``python -I -S`` (isolated: no user site, no PYTHON* variables, no
  site-packages -- the standard library only) in its own temp dir, with a
  scrubbed environment;
* ``resource`` limits set before exec: CPU seconds, address space (memory),
  file size, open files; a wall-clock timeout that kills the whole process
  group (so a fork bomb dies with its parent);
* no network: a fresh network namespace (``unshare -n``) where the machine
  allows it, and in every case the harness replaces ``socket``, ``os.system``,
  ``subprocess`` and ``os.fork`` with functions that raise;
* output read with a cap: a process that prints 100 MB is killed at the cap.

A crash, a hang, a fork bomb or a huge allocation becomes a failed result
with a reason -- never a hang or a crash of the caller.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 5
    memory_bytes: int = 512 * 1024 * 1024
    file_bytes: int = 10 * 1024 * 1024
    output_bytes: int = 1024 * 1024
    open_files: int = 64


@dataclass
class SandboxResult:
    ok: bool  # the harness ran to completion and reported
    reason: str  # "" when ok, else: timeout / memory / crashed / output_too_large / ...
    payload: Any = None  # what the harness reported (JSON)
    stdout_tail: str = ""
    stderr_tail: str = ""
    seconds: float = 0.0


@lru_cache(maxsize=1)
def _netns_prefix() -> tuple[str, ...]:
    """``unshare -n --`` when this machine lets us make a network namespace, else nothing."""
    exe = shutil.which("unshare")
    if not exe:
        return ()
    try:
        r = subprocess.run([exe, "-n", "--", "true"], capture_output=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return (exe, "-n", "--") if r.returncode == 0 else ()


def _preexec(limits: Limits):
    def apply() -> None:
        os.setsid()  # own process group: the timeout kills every descendant
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def run_python(script: str, stdin_payload: dict, limits: Limits = Limits()) -> SandboxResult:
    """Run ``script`` (the harness) in the sandbox; it reads ``stdin_payload`` as JSON and
    must print its JSON report on the last line of stdout."""
    with tempfile.TemporaryDirectory(prefix="lift-sandbox-") as tmp:
        path = Path(tmp) / "harness.py"
        path.write_text(script)
        env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        cmd = [*_netns_prefix(), sys.executable, "-I", "-S", "-B", str(path)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.Popen(
                cmd, cwd=tmp, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                preexec_fn=_preexec(limits), close_fds=True,
            )
        except OSError as exc:
            return SandboxResult(False, f"could not start the sandbox: {exc}")
        reason = ""
        out, err = bytearray(), bytearray()
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(stdin_payload).encode())
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, out)  # type: ignore[arg-type]
        sel.register(proc.stderr, selectors.EVENT_READ, err)  # type: ignore[arg-type]
        deadline = t0 + limits.wall_s
        open_streams = 2
        while open_streams:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                reason = f"timeout: still running after {limits.wall_s:g} s wall clock"
                break
            for key, _ in sel.select(timeout=min(remaining, 0.5)):
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                key.data.extend(chunk)
                if len(out) + len(err) > limits.output_bytes:
                    reason = f"output_too_large: more than {limits.output_bytes} bytes printed"
                    break
            if reason:
                break
        _kill_group(proc)
        sel.close()
        seconds = time.perf_counter() - t0
        rc = proc.returncode
        if not reason and rc is not None and rc < 0:
            sig = -rc
            if sig == signal.SIGXCPU:
                reason = f"timeout: CPU limit of {limits.cpu_s} s exceeded"
            elif sig == signal.SIGKILL:
                reason = "killed (memory or CPU limit)"
            else:
                reason = f"crashed with signal {signal.Signals(sig).name}"
        stdout = out.decode("utf-8", "replace")
        stderr = err.decode("utf-8", "replace")
        if not reason and "MemoryError" in stderr[-2000:]:
            reason = f"memory: allocation beyond the {limits.memory_bytes // (1024 * 1024)} MiB limit"
        payload = None
        if not reason:
            last = stdout.strip().splitlines()[-1] if stdout.strip() else ""
            try:
                payload = json.loads(last)
            except ValueError:
                reason = f"crashed: exit code {rc}, no report" + (f" ({stderr.strip().splitlines()[-1][:200]})" if stderr.strip() else "")
        return SandboxResult(not reason, reason, payload, stdout[-500:], stderr[-1000:], seconds)


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
