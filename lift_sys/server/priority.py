"""CPU priorities: the model must neither starve the event loop nor be starved by a neighbour.

Two threads matter on a small box: the event loop (``/health``, accepting,
streaming) must get a core the moment it wakes, and the model's decode
threads must keep their share of the CPU when something else on the box is
busy. Measured on this 2-vCPU box (``bench server``; alone ~31 tok/s,
"neighbours" = two CPU-bound threads at nice 0; /health = 20 lean pollers):

| model threads        | event loop          | with neighbours | /health p99 |
|----------------------|---------------------|----------------:|------------:|
| SCHED_IDLE (old)     | normal              | 0 % (starved)   | 2.7 ms      |
| nice 0               | normal              | 17 %            | 7.7 ms      |
| nice 0               | nice -5             | 28 %            | 6.6 ms      |
| nice 0               | 0.1 ms EEVDF slice  | 31 %            | 4.6 ms      |
| nice -5              | nice -10            | 58 %            | 6.2 ms      |
| nice -5 (``high``)   | SCHED_RR 1          | 58-60 %         | 2.8 ms      |

(nice 0 loses more than half: llama.cpp's threads meet at a barrier every
op, so one descheduled thread stalls the other.) So the default, ``auto``:

* model threads at ``nice -5`` where the process may raise priorities
  (root / CAP_SYS_NICE), else nice 0;
* the event-loop thread in ``SCHED_RR`` (priority 1, with
  ``SCHED_RESET_ON_FORK`` so threads it starts do not inherit it) where
  allowed -- it runs for microseconds per wake-up and then sleeps; Linux's
  real-time throttling still keeps 5 % for everyone else -- else nice -5,
  else a short EEVDF slice (``sched_setattr``, Linux >= 6.12, unprivileged).

``LIFT_WORKER_PRIORITY`` still offers ``normal``, ``low`` (nice 10) and
``idle`` (SCHED_IDLE: only spare cycles, starved by any neighbour).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import struct
import threading
from typing import Literal

WorkerPriority = Literal["auto", "high", "normal", "low", "idle"]
EVENT_LOOP_NICE = -5
WORKER_HIGH_NICE = -5
_CAP_SYS_NICE = 23


def may_raise_priority() -> bool:
    """CAP_SYS_NICE in the effective set: may this process lower a nice value / use SCHED_RR?"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_NICE & 1)
    except OSError:
        pass
    return False


def resolve(priority: str) -> str:
    """``auto`` -> ``high`` where allowed, else ``normal``; anything else as it is."""
    if priority == "auto":
        return "high" if may_raise_priority() else "normal"
    return priority
EVENT_LOOP_SLICE_NS = 100_000  # 0.1 ms, the smallest slice EEVDF accepts
_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}


def set_worker_priority(priority: WorkerPriority) -> None:
    """Set the calling thread's priority (threads it starts later, like llama.cpp's, inherit it).

    ``normal`` resets nice to 0 explicitly: a worker started from a promoted
    event-loop thread would otherwise inherit the promotion.
    """
    if priority not in ("auto", "high", "normal", "low", "idle"):
        raise ValueError(f"priority must be auto, high, normal, low or idle, not {priority!r}")
    priority = resolve(priority)
    tid = threading.get_native_id()
    try:
        if priority == "idle":
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        else:
            os.setpriority(os.PRIO_PROCESS, tid, {"high": WORKER_HIGH_NICE, "normal": 0, "low": 10}[priority])
    except (OSError, AttributeError):  # not Linux, or not allowed (high without CAP_SYS_NICE): leave it
        pass


def _short_slice(tid: int, slice_ns: int) -> bool:
    nr = _SYS_SCHED_SETATTR.get(platform.machine())
    if nr is None:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return False
    # struct sched_attr (VER0, 48 bytes): size, policy, flags, nice, priority, runtime, deadline, period
    attr = ctypes.create_string_buffer(struct.pack("<IIQiIQQQ", 48, 0, 0, 0, 0, slice_ns, 0, 0), 48)
    return libc.syscall(nr, tid, attr, 0) == 0


def promote_event_loop() -> str:
    """Promote the calling thread (run it from the event loop's thread); returns what was applied."""
    tid = threading.get_native_id()
    try:
        policy = os.SCHED_RR | getattr(os, "SCHED_RESET_ON_FORK", 0)
        os.sched_setscheduler(tid, policy, os.sched_param(1))
        return "SCHED_RR 1"
    except (OSError, AttributeError):
        pass
    try:
        os.setpriority(os.PRIO_PROCESS, tid, EVENT_LOOP_NICE)
        return f"nice {EVENT_LOOP_NICE}"
    except (OSError, AttributeError):
        pass
    if _short_slice(tid, EVENT_LOOP_SLICE_NS):
        return f"slice {EVENT_LOOP_SLICE_NS / 1e6:g} ms"
    return "unchanged"


SWITCH_INTERVAL_S = 0.0005


def tune_process_for_serving() -> None:
    """Process-wide settings for a serving process; ``lift-sys serve`` calls it, building an app does not.

    Hand the GIL to the event loop sooner when it is waiting (default 5 ms):
    the decode loop holds the GIL only for short Python steps between
    llama.cpp calls, so /health need not wait a full switch interval.
    """
    import sys

    sys.setswitchinterval(SWITCH_INTERVAL_S)
