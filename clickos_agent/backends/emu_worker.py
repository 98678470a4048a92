"""The router fork server of the emu backend.

Starting a Python interpreter and importing the Click runtime takes longer
than ClickOS takes to boot, so the agent keeps one pre-imported worker (this
module, run as ``python -m clickos_agent.backends.emu_worker``) and asks it to
fork a router per instance.  The child leaves the worker's session, enters the
instance's network namespace with setns(2), sets up its interfaces and runs the
Click runtime; it outlives the worker and the agent (they can be killed and
restarted; the agent re-adopts routers by PID and namespace).

Protocol: one JSON object per line on stdin (``{"req", "netns", "config",
"devices", "macs", "control_socket", "log", "filename"}``), answered on stdout by
``{"req", "event": "forked", "pid"}`` and then ``{"req", "event": "ready"}`` or
``{"req", "event": "failed", "error"}``.  The worker dies with the agent
(PR_SET_PDEATHSIG), and on end of input.
"""

from __future__ import annotations

import ctypes
import json
import os
import selectors
import signal
import sys
import traceback
from typing import Any

from clickos_agent.backends import ifconf

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
PR_SET_NAME = 15
LOG_TAIL = 2000

_libc = ctypes.CDLL(None, use_errno=True)

try:  # imported here, once, so that every forked router starts with it loaded
    from clickos_agent.click.run import run_router
    IMPORT_ERROR = ""
except Exception:  # noqa: BLE001 - reported on every request instead of dying silently
    IMPORT_ERROR = traceback.format_exc()


def setns(path: str) -> None:
    """Enter a network namespace (Python 3.11 has no os.setns)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({path}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _child(req: dict[str, Any], ready_w: int) -> None:
    """In the forked child: become an independent router process, then run. Never returns."""
    code = 1
    try:
        os.setsid()
        # ps/top show the router under its namespace's name (at most 15 bytes), not as the worker.
        _libc.prctl(PR_SET_NAME, os.path.basename(req["netns"]).encode()[:15])
        for sig in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)
        log_fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null_fd = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null_fd, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        # Drop the worker's other descriptors (its pipes, other routers' ready pipes).
        for fd in [int(n) for n in os.listdir("/proc/self/fd")]:
            if fd > 2 and fd != ready_w:
                try:
                    os.close(fd)
                except OSError:
                    pass
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        setns(req["netns"])
        for device in req["devices"].values():
            ifconf.disable_ipv6(device)
            ifconf.tx_checksum_off(device)
            if device in req.get("macs", {}):   # a pre-built interface gets its instance's MAC now
                ifconf.set_mac(device, req["macs"][device])
            ifconf.set_up(device)
        if IMPORT_ERROR:
            raise RuntimeError(f"the Click runtime cannot be imported:\n{IMPORT_ERROR}")
        run_router(req["config"], req["devices"], req["control_socket"], ready_fd=ready_w,
                   filename=req.get("filename", "<config>"))
        code = 0
    except BaseException:  # noqa: BLE001 - whatever happens, the reason goes to the log
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - LOG_TAIL))
            return handle.read().decode("utf-8", "replace").strip()
    except OSError as exc:
        return f"(no log: {exc})"


class Worker:
    def __init__(self) -> None:
        self.selector = selectors.DefaultSelector()
        self.out = sys.stdout
        self.buffer = b""

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    def spawn(self, req: dict[str, Any]) -> None:
        ready_r, ready_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(ready_r)
            _child(req, ready_w)
        os.close(ready_w)
        self.send({"req": req["req"], "event": "forked", "pid": pid})
        self.selector.register(ready_r, selectors.EVENT_READ, (req, pid))

    def on_ready_pipe(self, fd: int, req: dict[str, Any], pid: int) -> None:
        """The router wrote its ready byte, or closed the pipe by dying first."""
        data = os.read(fd, 1)
        self.selector.unregister(fd)
        os.close(fd)
        if data:
            self.send({"req": req["req"], "event": "ready", "pid": pid})
        else:
            self.send({"req": req["req"], "event": "failed", "pid": pid,
                       "error": f"the router exited before it was ready: {_tail(req['log'])}"})

    def on_input(self) -> bool:
        chunk = os.read(0, 1 << 20)
        if not chunk:
            return False
        self.buffer += chunk
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line.strip():
                self.spawn(json.loads(line))
        return True

    def serve(self) -> None:
        self.selector.register(0, selectors.EVENT_READ, None)
        while True:
            for key, _ in self.selector.select():
                if key.data is None:
                    if not self.on_input():
                        return
                else:
                    self.on_ready_pipe(key.fd, *key.data)


def main() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    # Routers are reaped automatically; the ready pipe tells how each one started.
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    Worker().serve()


if __name__ == "__main__":
    main()
