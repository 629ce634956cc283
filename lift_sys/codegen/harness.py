"""The script that runs *inside* the sandbox (read as text and executed by a fresh interpreter).

It blocks process/network capabilities, loads the candidate, calls it on
every IR example (each under its own timer), evaluates the IR's assertions,
and prints one JSON report as the last line on the real stdout. It imports
nothing from lift_sys: the child has the standard library only.
"""

HARNESS = r'''
import io, json, math, signal, sys

payload = json.loads(sys.stdin.read())
REAL_STDOUT = sys.stdout

def _blocked(*args, **kwargs):
    raise PermissionError("blocked in the lift-sys sandbox")

import os
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
    """The candidate's prints go here; past the cap the call fails."""
    def __init__(self, cap):
        self.cap, self.n = cap, 0
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

def norm(v):
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    if isinstance(v, (set, frozenset)):
        return sorted((norm(x) for x in v), key=repr)
    if isinstance(v, dict):
        return {str(k): norm(x) for k, x in v.items()}
    return v

def same(a, b):
    a, b = norm(a), norm(b)
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b

def short(v, n=200):
    r = repr(v)
    return r if len(r) <= n else r[:n] + "..."

def timed(fn, seconds):
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)

report = {"load_error": None, "examples": [], "assertions": []}
sys.stdout = _CappedOutput(payload["output_cap"])
ns = {"__name__": "candidate"}
try:
    timed(lambda: exec(compile(payload["code"], "candidate.py", "exec"), ns), payload["call_timeout"])
    fn = ns.get(payload["name"])
    if not callable(fn):
        report["load_error"] = "no callable named %s after running the code" % payload["name"]
except _CallTimeout:
    report["load_error"] = "timeout while loading the code"
except BaseException as e:
    report["load_error"] = "%s: %s" % (type(e).__name__, e)

if report["load_error"] is None:
    for i, ex in enumerate(payload["examples"]):
        inputs, want_raise = ex["inputs"], ex.get("raises")
        entry = {"index": i, "passed": False, "detail": ""}
        try:
            result = timed(lambda: fn(**inputs), payload["call_timeout"])
            if want_raise:
                entry["detail"] = "returned %s, expected %s to be raised" % (short(result), want_raise)
            elif same(result, ex.get("output")):
                entry["passed"] = True
                entry["detail"] = "returned %s" % short(result)
            else:
                entry["detail"] = "returned %s, expected %s" % (short(result), short(ex.get("output")))
            if not want_raise:
                for j, a in enumerate(payload["assertions"]):
                    if a["kind"] == "precondition":
                        continue
                    env = dict(inputs, result=result, **{payload["name"]: fn})
                    try:
                        ok = bool(timed(lambda: eval(a["predicate"], {"__builtins__": __builtins__}, env), payload["call_timeout"]))
                        report["assertions"].append({"index": j, "example": i, "passed": ok, "error": False,
                                                     "detail": "%s is %s" % (a["predicate"], ok)})
                    except BaseException as e:
                        report["assertions"].append({"index": j, "example": i, "passed": False, "error": True,
                                                     "detail": "%s raised %s: %s" % (a["predicate"], type(e).__name__, e)})
        except _CallTimeout:
            entry["detail"] = "timeout: call did not return within %gs" % payload["call_timeout"]
        except MemoryError:
            entry["detail"] = "memory: allocation beyond the sandbox limit"
        except BaseException as e:
            names = [c.__name__ for c in type(e).__mro__]
            if want_raise and want_raise.split(".")[-1] in names:
                entry["passed"] = True
                entry["detail"] = "raised %s" % type(e).__name__
            else:
                entry["detail"] = "raised %s: %s" % (type(e).__name__, str(e)[:200])
        report["examples"].append(entry)

sys.stdout = REAL_STDOUT
print(json.dumps(report))
'''
