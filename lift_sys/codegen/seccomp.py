"""A seccomp-BPF filter for sandboxed code, built here and installed by the harness itself.

Why a filter on top of bubblewrap's namespaces: namespaces decide what a
process can *see*; they leave kernel entry points open that hostile code
uses to get out or to hurt the host. Each rule below closes a class that
namespaces alone leave open:

* ``execve``/``execveat``, ``fork``/``vfork``, ``clone`` without
  ``CLONE_THREAD`` (``clone3`` answers ENOSYS so libc falls back to
  ``clone``): no new programs and no child processes -- a fork bomb or a
  double-forked, ``setsid``-ed child that outlives verification is
  impossible, not just killed afterwards. Threads stay allowed.
* ``socket``/``socketpair``: no sockets at all, not even inside the empty
  network namespace (and in the ``process`` fallback, where there is no
  network namespace, this is what keeps the host's loopback unreachable).
* ``unshare``/``setns``/``mount``/``pivot_root``/``chroot``: no new
  namespaces (a nested user namespace hands its creator every capability
  inside it -- the entry point of many kernel exploits) and no re-entering
  the host's (the ``setns(/proc/<parent>/ns/net)`` escape).
* ``ptrace``/``process_vm_*``/``kill``: no touching other processes.
* ``bpf``/``perf_event_open``/``userfaultfd``/``io_uring_*``/``keyctl`` and
  friends, module loading, ``reboot``, ``kexec``: large kernel attack surface
  no verification needs.
* metadata and host-wide state that Landlock does not cover -- found by the
  red team in the ``process`` fallback, where the sandbox shares the host's
  filesystem, IPC and UTS: ``chmod``/``chown``/``utime*``/``*xattr`` (a
  setuid copy of ``cat``, a file capability that read ``/etc/shadow``),
  ``mknod*`` (``/dev/kmsg``, a host VT for ``TIOCSTI``), ``sethostname``,
  the clocks, SysV ``shm*``/``sem*``/``msg*`` (segments that outlive the
  run and escape ``RLIMIT_AS`` -- under bwrap too, for its lifetime),
  ``fanotify``/``inotify`` (watching host files), and ``setpriority``/
  ``sched_set*``/``prlimit64`` on another process (``prlimit`` of a host PID
  to a 1 s CPU limit killed it). ``prlimit64`` on itself (pid 0) stays.
* ``ioctl`` ``TIOCSTI``/``TIOCLINUX`` (typing into a terminal) and
  ``FS_IOC_SETFLAGS`` (``chattr +i``: files the cleanup cannot remove).

Denied calls fail with EPERM (the program sees a clean ``PermissionError``);
a foreign architecture or an x32 syscall number kills the process. The
filter is x86-64 only; elsewhere :func:`filter_program` returns ``None`` and
the report says seccomp was not in force.
"""

from __future__ import annotations

import errno
import platform
import struct

# struct seccomp_data: nr @0 (u32), arch @4 (u32), instruction_pointer @8, args[6] @16 (u64 each)
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_JSET_K = 0x45
_RET_K = 0x06

_AUDIT_ARCH_X86_64 = 0xC000003E
_X32_BIT = 0x40000000
_CLONE_THREAD = 0x00010000

RET_ALLOW = 0x7FFF0000
RET_KILL_PROCESS = 0x80000000
RET_ERRNO = 0x00050000

# x86-64 syscall numbers (arch/x86/entry/syscalls/syscall_64.tbl)
DENIED_X86_64: dict[str, int] = {
    "socket": 41, "socketpair": 53, "fork": 57, "vfork": 58, "execve": 59, "kill": 62,
    "ptrace": 101, "syslog": 103, "personality": 135, "pivot_root": 155, "chroot": 161, "acct": 163,
    "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169, "init_module": 175,
    "delete_module": 176, "quotactl": 179, "tkill": 200, "kexec_load": 246, "add_key": 248,
    "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
    "execveat": 322, "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
    "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431,
    "fsmount": 432, "fspick": 433, "pidfd_getfd": 438, "mount_setattr": 442,
    # metadata and host-wide state (see above)
    "chmod": 90, "fchmod": 91, "chown": 92, "fchown": 93, "lchown": 94, "fchownat": 260, "fchmodat": 268,
    "fchmodat2": 452, "utime": 132, "utimes": 235, "futimesat": 261, "utimensat": 280,
    "setxattr": 188, "lsetxattr": 189, "fsetxattr": 190, "removexattr": 197, "lremovexattr": 198,
    "fremovexattr": 199, "mknod": 133, "mknodat": 259, "sethostname": 170, "setdomainname": 171,
    "settimeofday": 164, "clock_settime": 227, "clock_adjtime": 305, "adjtimex": 159,
    "shmget": 29, "shmat": 30, "shmctl": 31, "semget": 64, "semop": 65, "semctl": 66, "shmdt": 67,
    "msgget": 68, "msgsnd": 69, "msgrcv": 70, "msgctl": 71, "semtimedop": 220,
    "fanotify_init": 300, "fanotify_mark": 301, "inotify_init": 253, "inotify_add_watch": 254,
    "inotify_init1": 294, "setpriority": 141, "sched_setparam": 142, "sched_setscheduler": 144,
    "sched_setaffinity": 203, "sched_setattr": 314, "pidfd_send_signal": 424, "pidfd_open": 434,
    "rt_sigqueueinfo": 129, "rt_tgsigqueueinfo": 297, "vhangup": 153, "ioperm": 173, "iopl": 172,
    "lookup_dcookie": 212, "move_pages": 279, "migrate_pages": 256, "kcmp": 312,
}
_PRLIMIT64, _IOCTL = 302, 16
_DENIED_IOCTLS = (0x5412, 0x541C, 0x40086602, 0x40046602)  # TIOCSTI, TIOCLINUX, FS_IOC_SETFLAGS (64/32)
_CLONE, _CLONE3 = 56, 435


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def filter_program() -> bytes | None:
    """The filter as raw ``struct sock_filter`` bytes, or ``None`` off x86-64."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    eperm = RET_ERRNO | errno.EPERM
    prog = [
        _insn(_LD_W_ABS, 0, 0, 4),  # A = arch
        _insn(_JEQ_K, 1, 0, _AUDIT_ARCH_X86_64),
        _insn(_RET_K, 0, 0, RET_KILL_PROCESS),
        _insn(_LD_W_ABS, 0, 0, 0),  # A = syscall number
        _insn(_JGE_K, 0, 1, _X32_BIT),
        _insn(_RET_K, 0, 0, RET_KILL_PROCESS),
    ]
    for nr in sorted(DENIED_X86_64.values()):
        prog += [_insn(_JEQ_K, 0, 1, nr), _insn(_RET_K, 0, 0, eperm)]
    prog += [_insn(_JEQ_K, 0, 1, _CLONE3), _insn(_RET_K, 0, 0, RET_ERRNO | errno.ENOSYS)]
    # prlimit64(pid, ...): only on itself (pid 0 or its own pid is what libc's setrlimit sends: 0)
    prog += [
        _insn(_JEQ_K, 0, 4, _PRLIMIT64),
        _insn(_LD_W_ABS, 0, 0, 16),  # A = pid
        _insn(_JEQ_K, 1, 0, 0),
        _insn(_RET_K, 0, 0, eperm),
        _insn(_RET_K, 0, 0, RET_ALLOW),
    ]
    # ioctl(fd, cmd, ...): no typing into terminals, no immutable files
    n = len(_DENIED_IOCTLS)
    prog += [_insn(_JEQ_K, 0, n + 3, _IOCTL), _insn(_LD_W_ABS, 0, 0, 24)]  # A = low 32 bits of cmd
    for k, cmd in enumerate(_DENIED_IOCTLS):
        prog.append(_insn(_JEQ_K, n - k, 0, cmd))
    prog += [_insn(_RET_K, 0, 0, RET_ALLOW), _insn(_RET_K, 0, 0, eperm)]
    prog += [_insn(_LD_W_ABS, 0, 0, 0)]  # A = syscall number again (only reached when not ioctl)
    prog += [
        _insn(_JEQ_K, 0, 4, _CLONE),
        _insn(_LD_W_ABS, 0, 0, 16),  # A = low 32 bits of clone's flags
        _insn(_JSET_K, 1, 0, _CLONE_THREAD),
        _insn(_RET_K, 0, 0, eperm),  # a new process
        _insn(_RET_K, 0, 0, RET_ALLOW),  # a thread
        _insn(_RET_K, 0, 0, RET_ALLOW),
    ]
    return b"".join(prog)
