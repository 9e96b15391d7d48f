"""The program-side harness of scorecheck's sandbox: run by ``python -I -c <this file's text>`` inside the sandbox.

Self-contained (standard library only, never imports scorecheck): the sandboxed interpreter may not be able to read
the package. Argument 1 is a JSON object (the settings); stdin brings the program (its length in 16 ASCII digits, then its
UTF-8 text) and later the byte that starts it; the original stdout is the result channel: a ``ready`` line once set
up, then one result line, written only after the program returned or raised. Exiting without that line
(``os._exit(0)``, a signal, a kill) is never a pass.

Steps: read the program; set up the filesystem when this process owns new namespaces (hide homes and temp
directories behind empty tmpfs mounts, bind the interpreter's directories back, make every mount read-only and
nosuid, give the program one small writable tmpfs at /tmp); give up privileges (a fresh unprivileged uid when
started as root, else every capability dropped); resource limits; then human-eval's execution semantics: stdin
unreadable, output swallowed, human-eval's reliability_guard list of disabled calls, the program executed under a
module name that is not ``__main__`` with a wall-clock limit raised as an exception.
"""

import json
import os
import sys


def _libc():
    import ctypes

    return ctypes, ctypes.CDLL(None, use_errno=True)


def _check(ctypes, rc, what):
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


MS_RDONLY, MS_NOSUID, MS_BIND, MS_REC = 1, 2, 4096, 16384
MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID = 0x1, 0x2
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture (added in Linux 5.12)
HIDDEN = ("/root", "/home", "/tmp", "/var/tmp", "/run", "/dev/shm", "/mnt", "/media", "/srv")


def setup_filesystem(cfg):
    """In a private mount namespace: hide, bind back, read-only everything, a writable tmpfs at /tmp."""
    ctypes, libc = _libc()
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]

    def mount(src, target, fstype, flags, data):
        rc = libc.mount(src.encode(), target.encode(), fstype.encode() if fstype else None, flags,
                        data.encode() if data else None)  # fmt: skip
        _check(ctypes, rc, f"mount {target}")

    keep = [p for p in cfg["keep"] if os.path.isdir(p)]
    fds = {p: os.open(p, os.O_PATH | os.O_DIRECTORY) for p in keep}
    for h in HIDDEN:
        if os.path.isdir(h) and not os.path.islink(h):
            mode = "1777" if h in ("/tmp", "/var/tmp", "/dev/shm") else "755"
            size = cfg["tmp_bytes"] if h == "/tmp" else 1 << 20
            mount("tmpfs", h, "tmpfs", MS_NOSUID, f"size={size},nr_inodes=4096,mode={mode}")
    for p in keep:
        if any(p == h or p.startswith(h + "/") for h in HIDDEN) and p not in HIDDEN:
            os.makedirs(p, mode=0o755, exist_ok=True)
            mount(f"/proc/self/fd/{fds[p]}", p, None, MS_BIND | MS_REC, None)
    for fd in fds.values():
        os.close(fd)

    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]  # fmt: skip

    def setattr_(path, set_, clr, flags):
        attr = MountAttr(set_, clr, 0, 0)
        rc = libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), flags, ctypes.byref(attr),
                          ctypes.sizeof(attr))  # fmt: skip
        _check(ctypes, rc, f"mount_setattr {path}")

    try:  # no program may create user namespaces of its own (they would give it capabilities)
        with open("/proc/sys/user/max_user_namespaces", "w") as f:
            f.write("0")
    except OSError:
        pass
    setattr_("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, AT_RECURSIVE)
    setattr_("/tmp", 0, MOUNT_ATTR_RDONLY, 0)  # the program's scratch space (size-limited)
    os.mkdir("/tmp/work", 0o1777)
    os.chmod("/tmp/work", 0o1777)
    return "/tmp/work"


def drop_privileges(cfg):
    ctypes, libc = _libc()
    _check(ctypes, libc.prctl(38, 1, 0, 0, 0), "no_new_privs")  # PR_SET_NO_NEW_PRIVS
    uid = cfg.get("uid")
    if uid is not None and os.getuid() == 0 and cfg["mode"] != "userns":
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)  # from real root: every capability is cleared with it
        libc.prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: /proc/self stays the program's own, as in a normal process
        return
    if cfg["mode"] == "userns":
        try:
            last = int(open("/proc/sys/kernel/cap_last_cap").read())
        except OSError:
            last = 63
        for cap in range(last + 1):
            libc.prctl(24, cap, 0, 0, 0)  # PR_CAPBSET_DROP
        libc.prctl(47, 4, 0, 0, 0)  # PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL

        class Header(ctypes.Structure):
            _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

        data = (ctypes.c_uint32 * 6)()
        _check(ctypes, libc.capset(ctypes.byref(Header(0x20080522, 0)), data), "capset")


def set_limits(cfg):
    import resource

    lim = cfg["limits"]
    pairs = [
        (resource.RLIMIT_AS, lim["memory_bytes"]),
        (resource.RLIMIT_FSIZE, lim["file_bytes"]),
        (resource.RLIMIT_NOFILE, lim["open_files"]),
        (resource.RLIMIT_CORE, 0),
    ]
    for res, value in pairs:
        resource.setrlimit(res, (value, value))
    # Pid-namespace init ignores SIGXCPU; the hard limit's SIGKILL still ends it.
    cpu = int(lim["cpu_seconds"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    # Last: in a user namespace it counts only this namespace's processes; elsewhere the fresh uid's.
    resource.setrlimit(resource.RLIMIT_NPROC, (lim["processes"], lim["processes"]))


def reliability_guard():
    """The calls openai/human-eval's reliability_guard disables (the list is protocol data: a program that calls
    one of them fails there, so it fails here). Not a security boundary: the sandbox around this process is."""
    import builtins
    import faulthandler
    import shutil
    import subprocess

    faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
                 "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
                 "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"):  # fmt: skip
        setattr(os, name, None)
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None
    builtins.help = None
    for mod in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[mod] = None


class TimeoutException(Exception):
    pass


class _NoInput:
    """human-eval's stdin: reading raises OSError."""

    def read(self, *a, **k):
        raise OSError

    readline = readlines = read

    def readable(self):
        return False

    def __iter__(self):
        raise OSError


def _read_exactly(fd, n):
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def main():
    cfg = json.loads(sys.argv[1])
    sys.path.extend(p for p in cfg.get("site", ()) if p not in sys.path)  # -S: no .pth processing, same packages
    size = int(_read_exactly(0, 16))
    program = _read_exactly(0, size).decode("utf-8", "surrogateescape")
    out = os.dup(1)
    go = os.dup(0)
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)

    write, dumps, getpid, exit_ = os.write, json.dumps, os.getpid, os._exit  # the program may replace them
    me = getpid()

    def report(**rec):
        if getpid() != me:  # a process the program forked reached the end: only the harness's own result counts
            exit_(0)
        write(out, (dumps(rec) + "\n").encode())

    try:
        workdir = setup_filesystem(cfg) if cfg["mode"] in ("userns", "rootns") else cfg["workdir"]
        drop_privileges(cfg)
        os.chdir(workdir)
        set_limits(cfg)
    except BaseException as e:  # the sandbox could not be built: not the program's fault
        report(setup_error=f"{type(e).__name__}: {e}")
        os._exit(125)
    if cfg.get("probe"):
        report(status="probe", uid=os.getuid(), euid=os.geteuid())
        os._exit(0)
    # Set up and waiting: the parent starts the clock (and lets only as many programs run as it has cores) with
    # one byte on the original stdin.
    report(status="ready")
    if _read_exactly(go, 1) != b"g":
        os._exit(0)
    os.close(go)

    import signal
    import types

    sys.stdin = _NoInput()
    reliability_guard()
    name = "__scorecheck_exec__"
    module = types.ModuleType(name)
    sys.modules[name] = module

    def on_alarm(signum, frame):
        raise TimeoutException("Timed out!")

    signal.signal(signal.SIGALRM, on_alarm)
    try:
        signal.setitimer(signal.ITIMER_REAL, cfg["timeout"])
        try:
            exec(program, module.__dict__)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except TimeoutException:
        report(status="timed_out")
    except BaseException as e:
        try:
            msg = str(e)[:300]
        except BaseException:
            msg = ""
        report(status="failed", exception=type(e).__name__, message=msg)
    else:
        report(status="passed")
    exit_(0)


main()
