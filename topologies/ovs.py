"""A private Open vSwitch instance: the one module that runs Open vSwitch tools.

The machine's Open vSwitch is never touched.  An instance lives in its own
directory (``run/``, ``db/``, ``log/``) with its own database, sockets and
pidfiles; every tool call names those sockets explicitly, and the daemons are
stopped by the PIDs in their pidfiles.  Only the userspace datapath
(``datapath_type=netdev``) works here (see DESIGN.md, "Facts about this machine").

The userspace datapath keeps one tap device named ``ovs-netdev`` per network
namespace, so only one such ovs-vswitchd can run in the root namespace at a
time.  ClickSteer therefore shares one private instance (``default_root()``)
between all fabrics on the machine; each fabric's bridges carry its run id,
and the instance is stopped when the last fabric's bridges are gone and no
process holds it (``hold()``, e.g. a test session).  Take ``lock()`` around
starting, building bridges and the decision to stop, so that these do not
interleave between processes.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from topologies import netns

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
DAEMONS = ("ovsdb-server", "ovs-vswitchd")
OPENFLOW = "OpenFlow13"
DATAPATH_TAP = "ovs-netdev"
REVALIDATE_MS = 100          # other_config:max-revalidator (see OVS.start)


def default_root() -> Path:
    """Where ClickSteer's shared private Open vSwitch lives (env ``CLICKSTEER_OVS_DIR``)."""
    return Path(os.environ.get("CLICKSTEER_OVS_DIR", "/run/clicksteer-ovs"))


class OVSError(RuntimeError):
    """An Open vSwitch tool failed; the message carries the command and its stderr."""


def run(argv: list[str], env: dict[str, str] | None = None) -> str:
    """Run one command; return its stdout, raise OVSError with stderr when it fails."""
    proc = subprocess.run(argv, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise OVSError(f"{' '.join(argv)}: {proc.stderr.strip() or f'exit status {proc.returncode}'}")
    return proc.stdout


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until process ``pid`` has ended; False when it still runs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs.

    A zombie that is only waiting to be reaped (by whoever adopted the
    daemon) does not; but a zombie leader whose other threads are still
    winding down (closing sockets and devices) does.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            if stat.read().rpartition(")")[2].split()[0] not in ("Z", "X"):
                return True
        return len(os.listdir(f"/proc/{pid}/task")) > 1
    except (OSError, IndexError):
        return False


class OVS:
    """An ovsdb-server + ovs-vswitchd pair rooted in ``root``."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root is not None else default_root()
        self.rundir = self.root / "run"
        self.dbdir = self.root / "db"
        self.logdir = self.root / "log"
        self.db_file = self.dbdir / "conf.db"
        self.db_sock = self.rundir / "db.sock"
        # The tools find per-bridge OpenFlow sockets (BRIDGE.mgmt) under OVS_RUNDIR.
        self.env = {**os.environ, "OVS_RUNDIR": str(self.rundir), "OVS_DBDIR": str(self.dbdir),
                    "OVS_LOGDIR": str(self.logdir), "OVS_SYSCONFDIR": str(self.root / "etc"),
                    "OVS_PKGDATADIR": "/usr/share/openvswitch"}

    # -- processes -------------------------------------------------------

    def pidfile(self, daemon: str) -> Path:
        return self.rundir / f"{daemon}.pid"

    def ctl_socket(self, daemon: str) -> Path:
        return self.rundir / f"{daemon}.ctl"

    def pid(self, daemon: str) -> int | None:
        """The PID of one of our daemons if its pidfile names a live process that is that daemon.

        The command line must name our pidfile: after a crash the PID may
        belong to some other process by now, which must never be signalled.
        """
        pidfile = self.pidfile(daemon)
        try:
            pid = int(pidfile.read_text().split()[0])
            with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                ours = f"--pidfile={pidfile}".encode() in cmdline.read().split(b"\0")
        except (OSError, ValueError, IndexError):
            return None
        return pid if ours and pid_alive(pid) else None

    def pids(self) -> dict[str, int]:
        return {d: pid for d in DAEMONS if (pid := self.pid(d)) is not None}

    def alive(self) -> bool:
        return len(self.pids()) == len(DAEMONS)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the instance's lock (a flock on ``ROOT/lock``) for the duration of the block."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def start(self) -> bool:
        """Start the daemons unless ours are already running; True when this call started them."""
        if self.alive():
            return False
        self.stop()  # a half-dead instance (one daemon left) is restarted from scratch
        if Path("/sys/class/net", DATAPATH_TAP).exists():
            raise OVSError(f"another userspace Open vSwitch runs in this network namespace "
                           f"(interface {DATAPATH_TAP} exists) and it is not the one in {self.root}; "
                           f"set CLICKSTEER_OVS_DIR to its directory or stop it")
        for d in (self.rundir, self.dbdir, self.logdir, self.root / "etc"):
            d.mkdir(parents=True, exist_ok=True)
        # A fresh database: bridges left in an old one would come back to life.
        self.db_file.unlink(missing_ok=True)
        run(["ovsdb-tool", "create", str(self.db_file), str(SCHEMA)], self.env)
        run(["ovsdb-server", str(self.db_file), f"--remote=punix:{self.db_sock}",
             "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
             *self._daemon_args("ovsdb-server")], self.env)
        self.vsctl("--no-wait", "init")
        # Flow statistics drive automatic scaling; by default vswitchd copies datapath counters
        # into its flow table every 500 ms, which would add up to half a second to every reaction.
        self.vsctl("--no-wait", "set", "Open_vSwitch", ".", f"other_config:max-revalidator={REVALIDATE_MS}")
        run(["ovs-vswitchd", f"unix:{self.db_sock}", *self._daemon_args("ovs-vswitchd")], self.env)
        return True

    def _daemon_args(self, daemon: str) -> list[str]:
        return [f"--pidfile={self.pidfile(daemon)}", f"--unixctl={self.ctl_socket(daemon)}",
                f"--log-file={self.logdir / (daemon + '.log')}", "--detach", "--no-chdir",
                "-vconsole:off"]

    def stop(self, timeout: float = 30.0) -> None:
        """Stop our daemons (vswitchd first, so it leaves the database last), by PID.

        The userspace datapath's tap devices (one per bridge, plus
        ``ovs-netdev``) are persistent and outlive vswitchd.  Removing them
        here in one go is much faster than vswitchd's own ``exit --cleanup``,
        which takes each port out of the datapath one by one (seconds for a
        fat tree).  Each closed port still costs the kernel one RCU grace
        period (AF_PACKET sockets), so vswitchd's exit takes ~10 ms a port.
        """
        taps = self.bridges() if self.pid("ovsdb-server") else []
        # Our vswitchd's pidfile (left behind too when it crashed) says that ovs-netdev is ours.
        if self.pidfile("ovs-vswitchd").exists():
            taps.append(DATAPATH_TAP)
        for daemon in reversed(DAEMONS):
            pid = self.pid(daemon)
            if pid is not None:
                os.kill(pid, signal.SIGTERM)
                if not wait_gone(pid, timeout):
                    os.kill(pid, signal.SIGKILL)
                    wait_gone(pid, timeout)
            self.pidfile(daemon).unlink(missing_ok=True)
        netns.delete_links(taps)

    # -- tools -----------------------------------------------------------

    def vsctl(self, *args: str) -> str:
        return run(["ovs-vsctl", f"--db=unix:{self.db_sock}", "--timeout=30", *args], self.env)

    def ofctl(self, *args: str) -> str:
        """ovs-ofctl speaking OpenFlow 1.3; bridge names resolve to our run directory."""
        return run(["ovs-ofctl", "-O", OPENFLOW, *args], self.env)

    def bridges(self) -> list[str]:
        return self.vsctl("list-br").split()

    # -- sharing -----------------------------------------------------------

    def hold(self, pid: int | None = None) -> None:
        """Keep the instance running while process ``pid`` (default: this one) lives.

        A test session holds it so that fabrics coming and going do not stop
        and restart it; holds of processes that died are ignored.
        """
        holds = self.root / "holds"
        holds.mkdir(parents=True, exist_ok=True)
        (holds / str(pid or os.getpid())).touch()

    def release(self, pid: int | None = None) -> None:
        (self.root / "holds" / str(pid or os.getpid())).unlink(missing_ok=True)

    def held(self) -> bool:
        """Whether a live process holds the instance (holds of dead ones are dropped)."""
        holds = self.root / "holds"
        if not holds.is_dir():
            return False
        live = False
        for path in holds.iterdir():
            if path.name.isdigit() and pid_alive(int(path.name)):
                live = True
            else:
                path.unlink(missing_ok=True)
        return live

    def stop_if_idle(self) -> bool:
        """Stop the instance when no bridge and no hold is left (hold ``lock()``); True when stopped."""
        if self.alive() and (self.held() or self.bridges()):
            return False
        self.stop()
        return True


def add_port_args(bridge: str, port: str, ofport: int | None = None) -> list[str]:
    """ovs-vsctl arguments (one ``--``-led command list) adding ``port`` to ``bridge``.

    ``ofport_request`` keeps the OpenFlow port number stable when a port is
    re-added; without it OVS hands out a new one.  Commands can be chained in
    one ovs-vsctl transaction, which is much faster than one call per port.
    """
    args = ["--", "--may-exist", "add-port", bridge, port]
    if ofport is not None:
        args += ["--", "set", "Interface", port, f"ofport_request={ofport}"]
    return args


def del_port(ovs: OVS, bridge: str, port: str) -> None:
    """Detach a port; detaching a port that is not there is not an error (safe to repeat)."""
    ovs.vsctl("--if-exists", "del-port", bridge, port)


def ofport(ovs: OVS, port: str) -> int:
    """The OpenFlow port number OVS gave an interface (-1 while it is not working)."""
    return int(ovs.vsctl("get", "Interface", port, "ofport").strip())
