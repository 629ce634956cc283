"""CPU priorities: the model must neither starve the event loop nor be starved by a neighbour.

Two threads matter on a small box: the event loop (``/health``, accepting,
streaming) must get a core the moment it wakes, and the model's decode
threads must keep a fair share of the CPU when something else on the box is
busy. Demoting the model to ``SCHED_IDLE`` solved the first and broke the
second: with a second CPU-bound process running, the model threads got ~4%
of a core each and a request waited minutes (measured). So the default now
leaves the model at normal priority and *promotes the event loop* instead:

* ``nice -5`` on the event-loop thread where we may lower a nice value
  (root / CAP_SYS_NICE) -- it then wins every wakeup against the model, and
  it is idle almost all the time, so it takes nothing from anyone;
* otherwise a short EEVDF slice (``sched_setattr`` with ``sched_runtime``,
  Linux >= 6.12, unprivileged): same weight, earlier deadline, so a waking
  event loop preempts sooner;
* otherwise nothing (the kernel's default wake-up preemption).

``LIFT_WORKER_PRIORITY`` still offers ``low`` (nice 10) and ``idle``
(SCHED_IDLE) for a box where the model should only use spare cycles.
The numbers behind the default are in docs/benchmarks.md (``bench server``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
import struct
import threading
from typing import Literal

WorkerPriority = Literal["normal", "low", "idle"]
EVENT_LOOP_NICE = -5
EVENT_LOOP_SLICE_NS = 100_000  # 0.1 ms, the smallest slice EEVDF accepts
_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}


def set_worker_priority(priority: WorkerPriority) -> None:
    """Set the calling thread's priority (threads it starts later, like llama.cpp's, inherit it).

    ``normal`` resets nice to 0 explicitly: a worker started from a promoted
    event-loop thread would otherwise inherit the promotion.
    """
    if priority not in ("normal", "low", "idle"):
        raise ValueError(f"priority must be idle, low or normal, not {priority!r}")
    tid = threading.get_native_id()
    try:
        if priority == "idle":
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        else:
            os.setpriority(os.PRIO_PROCESS, tid, 10 if priority == "low" else 0)
    except (OSError, AttributeError):  # not Linux, or not allowed: leave it
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
        os.setpriority(os.PRIO_PROCESS, tid, EVENT_LOOP_NICE)
        return f"nice {EVENT_LOOP_NICE}"
    except (OSError, AttributeError):
        pass
    if _short_slice(tid, EVENT_LOOP_SLICE_NS):
        return f"slice {EVENT_LOOP_SLICE_NS / 1e6:g} ms"
    return "unchanged"
