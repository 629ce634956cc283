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
* IR predicates are evaluated in a second sandbox that never loads the
  candidate (:data:`PREDICATE_HARNESS`), on the data the first one returned.
  A predicate that calls the function itself gets a stand-in that looks
  each call up in a table of answers; a call not in the table stops the
  evaluation and is asked of the candidate's sandbox (data in, data out),
  and the predicate is evaluated again -- so even those checks never take
  a verdict from the candidate's process (a patched ``finish`` that says
  "true" has nothing to say);
* an exception is reported with the names of its classes *and* which of
  them are the genuine built-in classes (identity with the builtins taken
  before the candidate loaded): a home-made ``class TypeError(Exception)``
  is not a ``TypeError``;
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
Before anything untrusted is loaded, the prelude

1. restricts itself with **Landlock** (when the kernel has it): read-only
   access to the interpreter, its stdlib and the system libraries, writes
   only under the sandbox's own tmp dir, no TCP bind/connect, and (ABI >= 6)
   no signals or abstract unix sockets outside its own domain. Why, on top of
   namespaces: the red team's escape opened ``/proc/1/mem`` of bwrap's
   unfiltered init and rewrote its code; and in the ``process`` fallback,
   where there are no namespaces, it is what keeps ``/etc/shadow``,
   ``/proc/<parent>/environ`` and ``/proc/<parent>/mem`` out of reach;
2. installs the seccomp filter it was handed (:mod:`lift_sys.codegen.seccomp`);
3. replaces process and socket functions with ones that raise a readable
   ``PermissionError`` ("blocked in the lift-sys sandbox").

Values cross the boundary as JSON with tags for what JSON lacks
(``$tuple``, ``$set``, ``$float`` for NaN/infinities); a dict key that
starts with ``$`` is escaped with one more ``$``, so a returned
``{"$float": "x"}`` is data, never a tag.
"""

PRELUDE = r'''
import builtins, io, json, math, os, signal, sys

payload = json.loads(sys.stdin.buffer.read())
_REPORT_FD = os.dup(1)
_null = os.open(os.devnull, os.O_WRONLY)
os.dup2(_null, 1)
os.close(_null)
_BUILTINS = dict(vars(builtins))  # the genuine classes, before anything untrusted runs

def _libc():
    import ctypes
    return ctypes, ctypes.CDLL(None, use_errno=True)

def _install_landlock(spec):
    # landlock_create_ruleset / add_rule / restrict_self (444/445/446 on every architecture)
    if not spec:
        return 0
    import struct
    ctypes, libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint(1))
    if abi < 1:
        return 0
    fs = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
    if abi >= 2:
        fs |= 1 << 13  # REFER
    if abi >= 3:
        fs |= 1 << 14  # TRUNCATE
    if abi >= 5:
        fs |= 1 << 15  # IOCTL_DEV
    read_dir = (1 << 0) | (1 << 2) | (1 << 3)  # EXECUTE, READ_FILE, READ_DIR
    file_bits = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 14) | (1 << 15)
    if abi >= 6:
        attr = struct.pack("<QQQ", fs, 3, 3)  # + no TCP bind/connect, + scoped signals/abstract sockets
    elif abi >= 4:
        attr = struct.pack("<QQ", fs, 3)
    else:
        attr = struct.pack("<Q", fs)
    buf = ctypes.create_string_buffer(attr, len(attr))
    rfd = libc.syscall(444, buf, ctypes.c_size_t(len(attr)), ctypes.c_uint(0))
    if rfd < 0:
        return 0
    def allow(path, access):
        try:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return
        try:
            if not os.path.isdir(path):
                access &= file_bits
            access &= fs
            rule = ctypes.create_string_buffer(struct.pack("<Qi", access, fd), 12)
            libc.syscall(445, ctypes.c_int(rfd), ctypes.c_int(1), rule, ctypes.c_uint(0))
        finally:
            os.close(fd)
    for path in spec.get("read", []):
        allow(path, read_dir)
    for path in spec.get("write", []):
        allow(path, fs)
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        return 0
    ok = libc.syscall(446, ctypes.c_int(rfd), ctypes.c_uint(0)) == 0
    os.close(rfd)
    return abi if ok else 0

def _install_seccomp(hexprog):
    if not hexprog:
        return False
    ctypes, libc = _libc()
    prog = bytes.fromhex(hexprog)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
    if libc.prctl(38, 1, None, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
        return False
    class _FProg(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    buf = ctypes.create_string_buffer(prog, len(prog))
    fprog = _FProg(len(prog) // 8, ctypes.cast(buf, ctypes.c_void_p))
    return libc.prctl(22, 2, ctypes.cast(ctypes.byref(fprog), ctypes.c_void_p), 0, 0) == 0  # SECCOMP_MODE_FILTER

def _drop_capabilities():
    """No capabilities, not even as uid 0 in the process fallback (where chown/mknod/sethostname/
    clock_settime would otherwise reach the host). Returns the effective set left (0 = none)."""
    import struct
    ctypes, libc = _libc()
    for cap in range(64):
        libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP (refused without CAP_SETPCAP: nothing to drop then)
    libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT_CLEAR_ALL
    hdr = ctypes.create_string_buffer(struct.pack("<Ii", 0x20080522, 0), 8)
    libc.syscall(126, hdr, ctypes.create_string_buffer(24))  # capset: effective = permitted = inheritable = 0
    out = ctypes.create_string_buffer(24)
    if libc.syscall(125, hdr, out) != 0:  # capget
        return -1
    e0, _, _, e1, _, _ = struct.unpack("<6I", out.raw)
    return e0 | (e1 << 32)

try:
    CAPS = _drop_capabilities()
except Exception:
    CAPS = -1
try:
    LANDLOCK = _install_landlock(payload.get("landlock"))
except Exception:
    LANDLOCK = 0
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
_dumps, _loads, _write, _exit = json.dumps, json.loads, os.write, os._exit
_type, _isinstance, _str, _list, _sorted = type, isinstance, str, list, sorted

def finish(report):
    report["seccomp"] = SECCOMP
    report["landlock"] = LANDLOCK
    report["capabilities"] = CAPS
    data = (_dumps(report, allow_nan=False) + "\n").encode()
    view = memoryview(data)
    while view:
        view = view[_write(_REPORT_FD, view):]
    _exit(0)

def describe_exception(e, limit=200):
    names, genuine = [], []
    try:
        for c in _type(e).__mro__:
            n = c.__name__
            if _type(n) is not _str:
                continue
            names.append(n)
            if _BUILTINS.get(n) is c:
                genuine.append(n)
    except BaseException:
        pass
    try:
        msg = timed(lambda: _str(e), 0.5)
        msg = msg[:limit] if _type(msg) is _str else ""
    except BaseException:
        msg = ""
    return {"raised": names[:20] or ["?"], "builtin": genuine[:20], "message": msg}

class Unserializable(Exception):
    pass

def encode(v, depth=0):
    """Plain JSON of exact built-in types (tagged where JSON has no word); anything else is refused."""
    if depth > 100:
        raise Unserializable("nesting deeper than 100")
    t = _type(v)
    if v is None or t is bool or t is _str:
        return v
    if t is int:
        if abs(v) > 10 ** 300:
            raise Unserializable("int with more than 300 digits")
        return v
    if t is float:
        if math.isfinite(v):
            return v
        return {"$float": "nan" if v != v else ("inf" if v > 0 else "-inf")}
    if t is _list:
        return [encode(x, depth + 1) for x in v]
    if t is tuple:
        return {"$tuple": [encode(x, depth + 1) for x in v]}
    if t is dict:
        if all(_type(k) is _str for k in v):
            return {("$" + k if k.startswith("$") else k): encode(x, depth + 1) for k, x in v.items()}
        pairs = []  # keys that are not strings keep their type: {1: 2} is not {"1": 2}
        for k, x in v.items():
            tk = _type(k)
            if not (k is None or tk is _str or tk is int or tk is bool or tk is float):
                raise Unserializable("dict key of type " + tk.__name__)
            pairs.append([encode(k, depth + 1), encode(x, depth + 1)])
        return {"$dict": pairs}
    if t is set or t is frozenset:
        items = [encode(x, depth + 1) for x in v]
        return {"$set": _sorted(items, key=lambda x: _dumps(x, sort_keys=True))}
    raise Unserializable(getattr(t, "__name__", "?"))

def _tagged(o):
    if _type(o) is not dict:
        return o
    if len(o) == 1:
        (k, x), = o.items()
        if k == "$float":
            return float(x)
        if k == "$tuple":
            return tuple(x)
        if k == "$set":
            try:
                return set(x)
            except TypeError:
                return x
        if k == "$dict":
            return dict((a, b) for a, b in x)
    return {(k[1:] if k.startswith("$$") else k): x for k, x in o.items()}

def decode(v):
    """encode's inverse (tags back to tuple/set/float, escaped keys back)."""
    return _loads(_dumps(v), object_hook=_tagged)

sys.stdout = _CappedOutput(payload["output_cap"])
sys.stderr = _CappedOutput(payload["output_cap"])
'''

CALL_HARNESS = PRELUDE + r'''
def answer(fn_call, timeout):
    try:
        value = timed(fn_call, timeout)
    except _CallTimeout:
        return {"timeout": True}
    except MemoryError:
        return {"memory": True}
    except BaseException as e:
        return describe_exception(e)
    try:
        return {"value": timed(lambda: encode(value), timeout)}
    except _CallTimeout:
        return {"timeout": True}
    except Unserializable as e:
        return {"unserializable": _str(e)[:100]}
    except BaseException as e:
        return {"unserializable": "%s while reading the value" % _type(e).__name__}

report = {"load_error": None, "calls": []}
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
    report["load_error"] = "%s: %s" % (d["raised"][0], d["message"])

if report["load_error"] is None:
    for call in payload["calls"]:
        report["calls"].append(answer(lambda: fn(*decode(call["args"]), **decode(call["kwargs"])),
                                      payload["call_timeout"]))

finish(report)
'''

PREDICATE_HARNESS = PRELUDE + r'''
class _NeedCall(BaseException):
    """A call of the function whose answer is not in the table yet."""

class _FromFunction(Exception):
    pass

TABLE = payload.get("table", {})

def _rebuild(outcome):
    """The candidate's answer to one call, as the predicate sees it."""
    if "value" in outcome:
        return decode(outcome["value"])
    if "raised" in outcome:
        builtin = [n for n in outcome.get("builtin", []) if _isinstance(_BUILTINS.get(n), type)
                   and issubclass(_BUILTINS[n], BaseException)]
        base = _BUILTINS[builtin[0]] if builtin and builtin[0] not in ("BaseException",) else Exception
        name, msg = outcome["raised"][0], outcome.get("message", "")
        err = None
        for make in (lambda: _type(name, (base,), {"__module__": "candidate"})(msg),
                     lambda: base.__new__(_type(name, (base,), {"__module__": "candidate"})),
                     lambda: _type(name, (Exception,), {"__module__": "candidate"})(msg)):
            try:
                err = make()
                err.args = (msg,)
                break
            except Exception:
                continue
    else:
        err = RuntimeError("the function did not return plain data (%s)" % ", ".join(_sorted(outcome)))
    err._lift_from_function = True
    raise err

def _stand_in(*args, **kwargs):
    key = _dumps({"args": encode(_list(args)), "kwargs": encode(kwargs)}, sort_keys=True)
    if key not in TABLE:
        raise _NeedCall(key)
    return _rebuild(TABLE[key])

compiled = []
for pred in payload["predicates"]:
    try:
        compiled.append(compile(pred, "<predicate>", "eval"))
    except BaseException as e:
        compiled.append(describe_exception(e))

results = []
for job in payload["jobs"]:
    code = compiled[job["predicate"]]
    if _isinstance(code, dict):
        results.append(code)
        continue
    scope = dict(_BUILTINS)
    scope.update(decode(job["env"]))
    if payload.get("name"):
        scope[payload["name"]] = _stand_in
    g = {"__builtins__": scope, **scope}  # one namespace: comprehensions see the parameters and result
    try:
        value = timed(lambda: eval(code, g), payload["call_timeout"])
        results.append({"value": timed(lambda: bool(value), payload["call_timeout"])})
    except _NeedCall as need:
        results.append({"need": need.args[0]})
    except _CallTimeout:
        results.append({"timeout": True})
    except Unserializable as e:
        results.append({"raised": ["TypeError"], "builtin": ["TypeError"],
                        "message": "the function was called with something that is not plain data: %s" % e})
    except BaseException as e:
        d = describe_exception(e)
        if getattr(e, "_lift_from_function", False):
            d["from_function"] = True
        results.append(d)
finish({"results": results})
'''
