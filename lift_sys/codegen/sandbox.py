"""Run untrusted code (generated candidates, IR predicates) in a sandboxed subprocess.

Nothing untrusted ever runs in the CLI's or the server's own process. Two
isolation levels, chosen once per process (``LIFT_SANDBOX=auto|bwrap|process``):

``bwrap`` (default wherever it works; Debian package ``bubblewrap``, the
unprivileged sandbox Flatpak uses; ~90 ms per start measured here):

* new user (uid/gid 65534 inside, no capabilities, no further user
  namespaces), PID, network, mount, IPC, UTS and cgroup namespaces;
* a filesystem of only the interpreter, its standard library (site-packages
  hidden under an empty read-only dir) and the shared libraries under
  ``/usr/lib``, all read-only; no ``/etc``, no ``/home``, no ``/root``, no
  project sources, no shell, no ``/proc`` at all, and of ``/dev`` only
  null, zero, random and urandom;
* ``--as-pid-1``: the sandboxed interpreter is PID 1 of its namespace.
  Why: with bwrap's own reaper as PID 1, that reaper ran *without* our
  seccomp filter, as the same uid, dumpable -- the red team opened its
  ``/proc/1/mem``, rewrote its code, and left unfiltered processes running
  after verification said "verified". Now there is no other process in
  the sandbox, and no ``/proc`` to reach one through;
* a private 16 MiB tmpfs as ``/tmp`` and cwd; the root itself read-only;
* a cleared environment (the server's ``LIFT_API_KEY`` is not there);
* ``--die-with-parent``, ``--new-session`` (no TIOCSTI into our terminal);
  when the sandbox's PID 1 dies the kernel kills everything in its PID
  namespace, so nothing outlives a verification.

``process`` (fallback where bwrap cannot run): a fresh ``python -I -S`` in its
own session with a scrubbed environment, in a fresh network namespace when
``unshare -n`` works. Weaker -- same uid as the caller, the host filesystem
readable -- and every report says which level was in force.

In both, before any untrusted text is loaded, the harness restricts itself
with Landlock (read only the interpreter and libraries, write only its tmp
dir, no TCP, no signals outside itself -- see :mod:`lift_sys.codegen.harness`)
and installs the seccomp filter of :mod:`lift_sys.codegen.seccomp` (no exec,
no fork, no sockets, no namespaces, no ptrace); the parent sets rlimits (CPU, address
space, file size, open files, no core dumps), a wall-clock timeout that kills
the whole process group, and a cap on everything printed.

The sandboxed process returns *data* on stdout (one JSON document, nothing
else); :mod:`lift_sys.codegen.verify` makes every judgement in the parent.
A crash, a hang, a fork bomb, a huge allocation or a malformed answer
becomes a failed result with a reason -- never a hang or a crash of the caller.
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
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from lift_sys.codegen.seccomp import filter_program

Isolation = Literal["bwrap", "process"]
SANDBOX_UID = 65534  # "nobody" inside the user namespace


@dataclass(frozen=True)
class Limits:
    wall_s: float = 10.0
    cpu_s: int = 5
    memory_bytes: int = 512 * 1024 * 1024
    file_bytes: int = 10 * 1024 * 1024
    output_bytes: int = 1024 * 1024
    open_files: int = 64
    tmp_bytes: int = 16 * 1024 * 1024  # the private /tmp (bwrap only)


@dataclass
class SandboxResult:
    ok: bool  # the process exited cleanly and printed exactly one JSON document
    reason: str  # "" when ok, else: timeout / memory / crashed / output_too_large / malformed ...
    payload: Any = None  # the JSON document it printed
    stdout_tail: str = ""
    stderr_tail: str = ""
    seconds: float = 0.0
    isolation: Isolation = "process"
    exit_code: int | None = None


class SandboxUnavailable(RuntimeError):
    """``LIFT_SANDBOX=bwrap`` was asked for and bubblewrap cannot run here."""


# --------------------------------------------------------------------------- isolation


def _interpreter_paths() -> list[tuple[str, str]]:
    """(host path, path inside) of the base interpreter, its stdlib and, in a shared build, libpython."""
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    stdlib = os.path.realpath(os.path.dirname(os.__file__))  # the base interpreter's, even from a venv
    paths = [(exe, exe), (stdlib, stdlib)]
    libdir = sysconfig.get_config_var("LIBDIR")
    ldlib = sysconfig.get_config_var("LDLIBRARY")
    if libdir and ldlib and sysconfig.get_config_var("Py_ENABLE_SHARED"):
        lib = os.path.join(libdir, ldlib)
        if os.path.exists(lib) and not lib.startswith("/usr/lib"):
            paths.append((os.path.realpath(lib), lib))
    return paths


_SYSTEM_LIBS = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib")
_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


def _interpreter_binds() -> list[str]:
    """bwrap arguments that make the base interpreter and its stdlib (nothing else of Python) visible."""
    args: list[str] = []
    for host, inside in _interpreter_paths():
        args += ["--ro-bind", host, inside]
    stdlib = _interpreter_paths()[1][1]
    for sub in ("site-packages", "dist-packages"):
        if os.path.isdir(os.path.join(stdlib, sub)):  # hide third-party packages under an empty read-only dir
            path = os.path.join(stdlib, sub)
            args += ["--size", "4096", "--tmpfs", path, "--remount-ro", path]
    return args


def _system_lib_binds() -> list[str]:
    """The C libraries (libc, libffi, libz ...) read-only; merged-/usr symlinks recreated as symlinks."""
    args: list[str] = []
    for path in _SYSTEM_LIBS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for dev in _DEVICES:  # no /dev tmpfs (its /dev/shm would be writable): just the devices Python uses
        if os.path.exists(dev):
            args += ["--dev-bind", dev, dev]
    return args


def landlock_rules(tmp: str | None) -> dict[str, list[str]]:
    """What the harness's Landlock ruleset allows: read the interpreter and libraries, write ``tmp``
    (bwrap: its private 16 MiB tmpfs; the process fallback gets none -- its cwd is on the host's
    disk, where the red team left 2 GB of immutable files behind)."""
    read = [inside for _, inside in _interpreter_paths()]
    read += [p for p in _SYSTEM_LIBS if os.path.exists(p)] + [d for d in _DEVICES if os.path.exists(d)]
    return {"read": read, "write": ([tmp] if tmp else []) + ["/dev/null"]}


def bwrap_argv(limits: Limits) -> list[str]:
    exe = shutil.which("bwrap")
    if not exe:
        raise SandboxUnavailable("bwrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)")
    return [
        exe,
        "--unshare-all", "--unshare-user", "--disable-userns", "--as-pid-1",
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID), "--hostname", "sandbox",
        "--die-with-parent", "--new-session", "--clearenv", "--cap-drop", "ALL",
        *_system_lib_binds(), *_interpreter_binds(),
        "--size", str(limits.tmp_bytes), "--tmpfs", "/tmp", "--chdir", "/tmp",
        "--remount-ro", "/",
        "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp", "--setenv", "LANG", "C.UTF-8",
        "--setenv", "PATH", "/nonexistent",
        "--",
    ]


@lru_cache(maxsize=1)
def _bwrap_works() -> str:
    """'' when a bwrap-sandboxed interpreter starts here, else why not."""
    try:
        argv = bwrap_argv(Limits())
    except SandboxUnavailable as exc:
        return str(exc)
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    try:
        r = subprocess.run([*argv, exe, "-I", "-S", "-c", "import json, ctypes; print(1)"],
                           capture_output=True, timeout=20, env={"PATH": "/usr/bin:/bin"})
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap did not start: {exc}"
    if r.returncode != 0 or r.stdout.strip() != b"1":
        return "bwrap did not start: " + (r.stderr.decode("utf-8", "replace").strip().splitlines() or ["?"])[-1][:200]
    return ""


def isolation(requested: str | None = None) -> Isolation:
    """The isolation level in force: ``LIFT_SANDBOX`` (auto|bwrap|process), auto = bwrap where it works."""
    want = (requested or os.environ.get("LIFT_SANDBOX") or "auto").strip().lower()
    if want not in ("auto", "bwrap", "process"):
        raise SandboxUnavailable(f"LIFT_SANDBOX must be auto, bwrap or process, not {want!r}")
    if want == "process":
        return "process"
    why = _bwrap_works()
    if not why:
        return "bwrap"
    if want == "bwrap":
        raise SandboxUnavailable(f"LIFT_SANDBOX=bwrap but {why}")
    return "process"


def describe() -> dict[str, Any]:
    """What ``lift-sys verify`` and ``/health`` show about the sandbox."""
    try:
        level = isolation()
        why = _bwrap_works() if level == "process" else ""
    except SandboxUnavailable as exc:
        return {"isolation": "unavailable", "detail": str(exc)}
    return {"isolation": level, "seccomp": filter_program() is not None, "landlock": landlock_abi(),
            **({"detail": f"bwrap unavailable: {why}"} if why else {})}


@lru_cache(maxsize=1)
def landlock_abi() -> int:
    """The kernel's Landlock ABI version (0: none), as the harness will find it."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        return max(0, int(libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint(1))))
    except (OSError, AttributeError):
        return 0


@lru_cache(maxsize=1)
def _netns_prefix() -> tuple[str, ...]:
    """``unshare`` of network, IPC and UTS namespaces where this machine allows it (process level only)."""
    exe = shutil.which("unshare")
    if not exe:
        return ()
    for flags in (("-n", "-i", "-u"), ("-n",)):
        try:
            r = subprocess.run([exe, *flags, "--", "true"], capture_output=True, timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            return ()
        if r.returncode == 0:
            return (exe, *flags, "--")
    return ()


def _preexec(limits: Limits):
    def apply() -> None:
        os.setsid()  # own process group: the timeout kills every descendant
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_s, limits.cpu_s + 1))
        resource.setrlimit(resource.RLIMIT_AS, (limits.memory_bytes, limits.memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_bytes, limits.file_bytes))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


# --------------------------------------------------------------------------- running


def run_python(script: str, stdin_payload: dict, limits: Limits = Limits(), *,
               level: Isolation | None = None) -> SandboxResult:
    """Run ``script`` in the sandbox with ``stdin_payload`` (JSON) on stdin.

    The script must print exactly one JSON document on stdout and exit 0;
    anything else is a failed result with a reason. The payload gains a
    ``"seccomp"`` key: the filter (hex) the harness installs before it
    loads anything untrusted.
    """
    level = level or isolation()
    program = filter_program()
    exe = os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)
    with tempfile.TemporaryDirectory(prefix="lift-sandbox-", ignore_cleanup_errors=True) as tmp:
        payload = dict(stdin_payload, seccomp=program.hex() if program else "",
                       landlock=landlock_rules("/tmp" if level == "bwrap" else None))
        if level == "bwrap":
            cmd = [*bwrap_argv(limits), exe, "-I", "-S", "-B", "-c", script]
            env = {"PATH": "/usr/bin:/bin"}
            cwd = "/"
        else:
            cmd = [*_netns_prefix(), exe, "-I", "-S", "-B", "-c", script]
            env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8"}
            cwd = tmp
        return _run(cmd, env, cwd, json.dumps(payload).encode(), limits, level)


def _run(cmd: list[str], env: dict, cwd: str, stdin: bytes, limits: Limits, level: Isolation) -> SandboxResult:
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, preexec_fn=_preexec(limits), close_fds=True)
    except OSError as exc:
        return SandboxResult(False, f"could not start the sandbox: {exc}", isolation=level)
    reason = ""
    out, err = bytearray(), bytearray()
    sel = selectors.DefaultSelector()
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    os.set_blocking(proc.stdin.fileno(), False)
    pending = memoryview(stdin)
    sel.register(proc.stdin, selectors.EVENT_WRITE)
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    deadline = t0 + limits.wall_s
    open_streams = 2
    while open_streams:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            reason = f"timeout: still running after {limits.wall_s:g} s wall clock"
            break
        for key, _ in sel.select(timeout=min(remaining, 0.5)):
            if key.fileobj is proc.stdin:
                try:
                    n = os.write(proc.stdin.fileno(), pending[:65536])
                except (BrokenPipeError, OSError):
                    n = len(pending)
                pending = pending[n:]
                if not pending:
                    sel.unregister(proc.stdin)
                    proc.stdin.close()
                continue
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
    if not proc.stdin.closed:
        proc.stdin.close()
    # The streams closed: give the process a moment to exit on its own, then make sure it is gone.
    if not reason:
        try:
            proc.wait(timeout=max(0.0, min(1.0, deadline - time.perf_counter())))
        except subprocess.TimeoutExpired:
            pass
    still_running = proc.poll() is None
    _kill_group(proc)
    sel.close()
    seconds = time.perf_counter() - t0
    rc = proc.returncode
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    if not reason and still_running:
        reason = "did not exit after closing its output"
    if not reason and rc is not None and rc < 0:
        sig = -rc
        if sig == signal.SIGXCPU:
            reason = f"timeout: CPU limit of {limits.cpu_s} s exceeded"
        elif sig == signal.SIGKILL:
            reason = "killed (memory or CPU limit)"
        else:
            reason = f"crashed with signal {signal.Signals(sig).name}" if sig in signal.Signals._value2member_map_ else f"crashed with signal {sig}"
    if not reason and "MemoryError" in stderr[-2000:]:
        reason = f"memory: allocation beyond the {limits.memory_bytes // (1024 * 1024)} MiB limit"
    if not reason and rc != 0:
        last = stderr.strip().splitlines()[-1][:200] if stderr.strip() else "no error output"
        reason = f"crashed: exit code {rc} ({last})"
    payload = None
    if not reason:
        lines = stdout.strip().splitlines()
        if len(lines) != 1:
            reason = (f"malformed answer: expected exactly one JSON line on stdout, got {len(lines)}"
                      " (something else wrote to the report channel)")
        else:
            try:
                payload = json.loads(lines[0])
            except (ValueError, RecursionError):
                reason = "malformed answer: stdout is not JSON (or nested too deep)"
    return SandboxResult(not reason, reason, payload, stdout[-500:], stderr[-1000:], seconds, level, rc)


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
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None and not stream.closed:
            stream.close()
