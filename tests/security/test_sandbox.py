"""Attacks on verification, each asserting the verdict and the absence of side effects (no model).

Every candidate below is *wrong* (it returns ``n + 1`` for ``double``) and
tries to be reported verified anyway, or to reach outside the sandbox.
The verdict must be "not verified", with a reason, and nothing may happen
on the host: marker files absent, listener never reached, secret absent
from every output, no process left behind.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lift_sys.codegen import sandbox
from lift_sys.codegen.harness import CALL_HARNESS
from lift_sys.codegen.sandbox import Limits
from lift_sys.codegen.verify import verify_code
from lift_sys.ir import IRSpec

FAST = Limits(wall_s=8.0, cpu_s=4, memory_bytes=256 * 1024 * 1024)
SECRET = "lift-test-secret-7f3a9c"

DOUBLE = IRSpec.model_validate({
    "intent": {"summary": "Double a number.", "rationale": "Arithmetic."},
    "signature": {"name": "double", "parameters": [{"name": "n", "type_hint": "int", "description": "a number"}],
                  "returns": "int"},
    "effects": [],
    "assertions": [{"kind": "postcondition", "predicate": "result == 2 * n", "description": "twice n"}],
    "examples": [{"inputs": {"n": 3}, "output": 6, "raises": None},
                 {"inputs": {"n": 5}, "output": 10, "raises": None},
                 {"inputs": {"n": 0}, "output": 0, "raises": None}],
    "holes": [],
})
RIGHT = "def double(n):\n    return 2 * n\n"
WRONG = "def double(n):\n    return n + 1\n"

# Reaches the real os module without an import statement the static check would see.
IMPORT = "__builtins__['__import__'] if isinstance(__builtins__, dict) else __builtins__.__import__"


def ir_with(predicate: str, kind: str = "precondition") -> IRSpec:
    doc = DOUBLE.model_dump(mode="json")
    doc["assertions"] = [{"kind": kind, "predicate": predicate, "description": "hostile"}]
    return IRSpec.model_validate(doc)


def text_of(report) -> str:
    return json.dumps(report.to_dict())


@pytest.fixture(params=["bwrap", "process"])
def level(request, monkeypatch):
    """Verdict-level attacks must fail under both isolation levels."""
    if request.param == "bwrap" and sandbox.isolation() != "bwrap":
        pytest.fail("bubblewrap is not usable here; `make test` installs it")
    monkeypatch.setenv("LIFT_SANDBOX", request.param)
    return request.param


@pytest.fixture
def bwrap_only(monkeypatch):
    assert sandbox.isolation() == "bwrap", "bubblewrap is not usable here; `make test` installs it"
    monkeypatch.setenv("LIFT_SANDBOX", "bwrap")


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    tmp_path.chmod(0o777)
    return tmp_path


def sandbox_processes() -> list[str]:
    """Processes on the host still running one of our harnesses."""
    left = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"blocked in the lift-sys sandbox" in cmd:
            left.append(pid)
    return left


def test_right_code_still_verifies_under_both_levels(level):
    r = verify_code(RIGHT, DOUBLE, limits=FAST)
    assert r.verified, r.to_dict()
    assert r.isolation == level and r.seccomp is True


# --------------------------------------------------------------------------- predicates never run in our process


def test_hostile_precondition_runs_in_the_sandbox_not_here(host_dir, level):
    marker = host_dir / "pwned"
    pred = ("[c for c in ().__class__.__base__.__subclasses__() if c.__name__=='_wrap_close'][0]"
            f".__init__.__globals__['system']('touch {marker}') == 0")
    r = verify_code(RIGHT, ir_with(pred), limits=FAST)
    time.sleep(0.2)
    assert not marker.exists()
    pre = [c for c in r.checks if c.name.startswith("precondition")]
    assert pre and all(not c.passed and c.scope == "ir" for c in pre), r.to_dict()
    assert r.verified  # the code is right; the IR is what is broken


def test_hostile_postcondition_cannot_touch_the_host(host_dir, level):
    marker = host_dir / "pwned-post"
    pred = f"({IMPORT})('posix').system('touch {marker}') == 0 or True"
    r = verify_code(WRONG, ir_with(pred, "postcondition"), limits=FAST)
    time.sleep(0.2)
    assert not marker.exists() and not r.verified


def test_cli_verify_never_evaluates_a_predicate_in_process(host_dir, tmp_path):
    marker = host_dir / "pwned-cli"
    doc = ir_with(f"({IMPORT})('os').system('touch {marker}') == 0").model_dump(mode="json")
    (tmp_path / "ir.json").write_text(json.dumps(doc))
    (tmp_path / "code.py").write_text(RIGHT)
    proc = subprocess.run([sys.executable, "-m", "lift_sys.cli", "verify", str(tmp_path / "ir.json"),
                           str(tmp_path / "code.py"), "--json"], capture_output=True, text=True, timeout=120)
    time.sleep(0.2)
    assert not marker.exists()
    report = json.loads(proc.stdout)
    assert report["isolation"] in ("bwrap", "process") and report["verified"] is True


# --------------------------------------------------------------------------- the report cannot be forged

FORGERIES = {
    "patched json.dumps": """
import json
_real = json.dumps
def _fake(obj, *a, **k):
    if isinstance(obj, dict) and "calls" in obj:
        obj = dict(obj, calls=[{"value": 6}, {"value": 10}, {"value": 0}])
    if isinstance(obj, dict) and "examples" in obj:
        for e in obj["examples"]: e["passed"] = True
    return _real(obj, *a, **k)
json.dumps = _fake
""",
    "atexit printer": """
import atexit
atexit.register(lambda: print('{"load_error": null, "calls": [{"value": 6}, {"value": 10}, {"value": 0}], "self_checks": [], "seccomp": true}'))
""",
    "fake report on fd 1, then closed": """
import io
_f = io.open(1, "w")
_f.write('{"load_error": null, "calls": [{"value": 6}, {"value": 10}, {"value": 0}], "self_checks": [], "seccomp": true}\\n')
_f.close()
""",
    "fake report on every fd": """
_os = (__IMPORT__)('os')
for _fd in range(1, 40):
    try:
        _os.write(_fd, b'{"load_error": null, "calls": [{"value": 6}, {"value": 10}, {"value": 0}], "self_checks": [], "seccomp": true}\\n')
    except OSError:
        pass
""",
    "printer thread": """
_t = (__IMPORT__)('threading')
def _spam():
    while True:
        print('{"load_error": null, "examples": [{"index": 0, "passed": true}], "assertions": []}')
_t.Thread(target=_spam, daemon=True).start()
""",
    "frame walk to the harness globals": """
_sys = (__IMPORT__)('sys')
_g = _sys._getframe(1).f_globals
for _k in ("same", "encode", "answer"):
    if _k in _g:
        _g[_k] = (lambda *a, **k: True) if _k == "same" else (lambda *a, **k: ({"value": 6}, 6) if _k == "answer" else 6)
""",
    "exit early with a fake report": """
_os = (__IMPORT__)('os')
import json as _j
for _fd in range(3, 40):
    try:
        _os.write(_fd, (_j.dumps({"load_error": None, "calls": [{"value": True}], "self_checks": []}) + "\\n").encode())
    except OSError:
        pass
_os._exit(0)
""",
}


@pytest.mark.parametrize("name", sorted(FORGERIES))
def test_forged_reports_never_verify_wrong_code(name, level):
    code = FORGERIES[name].replace("__IMPORT__", IMPORT) + "\n" + WRONG
    r = verify_code(code, DOUBLE, limits=FAST)
    assert not r.verified, (name, r.to_dict())
    failed = {c.name: c.detail for c in r.failures()}
    assert failed, r.to_dict()


@pytest.mark.parametrize("cls", [
    "class R:\n    def __eq__(self, o): return True\n    def __bool__(self): return True\n    def __hash__(self): return 0\n",
    "class R(int):\n    def __eq__(self, o): return True\n",
    "class R(list):\n    def __eq__(self, o): return True\n",
])
def test_results_that_claim_equality_are_not_trusted(cls, level):
    arg = {"object": "", "int": "n + 1", "list": "[n + 1]"}[cls.split("(")[1].split(")")[0] if "(" in cls.split(":")[0] else "object"]
    code = cls + f"def double(n):\n    return R({arg})\n"
    r = verify_code(code, DOUBLE, limits=FAST)
    assert not r.verified
    details = " ".join(c.detail for c in r.failures())
    assert "not plain data" in details


def test_a_malformed_answer_is_a_failed_check_not_a_crash(level):
    code = (f"_os = ({IMPORT})('os')\n"
            "for _fd in range(3, 40):\n"
            "    try:\n        _os.write(_fd, b'{\"calls\": [{}]}\\n')\n    except OSError:\n        pass\n"
            "_os._exit(0)\n" + WRONG)
    r = verify_code(code, DOUBLE, limits=FAST)
    assert not r.verified
    runs = next(c for c in r.checks if c.name == "runs")
    assert not runs.passed and ("malformed" in runs.detail or "exactly one" in runs.detail), runs


# --------------------------------------------------------------------------- smuggled capabilities


SMUGGLED = {
    "__import__ via builtins dict": f"({IMPORT})('posix').system('touch {{m}}')",
    "eval alias": "(lambda _e: _e(\"__import__('posix').system('touch {m}')\"))(eval)",
    "operator.getitem exec": ("__import__('operator').getitem(__builtins__ if isinstance(__builtins__, dict) "
                               "else vars(__builtins__), 'exec')(\"__import__('posix').system('touch {m}')\")"),
    "pickle __reduce__": ("(lambda p: p.loads(p.dumps(type('X', (), {{'__reduce__': lambda s: "
                          "(__import__('posix').system, ('touch {m}',))}})())))(__import__('pickle'))"),
    "posix_spawn": "({imp})('posix').posix_spawn('/bin/touch', ['touch', '{m}'], {{}})",
}


@pytest.mark.parametrize("name", sorted(SMUGGLED))
def test_smuggled_process_creation_is_blocked(name, host_dir, level):
    marker = host_dir / "spawned"
    expr = SMUGGLED[name].format(m=marker, imp=IMPORT)
    code = (f"def double(n):\n    __import__ = {IMPORT}\n    try:\n        {expr}\n"
            f"    except BaseException:\n        pass\n    return n + 1\n").replace("__import__('", "__import__('")
    # the static check refuses some spellings; run the raw candidate through the sandbox too
    r = verify_code(code, DOUBLE, limits=FAST, allowed_modules=frozenset(sys.stdlib_module_names))
    time.sleep(0.2)
    assert not marker.exists(), name
    assert not r.verified


# --------------------------------------------------------------------------- OS-level isolation (bwrap)


def run_probe(code: str) -> list:
    """Run ``code``'s ``double(n)`` in the sandbox once, no static checks, and return what the call
    answered (the value, or the exception) plus the whole raw answer as text."""
    r = sandbox.run_python(CALL_HARNESS, {"code": code, "name": "double", "calls": [{"args": [], "kwargs": {"n": 1}}],
                                          "call_timeout": 4.0, "output_cap": 65536}, FAST)
    assert r.ok, r.reason
    call = r.payload["calls"][0]
    return [call.get("value", call), json.dumps(r.payload) + r.stdout_tail + r.stderr_tail]


def test_host_files_and_parent_environment_are_invisible(bwrap_only, monkeypatch):
    monkeypatch.setenv("LIFT_API_KEY", SECRET)
    here = Path(__file__).resolve()
    code = f"""
def double(n):
    _os = ({IMPORT})('os')
    seen = []
    def attempt(f):
        try:
            seen.append(f())
        except Exception as e:
            seen.append(type(e).__name__)
    for p in ["/etc/shadow", "/etc/passwd", {str(here)!r}, "/root/.bash_history", "/work/main/README.md",
              "/proc/1/environ", "/proc/self/status"]:
        attempt(lambda: open(p).read()[:50])
    attempt(lambda: _os.listdir("/proc"))
    attempt(lambda: _os.open("/proc/1/mem", _os.O_RDWR))
    attempt(lambda: sorted(_os.environ))
    attempt(lambda: _os.getuid())
    attempt(lambda: _os.setuid(0))
    return seen
"""
    out = run_probe(code)
    assert SECRET not in out[-1]
    seen = out[0]
    assert seen[:8] == ["FileNotFoundError"] * 8, seen  # no /etc, sources, /root, /work, and no /proc at all
    assert seen[8] == "FileNotFoundError"  # /proc/1/mem: nothing to open
    assert seen[9] == ["HOME", "LANG", "PATH", "PWD", "TMPDIR"], seen[9]
    assert seen[10] == 65534 and seen[11] in ("PermissionError", "OSError")  # not root, no capabilities


def test_host_files_cannot_be_written_or_deleted(bwrap_only, host_dir):
    victim = host_dir / "victim"
    victim.write_text("keep me")
    created = host_dir / "created"
    code = f"""
def double(n):
    _os = ({IMPORT})('os')
    res = []
    for action in (lambda: _os.remove({str(victim)!r}), lambda: open({str(created)!r}, "w").write("x"),
                   lambda: open("/root/created-by-sandbox", "w").write("x"), lambda: open("/usr/lib/x", "w")):
        try:
            action(); res.append("ok")
        except Exception as e:
            res.append(type(e).__name__)
    return res
"""
    out = run_probe(code)
    assert isinstance(out[0], list), out
    assert victim.read_text() == "keep me"
    assert not created.exists() and not Path("/root/created-by-sandbox").exists()
    assert "ok" not in out[0], out[0]


def test_network_and_namespace_escape_do_not_reach_the_host(bwrap_only):
    hits = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    stop = threading.Event()

    def accept():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                hits.append(conn.recv(100))
                conn.close()
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    code = f"""
def double(n):
    _os = ({IMPORT})('os')
    ct = ({IMPORT})('ctypes')
    s = ({IMPORT})('_socket')
    libc = ct.CDLL(None, use_errno=True)
    res = []
    for path in ["/proc/1/ns/net", "/proc/%d/ns/net" % _os.getppid(), "/proc/self/ns/net"]:
        try:
            fd = _os.open(path, _os.O_RDONLY)
            res.append("setns=%d errno=%d" % (libc.setns(fd, 0), ct.get_errno()))
        except Exception as e:
            res.append(type(e).__name__)
    res.append("unshare=%d" % libc.unshare(0x40000000))
    try:
        c = s.socket(s.AF_INET, s.SOCK_STREAM)
        c.connect(("127.0.0.1", {port}))
        c.send(b"escaped")
        res.append("connected")
    except Exception as e:
        res.append(type(e).__name__)
    return res
"""
    out = run_probe(code)
    time.sleep(0.5)
    stop.set()
    t.join()
    srv.close()
    assert hits == []
    assert "connected" not in out[0] and "setns=0" not in out[0] and "unshare=0" not in out[0], out[0]


def test_no_process_outlives_verification_and_host_processes_are_untouchable(bwrap_only, host_dir):
    victim = subprocess.Popen(["sleep", "60"])
    marker = host_dir / "survivor"
    try:
        code = f"""
def double(n):
    p = ({IMPORT})('posix')
    res = []
    try:
        if p.fork() == 0:
            p.setsid()
            if p.fork() == 0:
                import time
                time.sleep(3)
                open({str(marker)!r}, "w").write("alive")
            p._exit(0)
        res.append("forked")
    except Exception as e:
        res.append(type(e).__name__)
    for sig in (9, 0):
        try:
            p.kill({victim.pid}, sig); res.append("kill ok")
        except Exception as e:
            res.append(type(e).__name__)
    try:
        open("/proc/{os.getpid()}/mem", "r+b"); res.append("mem open")
    except Exception as e:
        res.append(type(e).__name__)
    return res
"""
        out = run_probe(code)
        assert "forked" not in out[0] and "kill ok" not in out[0] and "mem open" not in out[0], out[0]
        time.sleep(0.5)
        assert victim.poll() is None, "the sandbox killed a host process"
        assert sandbox_processes() == []
        time.sleep(3)
        assert not marker.exists()
    finally:
        victim.kill()
        victim.wait()


def test_threads_still_work_inside_the_sandbox(level):
    code = ("import threading as t\ndef double(n):\n    out = []\n"
            "    th = t.Thread(target=lambda: out.append(2 * n))\n    th.start(); th.join()\n    return out[0]\n")
    r = verify_code(code, DOUBLE, limits=FAST, allowed_modules=frozenset(sys.stdlib_module_names))
    assert r.verified, r.to_dict()


def test_process_level_is_reported_and_still_confined(monkeypatch, host_dir):
    """Without bwrap: seccomp still blocks processes, Landlock keeps host files, the parent's /proc and signals out."""
    monkeypatch.setenv("LIFT_SANDBOX", "process")
    marker = host_dir / "p"
    code = f"def double(n):\n    ({IMPORT})('posix').system('touch {marker}')\n    return 2 * n\n"
    r = verify_code(code, DOUBLE, limits=FAST)
    assert r.isolation == "process" and r.seccomp is True
    assert r.landlock >= 1, "Landlock is what confines the process level; this kernel has it"
    time.sleep(0.2)
    assert not marker.exists()
    probe = f"""
def double(n):
    _os = ({IMPORT})('os')
    res = []
    for f in (lambda: open('/etc/passwd').read(), lambda: open('/proc/%d/environ' % _os.getppid(), 'rb').read(),
              lambda: open('/proc/%d/mem' % _os.getppid(), 'r+b'), lambda: open({str(marker)!r}, 'w'),
              lambda: _os.kill(_os.getppid(), 0), lambda: open({str(Path(__file__).resolve())!r}).read()):
        try:
            f()
            res.append("ok")
        except Exception as e:
            res.append(type(e).__name__)
    return res
"""
    monkeypatch.setenv("LIFT_API_KEY", SECRET)
    out = run_probe(probe)
    assert out[0] == ["PermissionError"] * 6, out[0]
    assert SECRET not in out[-1] and not marker.exists()


# --------------------------------------------------------------------------- red team, round 1 (each a regression)


def ir_doc(**changes) -> IRSpec:
    doc = DOUBLE.model_dump(mode="json")
    doc.update(changes)
    return IRSpec.model_validate(doc)


def test_no_reaper_to_hijack_and_no_writable_memory_or_shm(bwrap_only):
    """The escape: open /proc/1/mem of bwrap's unfiltered PID-1 reaper and rewrite it; fill an unbounded tmpfs."""
    code = f"""
def double(n):
    _os = ({IMPORT})('os')
    res = [_os.getpid()]
    for path in ("/proc/1/mem", "/proc/1/syscall", "/dev/shm/x", {sandbox._interpreter_paths()[1][1] + "/site-packages/x"!r}):
        try:
            fd = _os.open(path, _os.O_RDWR | _os.O_CREAT)
            res.append("opened " + path)
        except OSError as e:
            res.append(type(e).__name__)
    try:
        with open("/tmp/big", "wb") as f:
            for _ in range(40):
                f.write(b"x" * (1 << 20))
        res.append("wrote 40 MiB")
    except OSError as e:
        res.append(type(e).__name__)
    return res
"""
    out = run_probe(code)[0]
    assert out[0] == 1, out  # the candidate is PID 1: there is no other process in the sandbox
    assert not any(str(x).startswith(("opened", "wrote")) for x in out), out
    assert sandbox_processes() == []


def test_oversized_and_overdeep_code_fail_cleanly_and_fast():
    big = "def double(n):\n    x = [" + "0," * 2_000_000 + "]\n    return 2 * n\n"
    r = verify_code(big, DOUBLE, limits=FAST)
    assert not r.verified and "more than" in failed_detail(r, "parses")
    deep = "def double(n):\n    return " + "1+" * 45_000 + "1\n"
    r = verify_code(deep, DOUBLE, limits=FAST)
    assert not r.verified and r.failures()


def failed_detail(report, name: str) -> str:
    return next(c.detail for c in report.checks if c.name == name and not c.passed)


@pytest.mark.parametrize("returns, code, verified", [
    ("list[int]", "def rev(xs):\n    return set(xs)\n", False),  # a set is not the list asked for
    ("list[int]", "def rev(xs):\n    return tuple(xs[::-1])\n", False),
    ("tuple[int, ...]", "def rev(xs):\n    return tuple(xs[::-1])\n", True),
    ("list[int]", "def rev(xs):\n    return xs[::-1]\n", True),
])
def test_containers_compare_by_the_declared_type(returns, code, verified):
    ir = IRSpec.model_validate({
        "intent": {"summary": "Reverse."}, "signature": {"name": "rev", "parameters": [{"name": "xs"}], "returns": returns},
        "assertions": [{"kind": "postcondition", "predicate": "all(result[i] == xs[len(xs) - 1 - i] for i in range(len(xs)))"}],
        "examples": [{"inputs": {"xs": [3, 1, 2]}, "output": [2, 1, 3]}, {"inputs": {"xs": []}, "output": []}],
    })
    r = verify_code(code, ir, limits=FAST)
    assert r.verified is verified, r.to_dict()
    if verified:  # the comprehension sees `result` and `xs`: the predicate really ran
        post = [c for c in r.checks if c.name.startswith("postcondition")]
        assert post and all(c.passed and c.scope == "code" for c in post), post


def test_integers_compare_exactly():
    ir = ir_doc(examples=[{"inputs": {"n": 10**12}, "output": 2 * 10**12, "raises": None}], assertions=[])
    assert not verify_code("def double(n):\n    return 2 * n + 1\n", ir, limits=FAST).verified
    assert verify_code(RIGHT, ir, limits=FAST).verified


def test_a_postcondition_the_ir_satisfies_but_the_result_breaks_fails_the_code():
    """A predicate that raises on the candidate's result (but holds on the IR's own outputs) is the code's fault."""
    ir = ir_doc(assertions=[{"kind": "postcondition", "predicate": "result % 2 == 0", "description": ""}])
    r = verify_code("def double(n):\n    return str(2 * n) if n == 5 else 2 * n\n", ir, limits=FAST)
    assert not r.verified
    assert any(c.name == "postcondition[0] on example[1]" and not c.passed and c.scope == "code" for c in r.checks)


@pytest.mark.parametrize("code", [
    "class TypeError(Exception):\n    pass\ndef double(n):\n    raise TypeError('fake')\n",
    ("_K = [type(n, (Exception,), {}) for n in ('TypeError', 'ValueError')]\nOmni = type('Omni', tuple(_K), {})\n"
     "def double(n):\n    raise Omni('x')\n"),
])
def test_home_made_exception_classes_are_not_the_builtin_ones(code):
    ir = ir_doc(examples=[{"inputs": {"n": "x"}, "output": None, "raises": "TypeError"}], assertions=[])
    r = verify_code(code, ir, limits=FAST)
    assert not r.verified
    assert "not the built-in one" in failed_detail(r, "example[0]")
    assert verify_code("def double(n):\n    raise TypeError('real')\n", ir, limits=FAST).verified


SELF_IR = {"kind": "postcondition", "predicate": "double(n + 1) == result + 2", "description": "steps by two"}


def test_checks_that_call_the_function_are_judged_outside_the_candidate():
    """The candidate's process is only ever asked for values; a patched ``finish`` has no verdict to fake."""
    ir = ir_doc(assertions=[SELF_IR])
    ok = verify_code(RIGHT, ir, limits=FAST)
    assert ok.verified, ok.to_dict()
    selfref = [c for c in ok.checks if c.calls_function]
    assert len(selfref) == 3 and all(c.passed for c in selfref)
    # right on the examples, wrong one step beyond them: only the self-referential check can see it
    wrong = ("_m = __builtins__['__import__']('sys').modules['__main__'] if isinstance(__builtins__, dict) "
             "else __builtins__.__import__('sys').modules['__main__']\n"
             "_f = getattr(_m, 'finish', None)\n"
             "if _f:\n    _m.finish = lambda rep: _f(dict(rep, self_checks=[{'value': True}] * 9))\n"
             "def double(n):\n    return 2 * n if n in (0, 3, 5) else 0\n")
    r = verify_code(wrong, ir, limits=FAST, allowed_modules=frozenset(sys.stdlib_module_names))
    assert not r.verified
    assert any(c.calls_function and not c.passed and c.scope == "code" for c in r.checks), r.to_dict()


def test_values_that_look_like_tags_are_data():
    r = verify_code("def double(n):\n    return {'$float': 'abc'}\n", DOUBLE, limits=FAST)
    assert not r.verified
    assert "{'$float': 'abc'}" in failed_detail(r, "example[0]")
    ir = ir_doc(examples=[{"inputs": {"n": 1}, "output": {"$set": [1]}, "raises": None}], assertions=[])
    assert verify_code("def double(n):\n    return {'$set': [1]}\n", ir, limits=FAST).verified
    assert not verify_code("def double(n):\n    return {1}\n", ir, limits=FAST).verified


def test_a_deeply_nested_report_is_a_failed_check(level):
    code = (f"_os = ({IMPORT})('os')\n"
            "for _fd in range(3, 40):\n    try:\n        _os.write(_fd, b'[' * 100000 + b']' * 100000 + b'\\n')\n"
            "    except OSError:\n        pass\n_os._exit(0)\n" + WRONG)
    r = verify_code(code, DOUBLE, limits=FAST)
    assert not r.verified and "malformed" in failed_detail(r, "runs")


def test_cli_verify_answers_bad_files_with_one_line(tmp_path):
    (tmp_path / "code.py").write_text(RIGHT)
    (tmp_path / "latin1.py").write_bytes(b"# -*- coding: latin-1 -*-\ndef double(n):\n    return 2 * n  # \xe9\n")
    (tmp_path / "ir.json").write_text(json.dumps(DOUBLE.model_dump(mode="json")))
    (tmp_path / "list.json").write_text("[]")
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    doc = DOUBLE.model_dump(mode="json")
    doc["assertions"] = [{"kind": "postcondition", "predicate": "result[/bold] == [/oops]", "description": ""}]
    (tmp_path / "markup.json").write_text(json.dumps(doc))

    def cli(ir: str, code: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lift_sys.cli", "verify", str(tmp_path / ir), str(tmp_path / code)],
                              capture_output=True, text=True, timeout=120)

    for ir, code, needle in (("list.json", "code.py", "expected a JSON object"), ("deep.json", "code.py", "cannot read an IR"),
                             ("ir.json", "latin1.py", "not UTF-8")):
        p = cli(ir, code)
        assert p.returncode != 0 and "Traceback" not in p.stderr and needle in p.stderr, (ir, code, p.stderr[-500:])
    p = cli("markup.json", "code.py")
    assert "Traceback" not in p.stderr + p.stdout and "result[/bold]" in p.stdout, p.stdout[-800:] + p.stderr[-500:]


# --------------------------------------------------------------------------- red team, round 2 (each a regression)


def test_a_check_that_calls_the_function_cannot_be_neutralised_by_an_odd_exception():
    """The function raises something the predicate sandbox cannot rebuild as-is: still the code's failure."""
    ir = ir_doc(assertions=[SELF_IR])
    for exc in ("UnicodeEncodeError('ascii', 'x', 0, 1, 'no')", "ExceptionGroup('g', [ValueError('v')])"):
        code = f"def double(n):\n    if n not in (0, 3, 5):\n        raise {exc}\n    return 2 * n\n"
        r = verify_code(code, ir, limits=FAST)
        assert not r.verified, (exc, r.to_dict())
        assert any(c.calls_function and not c.passed and c.scope == "code" for c in r.checks)


def test_dict_keys_keep_their_type():
    spec = {"intent": {"summary": "Digit counts."}, "examples": [{"inputs": {"s": "112"}, "output": {"1": 2, "2": 1}}]}
    as_str = IRSpec.model_validate({**spec, "signature": {"name": "digits", "parameters": [{"name": "s"}], "returns": "dict[str, int]"}})
    as_int = IRSpec.model_validate({**spec, "signature": {"name": "digits", "parameters": [{"name": "s"}], "returns": "dict[int, int]"}})
    int_keys = "def digits(s):\n    out = {}\n    for ch in s:\n        out[int(ch)] = out.get(int(ch), 0) + 1\n    return out\n"
    str_keys = int_keys.replace("int(ch)", "ch")
    assert not verify_code(int_keys, as_str, limits=FAST).verified
    assert verify_code(str_keys, as_str, limits=FAST).verified
    assert verify_code(int_keys, as_int, limits=FAST).verified  # JSON cannot say {1: 2}; the declared type can
    mixed = "def digits(s):\n    return {1: 2, '1': 2, 2: 1}\n"
    assert not verify_code(mixed, as_int, limits=FAST).verified


@pytest.mark.parametrize("returns, code, verified", [
    ("int", "def double(n):\n    return float(2 * n)\n", False),  # 6.0 is not the int 6
    ("float", "def double(n):\n    return float(2 * n)\n", True),
    ("int", "def double(n):\n    return 2 * n\n", True),
])
def test_ints_and_floats_are_different_answers_unless_floats_are_declared(returns, code, verified):
    doc = DOUBLE.model_dump(mode="json")
    doc["signature"]["returns"] = returns
    doc["assertions"] = []
    assert verify_code(code, IRSpec.model_validate(doc), limits=FAST).verified is verified


def test_postconditions_no_example_can_check_are_reported():
    ir = ir_doc(examples=[{"inputs": {"n": "x"}, "output": None, "raises": "TypeError"}])
    r = verify_code("def double(n):\n    raise TypeError('x')\n", ir, limits=FAST)
    finding = next(c for c in r.checks if c.name == "postcondition[0]")
    assert not finding.passed and finding.scope == "ir" and "never checked" in finding.detail
    assert r.to_dict()["ir_findings"] >= 1


def test_process_level_has_no_capabilities_and_no_host_wide_state(monkeypatch, host_dir):
    monkeypatch.setenv("LIFT_SANDBOX", "process")
    target = host_dir / "target"
    target.write_text("x")
    before = (target.stat().st_mode, target.stat().st_uid, target.stat().st_mtime)
    hostname = socket.gethostname()
    code = f"""
def double(n):
    _os = ({IMPORT})('os')
    _r = ({IMPORT})('resource')
    res = []
    for f in (lambda: _os.chmod({str(target)!r}, 0o4777), lambda: _os.chown({str(target)!r}, 4321, 4321),
              lambda: _os.utime({str(target)!r}, (0, 0)), lambda: _os.setxattr({str(target)!r}, "user.x", b"1"),
              lambda: _os.mknod("/tmp/kmsg", 0o20600, _os.makedev(1, 11)), lambda: _os.sethostname("pwned"),
              lambda: _r.prlimit(_os.getppid(), _r.RLIMIT_CPU, (1, 1)), lambda: _os.setpriority(0, _os.getppid(), 19),
              lambda: open("x", "w")):
        try:
            f()
            res.append("ok")
        except Exception as e:
            res.append(type(e).__name__)
    return res
"""
    call = sandbox.run_python(CALL_HARNESS, {"code": code, "name": "double", "calls": [{"args": [], "kwargs": {"n": 1}}],
                                             "call_timeout": 4.0, "output_cap": 65536}, FAST)
    assert call.ok, call.reason
    assert call.payload["capabilities"] == 0
    assert "ok" not in call.payload["calls"][0]["value"], call.payload
    after = (target.stat().st_mode, target.stat().st_uid, target.stat().st_mtime)
    assert after == before and socket.gethostname() == hostname


def test_sysv_shared_memory_is_refused(level):
    code = (f"def double(n):\n    ct = ({IMPORT})('ctypes')\n    libc = ct.CDLL(None, use_errno=True)\n"
            "    return [libc.shmget(0, 300 << 20, 0o1600), ct.get_errno()]\n")
    out = run_probe(code)[0]
    assert out == [-1, 1], out  # EPERM


def test_a_bad_sandbox_setting_is_a_clean_failed_check(monkeypatch):
    monkeypatch.setenv("LIFT_SANDBOX", "none")
    r = verify_code(RIGHT, DOUBLE, limits=FAST)
    assert not r.verified and "LIFT_SANDBOX" in failed_detail(r, "runs")


def test_confinement_is_reported_even_when_loading_fails(level):
    r = verify_code("raise ValueError('at import')\ndef double(n):\n    return 2 * n\n", DOUBLE, limits=FAST)
    assert "loading the code failed" in failed_detail(r, "runs")
    assert r.seccomp is True and r.landlock >= 1
