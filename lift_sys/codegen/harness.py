"""The scripts that run *inside* the sandbox (passed as text to a fresh interpreter).

They return **data only**; the parent (:mod:`lift_sys.codegen.verify`) makes
every judgement. Why: a candidate runs in the same process as the code that
reports on it, so anything that process says can be forged -- a patched
``json.dumps``, an ``atexit`` printer, a fake report written to fd 1, a
harness comparison replaced through a traceback frame, a result whose
``__eq__`` is always true. So:

* the candidate's sandbox is never told the expected outputs -- only the
  inputs -- and answers, per call, the returned value as plain JSON
  (exact built-in types only: a subclass of ``int`` or an object with a
  custom ``__eq__`` is *unserializable*, not equal to anything) or the
  raised exception's class names;
* IR predicates over parameters and ``result`` are evaluated in a second
  sandbox that never loads the candidate (:data:`PREDICATE_HARNESS`), on the
  JSON the first one returned;
* the report leaves on a private duplicate of fd 1 while fd 1 itself points
  at ``/dev/null`` and ``print`` goes to a capped sink; the process then
  ends with ``os._exit(0)``, so no ``atexit`` hook or thread can add to it.
  The parent accepts exactly one JSON line and a clean exit.

What no sandbox can tell apart: a candidate that *knows* the expected
outputs can always claim them -- by hard-coding them in the function or by
rewriting its own process's answer. Since expected outputs are never sent
in, forging the report takes exactly the knowledge hard-coding takes; the
blind forgeries (claim "passed", claim "equal", add a second report, exit
early with a guess) all fail.

Both import nothing from lift_sys: the child has the standard library only.
Before anything untrusted is loaded, the prelude installs the seccomp filter
it was handed (see :mod:`lift_sys.codegen.seccomp`) and, belt and braces,
replaces process and socket functions with ones that raise a readable
``PermissionError`` ("blocked in the lift-sys sandbox").
"""

PRELUDE = r'''
import io, json, math, os, signal, sys

payload = json.loads(sys.stdin.buffer.read())
_REPORT_FD = os.dup(1)
_null = os.open(os.devnull, os.O_WRONLY)
os.dup2(_null, 1)
os.close(_null)

def _install_seccomp(hexprog):
    if not hexprog:
        return False
    import ctypes
    prog = bytes.fromhex(hexprog)
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(38, 1, None, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        return False
    class _FProg(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = _FProg(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    return libc.prctl(22, 2, ctypes.cast(ctypes.byref(fprog), ctypes.c_void_p), 0, 0) == 0  # SECCOMP_MODE_FILTER

SECCOMP = _install_seccomp(payload.get("seccomp"))

def _blocked(*args, **kwargs):
    raise PermissionError("blocked in the lift-sys sandbox")

for _name in ("system", "popen", "fork", "forkpty", "execv", "execve", "execvp", "execvpe", "execl", "execlp",
              "spawnl", "spawnv", "spawnve", "spawnvp", "posix_spawn", "posix_spawnp", "kill", "killpg"):
    if hasattr(os, _name):
        setattr(os, _name, _blocked)
import socket
for _name in ("socket", "create_connection", "create_server", "getaddrinfo", "socketpair", "fromfd"):
    setattr(socket, _name, _blocked)
import subprocess
subprocess.Popen = _blocked
subprocess.run = subprocess.call = subprocess.check_call = subprocess.check_output = _blocked

class _CappedOutput(io.TextIOBase):
    """print() goes here; past the cap the call fails."""
    def __init__(self, cap):
        self.cap, self.n = cap, 0
    def writable(self):
        return True
    def write(self, s):
        self.n += len(s)
        if self.n > self.cap:
            raise RuntimeError("output limit exceeded (%d characters)" % self.cap)
        return len(s)

class _CallTimeout(BaseException):
    pass

def _alarm(signum, frame):
    raise _CallTimeout()

signal.signal(signal.SIGALRM, _alarm)

def timed(fn, seconds):
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

# The primitives the report is written with, taken before anything untrusted loads:
# patching json.dumps / os.write / os._exit later changes nothing here.
_dumps, _write, _exit = json.dumps, os.write, os._exit

def finish(report):
    report["seccomp"] = SECCOMP
    data = (_dumps(report, allow_nan=False) + "\n").encode()
    view = memoryview(data)
    while view:
        view = view[_write(_REPORT_FD, view):]
    _exit(0)

def describe_exception(e, limit=200):
    try:
        names = [c.__name__ for c in type(e).__mro__ if type(c.__name__) is str]
    except BaseException:
        names = ["BaseException"]
    try:
        msg = timed(lambda: str(e), 0.5)
        msg = msg[:limit] if type(msg) is str else ""
    except BaseException:
        msg = ""
    return {"raised": names[:20], "message": msg}

sys.stdout = _CappedOutput(payload["output_cap"])
sys.stderr = _CappedOutput(payload["output_cap"])
'''

CALL_HARNESS = PRELUDE + r'''
class Unserializable(Exception):
    pass

def encode(v, depth=0):
    """Plain JSON of exact built-in types; anything else is refused, never trusted."""
    if depth > 200:
        raise Unserializable("nesting deeper than 200")
    t = type(v)
    if v is None or t is bool or t is str:
        return v
    if t is int:
        if abs(v) > 10 ** 300:
            raise Unserializable("int with more than 300 digits")
        return v
    if t is float:
        if math.isfinite(v):
            return v
        return {"$float": "nan" if v != v else ("inf" if v > 0 else "-inf")}
    if t is list or t is tuple:
        return [encode(x, depth + 1) for x in v]
    if t is dict:
        out = {}
        for k, x in v.items():
            tk = type(k)
            if not (k is None or tk is str or tk is int or tk is bool or tk is float):
                raise Unserializable("dict key of type " + tk.__name__)
            out[str(k)] = encode(x, depth + 1)
        return out
    if t is set or t is frozenset:
        items = [encode(x, depth + 1) for x in v]
        return {"$set": sorted(items, key=lambda x: _dumps(x, sort_keys=True))}
    raise Unserializable(getattr(t, "__name__", "?"))

def answer(fn_call, timeout):
    """(what the parent is told, the value itself or None)."""
    try:
        value = timed(fn_call, timeout)
    except _CallTimeout:
        return {"timeout": True}, None
    except MemoryError:
        return {"memory": True}, None
    except BaseException as e:
        return describe_exception(e), None
    try:
        return {"value": timed(lambda: encode(value), timeout)}, value
    except _CallTimeout:
        return {"timeout": True}, None
    except Unserializable as e:
        return {"unserializable": str(e)[:100]}, None
    except BaseException as e:
        return {"unserializable": "%s while reading the value" % type(e).__name__}, None

_loads = json.loads

def fresh(inputs):
    return _loads(_dumps(inputs))

report = {"load_error": None, "calls": [], "self_checks": []}
ns = {"__name__": "candidate"}
try:
    timed(lambda: exec(compile(payload["code"], "candidate.py", "exec"), ns), payload["call_timeout"])
    fn = ns.get(payload["name"])
    if not callable(fn):
        report["load_error"] = "no callable named %s after running the code" % payload["name"]
except _CallTimeout:
    report["load_error"] = "timeout while loading the code"
except BaseException as e:
    d = describe_exception(e)
    report["load_error"] = "%s: %s" % (d["raised"][0] if d["raised"] else "?", d["message"])

if report["load_error"] is None:
    for i, inputs in enumerate(payload["calls"]):
        got, value = answer(lambda: fn(**fresh(inputs)), payload["call_timeout"])
        report["calls"].append(got)
        if "value" not in got:
            continue
        for j, check in enumerate(payload["self_checks"]):
            if check["call"] != i:
                continue
            env = dict(fresh(inputs), result=value, **{payload["name"]: fn})
            res, _ = answer(lambda: bool(eval(check["predicate"], {"__builtins__": __builtins__}, env)),
                            payload["call_timeout"])
            report["self_checks"].append(dict(res, index=j))

finish(report)
'''

PREDICATE_HARNESS = PRELUDE + r'''
def _decode(o):
    if len(o) == 1 and "$float" in o:
        return float(o["$float"])
    if len(o) == 1 and "$set" in o:
        try:
            return set(o["$set"])
        except TypeError:
            return o["$set"]
    return o

results = []
compiled = []
for pred in payload["predicates"]:
    try:
        compiled.append(compile(pred, "<predicate>", "eval"))
    except BaseException as e:
        compiled.append(describe_exception(e))
for job in payload["jobs"]:
    code = compiled[job["predicate"]]
    if isinstance(code, dict):
        results.append(code)
        continue
    env = json.loads(json.dumps(job["env"]), object_hook=_decode)
    try:
        value = timed(lambda: eval(code, {"__builtins__": __builtins__}, env), payload["call_timeout"])
        results.append({"value": timed(lambda: bool(value), payload["call_timeout"])})
    except _CallTimeout:
        results.append({"timeout": True})
    except BaseException as e:
        results.append(describe_exception(e))
finish({"results": results})
'''
