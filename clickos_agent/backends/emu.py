"""The emu backend: an instance is a network namespace running the Click runtime.

Per instance (``TAG`` is the agent's tag, ``SEQ`` its sequence number):

- namespace ``csi-TAG-SEQ`` holding ``eth0``..``ethN-1`` (device 0..N-1 of the
  config), each with the instance's MAC, TX checksum offload off, no IPv6;
- their peers ``csiTAGSEQ.I`` in the root namespace, ports of the compute
  host's learning bridge (the VALE stand-in) at OpenFlow port numbers derived
  from SEQ;
- a router process forked by the pre-imported worker (emu_worker.py), in its
  own session, with its control socket and log in the agent's run directory.

Every name is derived from TAG and SEQ, so ``destroy`` and ``sweep`` remove
exactly what this agent made.

Warm pool: with ``pool_size`` > 0 the backend keeps that many one-interface
slots ready (namespace ``csp-TAG-N`` with ``eth0``, its peer ``cspTAGN.0``
already a port of the bridge), refilled in the background.  A one-interface
instance takes a slot, so its create and attach steps cost nothing; its router
sets the instance's MAC on ``eth0`` before bringing it up.  Unused slots are
removed on ``close`` and, after a crash, by the next agent's sweep.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from clickos_agent.agent import MAX_INTERFACES, BackendError, BadRequest, Conflict, Instance, Interface, NotFound
from clickos_agent.backends import ifconf
from topologies import netns
from topologies.ovs import OVS, OVSError, add_port_args, ofport

log = logging.getLogger(__name__)

PREFIX = "csi"
POOL_PREFIX = "csp"
FIRST_OFPORT = 2            # port 1 is the compute host's uplink
READY_TIMEOUT_S = 10.0
POOL_QUIET_S = 0.05         # the pool refills once no boot has been under way for this long
STOP_TIMEOUT_S = 2.0
CONTROL_TIMEOUT_S = 5.0


def namespace_name(tag: str, seq: int) -> str:
    return f"{PREFIX}-{tag}-{seq}"


def veth_name(tag: str, seq: int, index: int) -> str:
    """The root-namespace end: 3 + 6 + 4 + 2 characters, within Linux's 15."""
    return f"{PREFIX}{tag}{seq % 0x10000:x}.{index}"


def ofport_for(seq: int, index: int) -> int:
    return FIRST_OFPORT + (seq % 8000) * MAX_INTERFACES + index


def del_ports_args(bridge: str, ports: list[str]) -> list[str]:
    """ovs-vsctl arguments removing ``ports`` from ``bridge`` in one transaction (absent ones are fine)."""
    return [arg for port in ports for arg in ("--", "--if-exists", "del-port", bridge, port)]


# -- processes ----------------------------------------------------------------

def netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def process_netns_inode(pid: int) -> int | None:
    """The inode of a live (not zombie) process's network namespace."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            if handle.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                return None
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except (OSError, IndexError):
        return None


def pids_in_netns(inode: int) -> list[int]:
    """Processes inside one network namespace (exact: by namespace inode, not by name)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and process_netns_inode(int(entry)) == inode:
            found.append(int(entry))
    return found


def stop_netns_processes(ns: str) -> None:
    """Stop every process inside the named network namespace (if it exists)."""
    inode = netns_inode(str(netns.NETNS_DIR / ns))
    if inode is not None:
        stop_processes(pids_in_netns(inode))


def stop_processes(pids: list[int], timeout: float = STOP_TIMEOUT_S) -> None:
    """SIGTERM, then SIGKILL whatever is still there after ``timeout``; wait until they are gone."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if process_netns_inode(p) is not None]
            if pids:
                time.sleep(0.002)
        if not pids:
            return


class RouterSpawner:
    """The agent's end of the fork server: ``spawn`` returns once the router is ready.

    A worker that died (it should not) is replaced at the next spawn.
    """

    def __init__(self, ready_timeout: float = READY_TIMEOUT_S) -> None:
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self.lock = threading.Lock()
        # request number -> (answered, answers, the worker it went to)
        self.pending: dict[int, tuple[threading.Event, list[dict[str, Any]], subprocess.Popen[bytes]]] = {}
        self.next_req = 0

    def start(self) -> None:
        root = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        proc = subprocess.Popen([sys.executable, "-m", "clickos_agent.backends.emu_worker"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        self.proc = proc
        threading.Thread(target=self._read, args=(proc,), name="emu-worker-reader", daemon=True).start()

    def stop(self) -> None:
        """End the worker (closing its input); routers it forked keep running."""
        if self.proc is not None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(timeout=5)
            self.proc = None

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            message = json.loads(line)
            with self.lock:
                waiter = self.pending.get(message["req"])
            if waiter is not None:
                waiter[1].append(message)
                waiter[0].set()
        with self.lock:  # this worker is gone: nobody will answer what was sent to it
            for event, messages, sent_to in self.pending.values():
                if sent_to is proc:
                    messages.append({"event": "failed", "error": "the router fork server exited"})
                    event.set()

    def spawn(self, request: dict[str, Any], on_pid: Callable[[int], None]) -> int:
        """Fork a router; ``on_pid`` hears its PID at once (to be able to stop it); returns it when ready."""
        event, messages = threading.Event(), []
        with self.lock:
            if self.proc is not None and self.proc.poll() is not None:
                log.warning("the router fork server exited (status %s); starting a new one", self.proc.returncode)
                self.proc = None
            if self.proc is None:
                self.start()
            assert self.proc is not None and self.proc.stdin is not None
            self.next_req += 1
            req = self.next_req
            self.pending[req] = (event, messages, self.proc)
            try:
                self.proc.stdin.write((json.dumps({**request, "req": req}) + "\n").encode())
                self.proc.stdin.flush()
            except OSError as exc:
                del self.pending[req]
                raise BackendError(f"the router fork server is unreachable: {exc}") from None
        deadline = time.monotonic() + self.ready_timeout
        try:
            while True:
                if not event.wait(max(0.0, deadline - time.monotonic())):
                    raise BackendError(f"the router was not ready after {self.ready_timeout:g} s")
                with self.lock:
                    event.clear()
                    got, messages[:] = list(messages), []
                for message in got:
                    if message["event"] == "forked":
                        on_pid(message["pid"])
                    elif message["event"] == "ready":
                        return message["pid"]
                    else:
                        raise BackendError(message["error"])
        finally:
            with self.lock:
                self.pending.pop(req, None)


# -- the control socket (Click's ControlSocket protocol) -------------------------

def _control(path: str, command: bytes) -> tuple[int, str, bytes]:
    """Send one command; return (code, message, data) of the answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONTROL_TIMEOUT_S)
        try:
            sock.connect(path)
        except OSError as exc:
            raise BackendError(f"cannot reach the router's control socket: {exc}") from None
        stream = sock.makefile("rb")
        stream.readline()  # the greeting, "Click::ControlSocket/1.3"
        sock.sendall(command)
        line = stream.readline().decode("utf-8", "replace").rstrip("\r\n")
        if not line[:3].isdigit():
            raise BackendError(f"unexpected answer from the control socket: {line!r}")
        code, message = int(line[:3]), line[4:]
        data = b""
        if code == 200 and command.startswith(b"READ "):
            header = stream.readline().decode().split()
            if len(header) == 2 and header[0] == "DATA":
                data = stream.read(int(header[1]))
        return code, message, data


def _handler_error(code: int, message: str, name: str) -> Exception:
    if code in (510, 511):   # no such element / no such handler
        return NotFound(f"{name}: {message}", field="handler")
    if code == 530:          # permission denied (read of a write-only handler, or the reverse)
        return Conflict(f"{name}: {message}", field="handler")
    return BadRequest(f"{name}: {message}", field="value")


class _Attach(threading.Thread):
    """One ovs-vsctl transaction run beside the router's boot; keeps its duration and error."""

    def __init__(self, ovs: OVS, args: list[str]) -> None:
        super().__init__(name="emu-attach", daemon=True)
        self.ovs, self.args = ovs, args
        self.seconds = 0.0
        self.error: OVSError | None = None

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            self.ovs.vsctl(*self.args)
        except OVSError as exc:
            self.error = exc
        self.seconds = time.monotonic() - t0


class _Slot:
    """A pre-built one-interface namespace whose ``eth0`` peer is on the bridge already."""

    def __init__(self, netns_name: str, port: str) -> None:
        self.netns = netns_name
        self.port = port
        self.ofport: int | None = None


def _forced_batch(lines: list[str]) -> None:
    """Clean-up lines run past failures: an object may vanish on its own meanwhile (a veth with its peer)."""
    try:
        netns.batch(lines, force=True)
    except netns.NetError as exc:
        log.warning("clean-up: %s", exc)


# -- the backend ----------------------------------------------------------------

class EmuBackend:
    name = "emu"

    def __init__(self, bridge: str, ovs: OVS, run_dir: str | os.PathLike[str],
                 spawner: RouterSpawner | None = None, pool_size: int = 0) -> None:
        self.bridge = bridge
        self.ovs = ovs
        self.run_dir = Path(run_dir)
        self.spawner = spawner or RouterSpawner()
        self.attaching: dict[int, _Attach] = {}
        self.pool_size = pool_size
        self.pool: deque[_Slot] = deque()
        self.pool_lock = threading.Lock()
        self.pool_wanted = threading.Event()
        self.pool_thread: threading.Thread | None = None
        self.booting: set[int] = set()        # seqs of instances between plan and the end of start (or destroy)
        self.last_boot_activity = 0.0
        self.closed = False

    def open(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.spawner.start()

    def close(self) -> None:
        """Stop the worker and remove unused pool slots; instances keep running."""
        self.closed = True
        self.pool_wanted.set()
        if self.pool_thread is not None:
            self.pool_thread.join()
        with self.pool_lock:
            slots, self.pool = list(self.pool), deque()
        for slot in slots:
            self._remove(slot.netns, [slot.port])
        self.spawner.stop()

    # -- the warm pool ----------------------------------------------------------

    def bind(self, tag: str) -> None:
        """The agent's tag is known (after its sweep): start filling the pool."""
        if self.pool_size > 0 and self.pool_thread is None:
            self.pool_thread = threading.Thread(target=self._fill, args=(tag,), name="emu-pool", daemon=True)
            self.pool_thread.start()

    def _fill(self, tag: str) -> None:
        """Keep the pool full, building slots only while no boot is under way.

        Building a slot makes ovs-vswitchd reconfigure, which would compete for
        the CPU with a router booting at that moment: refills wait for a quiet
        moment, so a burst of boots drains the pool and later ones boot cold.
        """
        number = 0
        while not self.closed:
            with self.pool_lock:
                missing = self.pool_size - len(self.pool)
                self.pool_wanted.clear()
            if missing <= 0:
                self.pool_wanted.wait()
                continue
            quiet = time.monotonic() - self.last_boot_activity
            if self.booting or quiet < POOL_QUIET_S:
                self.pool_wanted.wait(POOL_QUIET_S - min(quiet, POOL_QUIET_S) + 0.001)
                continue
            slot = _Slot(f"{POOL_PREFIX}-{tag}-{number}", f"{POOL_PREFIX}{tag}{number % 0x10000:x}.0")
            number += 1
            if netns.netns_exists(slot.netns) or netns.link_exists(slot.port):
                continue   # an adopted instance took this slot from a previous agent's pool
            try:
                self._build([slot.netns], [(slot.port, "eth0", None, slot.netns)])
                self.ovs.vsctl(*add_port_args(self.bridge, slot.port))
                slot.ofport = ofport(self.ovs, slot.port)
            except (netns.NetError, OVSError, OSError, ValueError) as exc:
                log.warning("warm pool: %s", exc)
                self._remove(slot.netns, [slot.port])
                self.pool_wanted.wait(1.0)   # do not spin on a broken host
                continue
            with self.pool_lock:
                self.pool.append(slot)

    def _take_slot(self) -> _Slot | None:
        with self.pool_lock:
            slot = self.pool.popleft() if self.pool else None
        if slot is not None:
            self.pool_wanted.set()
        return slot

    # -- the instance steps -------------------------------------------------------

    def plan(self, inst: Instance, tag: str) -> None:
        with self.pool_lock:
            self.booting.add(inst.seq)
            self.last_boot_activity = time.monotonic()
        n = inst.spec.interfaces
        base = self.run_dir / f"{tag}-{inst.seq}"
        inst.handles = {"netns": namespace_name(tag, inst.seq), "pid": None, "pooled": False,
                        "devices": {str(i): f"eth{i}" for i in range(n)},
                        "control_socket": f"{base}.ctl", "log": f"{base}.log", "config_file": f"{base}.click"}
        slot = self._take_slot() if n == 1 else None
        if slot is not None:
            inst.handles.update(netns=slot.netns, pooled=True)
            inst.interfaces = [Interface(0, inst.spec.macs[0], slot.port, slot.ofport)]
        else:
            inst.interfaces = [Interface(i, inst.spec.macs[i], veth_name(tag, inst.seq, i), ofport_for(inst.seq, i))
                               for i in range(n)]

    def _build(self, namespaces: list[str], veths: list[tuple[str, str, str | None, str]]) -> None:
        """Namespaces and veth pairs (root end, inner name, inner MAC, namespace) in one ``ip -batch``."""
        lines = [netns.add_netns_cmd(ns) for ns in namespaces]
        for port, inner, mac, ns in veths:
            lines += [netns.add_veth_cmd(port, inner, peer_mac=mac, peer_netns=ns), netns.no_ipv6_cmd(port),
                      netns.set_up_cmd(port)]
        netns.batch(lines)
        for port, *_ in veths:
            ifconf.tx_checksum_off(port)

    def create(self, inst: Instance) -> None:
        if inst.handles["pooled"]:
            return   # the slot's namespace and interface exist already
        try:
            self._build([inst.handles["netns"]],
                        [(i.port, f"eth{i.index}", i.mac, inst.handles["netns"]) for i in inst.interfaces])
        except (netns.NetError, OSError) as exc:
            raise BackendError(str(exc)) from None

    def attach(self, inst: Instance) -> None:
        """Add the ports to the host bridge in the background: the router boots meanwhile.

        ovs-vsctl returns once ovs-vswitchd has applied the change, which takes
        about as long as a router takes to start; ``start`` waits for both and
        records the attach's real duration.
        """
        if inst.handles["pooled"]:
            return   # the slot's port is on the bridge already
        args: list[str] = []
        for iface in inst.interfaces:
            args += add_port_args(self.bridge, iface.port, iface.ofport)
        attaching = _Attach(self.ovs, args)
        self.attaching[inst.seq] = attaching
        attaching.start()

    def _finish_attach(self, inst: Instance) -> None:
        attaching = self.attaching.pop(inst.seq, None)
        if attaching is None:
            return
        attaching.join()
        inst.timings_ms["attach"] = round(attaching.seconds * 1000, 3)
        if attaching.error is not None:
            raise BackendError(f"attaching to {self.bridge}: {attaching.error}")

    def install(self, inst: Instance) -> None:
        # The runtime takes the text directly; the file is for the operator, and the
        # runtime's error messages name it (file:line).
        Path(inst.handles["config_file"]).write_text(inst.spec.config, encoding="utf-8")

    def start(self, inst: Instance) -> None:
        def record(pid: int) -> None:
            inst.handles["pid"] = pid
        Path(inst.handles["control_socket"]).unlink(missing_ok=True)
        # Only a pool slot's interface still lacks the instance's MAC (create gives the others theirs).
        macs = {f"eth{i.index}": i.mac for i in inst.interfaces} if inst.handles["pooled"] else {}
        try:
            inst.handles["pid"] = self.spawner.spawn(
                {"netns": str(netns.NETNS_DIR / inst.handles["netns"]), "config": inst.spec.config,
                 "devices": inst.handles["devices"], "control_socket": inst.handles["control_socket"],
                 "macs": macs, "log": inst.handles["log"], "filename": inst.handles["config_file"]}, record)
        finally:
            try:
                self._finish_attach(inst)
            finally:
                self._boot_over(inst)

    def _boot_over(self, inst: Instance) -> None:
        with self.pool_lock:
            self.booting.discard(inst.seq)
            self.last_boot_activity = time.monotonic()

    def destroy(self, inst: Instance) -> None:
        ns = inst.handles.get("netns")
        if not ns:
            return
        try:
            self._finish_attach(inst)   # a port added after the clean-up would stay behind
        except BackendError:
            pass
        self._boot_over(inst)           # a boot that failed before its start step
        self._remove(ns, [iface.port for iface in inst.interfaces])
        for key in ("control_socket", "log", "config_file"):
            Path(inst.handles[key]).unlink(missing_ok=True)

    def _remove(self, ns: str, ports: list[str]) -> None:
        """Stop the processes in a namespace, then remove its ports, links and the namespace itself."""
        stop_netns_processes(ns)
        errors = []
        try:
            if ports:
                self.ovs.vsctl(*del_ports_args(self.bridge, ports))
        except OVSError as exc:
            errors.append(str(exc))
        # The root-namespace ends first (each takes its peer along): deleting a namespace
        # frees its interfaces asynchronously, so their peers may linger for a moment.
        lines = [netns.del_link_cmd(port) for port in ports if netns.link_exists(port)]
        if netns.netns_exists(ns):
            lines.append(netns.del_netns_cmd(ns))
        try:
            netns.batch(lines)
        except netns.NetError as exc:
            errors.append(str(exc))
        if errors:
            raise BackendError("; ".join(errors))

    def alive(self, inst: Instance) -> bool:
        pid = inst.handles.get("pid")
        inode = netns_inode(str(netns.NETNS_DIR / inst.handles["netns"]))
        return pid is not None and inode is not None and process_netns_inode(pid) == inode

    def sweep(self, tag: str, keep: list[Instance]) -> list[str]:
        """Remove processes, links, ports, namespaces and files carrying ``tag`` that no kept instance owns."""
        kept_ns = {i.handles["netns"] for i in keep}
        kept_ports = {iface.port for i in keep for iface in i.interfaces}
        removed = []
        ns_prefixes = (f"{PREFIX}-{tag}-", f"{POOL_PREFIX}-{tag}-")
        link_prefixes = (f"{PREFIX}{tag}", f"{POOL_PREFIX}{tag}")
        orphan_ns = [ns for ns in netns.list_netns() if ns.startswith(ns_prefixes) and ns not in kept_ns]
        for ns in orphan_ns:
            stop_netns_processes(ns)
        links = [name for name in os.listdir("/sys/class/net")
                 if name.startswith(link_prefixes) and name not in kept_ports]
        _forced_batch([netns.del_link_cmd(name) for name in links])
        removed += [f"link {name}" for name in links]
        try:
            ports = [p for p in self.ovs.vsctl("list-ports", self.bridge).split()
                     if p.startswith(link_prefixes) and p not in kept_ports]
        except OVSError:
            ports = []
        if ports:
            self.ovs.vsctl(*del_ports_args(self.bridge, ports))
        removed += [f"port {port}" for port in ports]
        _forced_batch([netns.del_netns_cmd(ns) for ns in orphan_ns])
        removed += [f"netns {ns}" for ns in orphan_ns]
        kept_files = {Path(i.handles[k]).name for i in keep for k in ("control_socket", "log", "config_file")}
        if self.run_dir.is_dir():
            for path in self.run_dir.iterdir():
                if path.name.startswith(f"{tag}-") and path.name not in kept_files:
                    path.unlink(missing_ok=True)
        return removed

    def read_handler(self, inst: Instance, element: str, handler: str) -> str:
        name = f"{element}.{handler}"
        code, message, data = _control(inst.handles["control_socket"], f"READ {name}\r\n".encode())
        if code != 200:
            raise _handler_error(code, message, name)
        return data.decode("utf-8", "replace")

    def write_handler(self, inst: Instance, element: str, handler: str, value: str) -> None:
        name = f"{element}.{handler}"
        data = value.encode()
        code, message, _ = _control(inst.handles["control_socket"],
                                    f"WRITEDATA {name} {len(data)}\r\n".encode() + data)
        if code != 200:
            raise _handler_error(code, message, name)
