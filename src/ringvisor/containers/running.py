"""`run`: create, start, wait for the container's init (forwarding signals, or copying
its terminal) and delete, in one command; the exit status is the container's."""
import os

import _signal as signal  # the C module: `signal` would import enum

from . import spec as spec_mod
from .errors import OciError
from .lifecycle import create, delete, start


def run(root, container_id, bundle, pid_file=None, console_socket=None, preserve_fds=0,
        detach=False, keep=False, no_pivot=False):
    """create + start, then (unless detached) wait for the init, forwarding signals, and
    delete; the exit status is the container's (128+N after signal N)."""
    from . import syscalls as sc
    sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    own_terminal = None
    if console_socket is None and _wants_terminal(bundle):
        if detach:
            raise OciError("process.terminal is true: a detached run needs --console-socket")
        from . import console
        console_socket, own_terminal = console.socket_pair()
    container = create(root, container_id, bundle, pid_file, console_socket, preserve_fds,
                       no_pivot)
    pid = container.pid()
    master = console.receive_master(own_terminal) if own_terminal is not None else None
    forwarded = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
                 signal.SIGUSR1, signal.SIGUSR2)
    if not detach:
        for number in forwarded:
            signal.signal(number, lambda n, _f: _forward(pid, n))
    try:
        start(root, container_id)
    except BaseException:
        delete(root, container_id, force=True)
        raise
    if detach:
        return 0
    if master is not None:
        exited = []
        console.proxy(master, lambda: _reaped(pid, exited))
        status = exited[0] if exited else _wait_for(pid)
    else:
        status = _wait_for(pid)
    for number in forwarded:
        signal.signal(number, signal.SIG_DFL)
    if not keep:
        delete(root, container_id, force=True)
    return status


def _wants_terminal(bundle):
    try:
        return bool(spec_mod.load_bundle(bundle)["process"].get("terminal"))
    except OciError:
        return False  # create reports the problem


def _reaped(pid, exited):
    """True once the init has exited (its status saved in `exited`)."""
    try:
        reaped, status = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    if reaped == pid:
        exited.append(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status)
                      else 128 + os.WTERMSIG(status))
        return True
    return False


def _forward(pid, number):
    try:
        os.kill(pid, number)
    except ProcessLookupError:
        pass


def _wait_for(pid):
    """The init's exit status; it is our child (we are its subreaper). Orphans reparented
    to us meanwhile are reaped too."""
    while True:
        try:
            reaped, status = os.waitpid(-1, 0)
        except InterruptedError:
            continue
        except ChildProcessError:
            return 255
        if reaped == pid:
            return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else \
                128 + os.WTERMSIG(status)
