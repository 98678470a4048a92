"""The Click runtime: instantiate a flattened router graph and run it on packets.

One thread runs everything, as a single-threaded Click does: tasks (FromDump
reading, pull-driven sinks) run round-robin while any of them makes progress;
when none does, the thread blocks in ``select`` on device sockets, the control
socket and a wake-up pipe, with a timeout from the earliest timer, so an idle
router uses no CPU.
"""

from __future__ import annotations

import heapq
import os
import selectors
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from functools import partial

import clickos_agent.click.elements  # noqa: F401  (registers the element classes)
from clickos_agent.click.args import split_config
from clickos_agent.click.check import (
    check,
    clamp_ports,
    flows,
    parse_port_count,
    processing_codes,
)
from clickos_agent.click.element import ELEMENTS, ArgError, Element, HandlerError, NameScope, configure_order
from clickos_agent.click.elements.common import CLOCK
from clickos_agent.click.graph import RouterGraph

VERSION = "2.1"

Task = Callable[[], bool]


class RouterError(Exception):
    """The configuration cannot run; ``errors`` holds one message per problem."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class NoSuchElement(HandlerError):
    """A handler name whose element does not exist (ControlSocket code 510)."""


class NoSuchHandler(HandlerError):
    """A handler the element does not have (ControlSocket code 511)."""


class PermissionDenied(HandlerError):
    """Reading a write-only handler or writing a read-only one (code 530)."""


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[tuple, tuple] = {}

    def find(self, x: tuple) -> tuple:
        parent = self.parent.setdefault(x, x)
        if parent != x:
            parent = self.parent[x] = self.find(parent)
        return parent

    def union(self, a: tuple, b: tuple) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


# ---------------------------------------------------------------- router

class Router:
    """A running (or runnable) Click router built from a RouterGraph."""

    def __init__(self) -> None:
        self.graph = RouterGraph()
        self.elements: dict[str, Element] = {}
        self.devices: dict[str, str] = {}
        self._tasks: list[Task] = []
        self._sink_tasks: list[Task] = []
        self._timers: list[float] = []
        self._selector = selectors.DefaultSelector()
        self._live_sources = 0
        self.errors = 0         # exceptions raised by elements while running
        self._stop = False
        self._stopped_by_config = False
        self._initialized = False
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, self._drain_wake)
        self.control_socket: object | None = None
        self.global_read: dict[str, Callable[[], str]] = {
            "version": lambda: VERSION,
            "list": self._list_handler,
            "classes": lambda: "".join(f"{c}\n" for c in sorted(ELEMENTS)),
            "config": self._config_handler,
            "flatconfig": self._config_handler,
            "requirements": lambda: "".join(f"{r}\n" for r in self.graph.requirements),
        }
        self.global_write: dict[str, Callable[[str], None]] = {
            "stop": lambda _value: self.please_stop(),
        }

    # ---- construction

    @classmethod
    def from_graph(cls, graph: RouterGraph, devices: Mapping[str, str] | None = None,
                   control_socket: str | None = None) -> Router:
        """Build, configure, wire and initialize a router; raises RouterError."""
        router = cls()
        router.graph = graph
        router.devices = dict(devices or {})
        router._build(graph)
        router._initialize()
        if control_socket is not None:
            from clickos_agent.click.controlsocket import ControlSocketServer
            try:
                router.control_socket = ControlSocketServer(router, control_socket)
            except OSError as e:
                router.cleanup()
                raise RouterError([f"{control_socket}: {e.strerror or e}"]) from None
        return router

    @classmethod
    def from_text(cls, text: str, filename: str = "<config>",
                  devices: Mapping[str, str] | None = None,
                  control_socket: str | None = None) -> Router:
        """Parse and validate a configuration (the toolkit's checker), then build its router."""
        result = check(text, filename)
        if result.errors:
            raise RouterError([f"{p.file}:{p.line}:{p.col}: {p.message}" for p in result.errors])
        return cls.from_graph(result.graph, devices, control_socket)

    def _where(self, name: str) -> str:
        decl = self.graph.elements[name]
        return f"{decl.file}:{decl.line}"

    def _build(self, graph: RouterGraph) -> None:
        errors: list[str] = []
        nin: dict[str, int] = dict.fromkeys(graph.elements, 0)
        nout: dict[str, int] = dict.fromkeys(graph.elements, 0)
        for c in graph.connections:
            if c.src not in graph.elements or c.dst not in graph.elements:
                errors.append(f"{graph.file}:{c.line}: connection names an undeclared element")
                continue
            nout[c.src] = max(nout[c.src], c.src_port + 1)
            nin[c.dst] = max(nin[c.dst], c.dst_port + 1)
        if errors:
            raise RouterError(errors)

        classes: dict[str, type[Element]] = {}
        for name, decl in graph.elements.items():
            cls = ELEMENTS.get(decl.cls)
            spec = parse_port_count(cls.port_count) if cls is not None else None
            if cls is None or spec is None:
                errors.append(f"{self._where(name)}: unknown element class '{decl.cls}'")
                continue
            classes[name] = cls
            used_in, used_out = nin[name], nout[name]
            # as Click: counts come from the ports used, clamped to the port count
            nin[name], nout[name] = clamp_ports(spec, used_in, used_out)
            label = f"{self._where(name)}: '{name} :: {decl.cls}'"
            if used_in > nin[name]:
                errors.append(f"{label} has no input {used_in - 1}")
            if used_out > nout[name]:
                errors.append(f"{label} has no output {used_out - 1}")
        if errors:
            raise RouterError(errors)

        modes = self._resolve_processing(graph, classes, nin, nout, errors)
        self._check_hookup(graph, nin, nout, modes, errors)
        if errors:
            raise RouterError(errors)

        for name, decl in graph.elements.items():
            elem = classes[name](name, nin[name], nout[name])
            elem.config = decl.config
            elem.input_modes = [modes[("i", name, p)] for p in range(nin[name])]
            elem.output_modes = [modes[("o", name, p)] for p in range(nout[name])]
            elem.out = [_unconnected_push] * nout[name]
            elem.pull_in = [_unconnected_pull] * nin[name]
            self.elements[name] = elem
        names = NameScope()
        names.elements.update(self.elements)
        failures: dict[str, str] = {}
        for elem in configure_order(list(self.elements.values())):
            elem.names = names
            try:
                elem.configure(split_config(elem.config))
            except ArgError as e:
                failures[elem.name] = str(e)
        # reported in declaration order, whatever the configure order
        errors += [f"{self._where(name)}: While configuring '{name} :: "
                   f"{self.elements[name].class_name}': {failures[name]}"
                   for name in self.elements if name in failures]
        if errors:
            raise RouterError(errors)
        for name, elem in self.elements.items():
            try:
                elem.resolve()
            except ArgError as e:
                errors.append(f"{self._where(name)}: While initializing '{name} :: "
                              f"{elem.class_name}': {e}")
        if errors:
            raise RouterError(errors)

        # wire in place: push callables may already hold references to the lists
        for c in graph.connections:
            src, dst = self.elements[c.src], self.elements[c.dst]
            if modes[("o", c.src, c.src_port)] == "h":
                src.out[c.src_port] = dst.push_callable(c.dst_port)
            else:
                dst.pull_in[c.dst_port] = src.pull_callable(c.src_port)

    def _resolve_processing(self, graph: RouterGraph, classes: dict[str, type[Element]],
                            nin: dict[str, int], nout: dict[str, int],
                            errors: list[str]) -> dict[tuple, str]:
        """Decide push or pull for every port, propagating through agnostic ports."""
        uf = _UnionFind()
        fixed: dict[tuple, str] = {}
        ports: list[tuple] = []
        for name, cls in classes.items():
            codes = processing_codes(cls.processing, nin[name], nout[name])
            if codes is None:
                errors.append(f"{self._where(name)}: bad processing code")
                continue
            icodes, ocodes = codes
            for kind, side in (("i", icodes), ("o", ocodes)):
                for port, code in enumerate(side):
                    key = (kind, name, port)
                    ports.append(key)
                    uf.find(key)
                    if code != "a":
                        fixed[key] = code
            # an agnostic input shares its mode with the agnostic outputs it flows to
            flow_code = getattr(cls, "flow_code", None)
            for i, code in enumerate(icodes):
                if code == "a":
                    for o in flows(flow_code, i, nout[name]):
                        if ocodes[o] == "a":
                            uf.union(("i", name, i), ("o", name, o))
        for c in graph.connections:
            uf.union(("o", c.src, c.src_port), ("i", c.dst, c.dst_port))
        component_mode: dict[tuple, str] = {}
        for key, code in fixed.items():
            root = uf.find(key)
            if component_mode.setdefault(root, code) != code:
                component_mode[root] = "!"
        modes: dict[tuple, str] = {}
        for key in ports:
            mode = component_mode.get(uf.find(key), "h")
            if mode == "!":
                # the conflict is reported at the connection that joins push to pull
                mode = fixed.get(key, "h")
            modes[key] = mode
        for c in graph.connections:
            smode = modes[("o", c.src, c.src_port)]
            dmode = modes[("i", c.dst, c.dst_port)]
            if smode != dmode:
                errors.append(f"{graph.file}:{c.line}: '{c.src}' {'push' if smode == 'h' else 'pull'}"
                              f" output {c.src_port} connected to '{c.dst}' "
                              f"{'push' if dmode == 'h' else 'pull'} input {c.dst_port}")
        return modes

    def _check_hookup(self, graph: RouterGraph, nin: dict[str, int], nout: dict[str, int],
                      modes: dict[tuple, str], errors: list[str]) -> None:
        used_out: dict[tuple, int] = {}
        used_in: dict[tuple, int] = {}
        for c in graph.connections:
            used_out[(c.src, c.src_port)] = used_out.get((c.src, c.src_port), 0) + 1
            used_in[(c.dst, c.dst_port)] = used_in.get((c.dst, c.dst_port), 0) + 1
        for name in graph.elements:
            for port in range(nout[name]):
                n = used_out.get((name, port), 0)
                if n == 0:
                    errors.append(f"{self._where(name)}: '{name}' output {port} unused")
                elif n > 1 and modes[("o", name, port)] == "h":
                    errors.append(f"{self._where(name)}: illegal reuse of '{name}' push output {port}")
            for port in range(nin[name]):
                n = used_in.get((name, port), 0)
                if n == 0:
                    errors.append(f"{self._where(name)}: '{name}' input {port} unused")
                elif n > 1 and modes[("i", name, port)] == "l":
                    errors.append(f"{self._where(name)}: illegal reuse of '{name}' pull input {port}")

    def _initialize(self) -> None:
        errors: list[str] = []
        for name, elem in self.elements.items():
            try:
                elem.initialize(self)
            except (ArgError, HandlerError, OSError) as e:
                errors.append(f"{self._where(name)}: While initializing '{name} :: "
                              f"{elem.class_name}': {e}")
        if errors:
            self.cleanup()
            raise RouterError(errors)
        self._initialized = True

    # ---- services for elements

    def device(self, name: str) -> str:
        """The Linux interface for a ClickOS device name or number."""
        return self.devices.get(name, name)

    def add_task(self, task: Task, source: bool = False) -> None:
        """Run ``task`` whenever the router is busy; it returns True if it did work.

        Tasks are added while elements initialize, never while the router runs.
        Tasks of sources (FromDump) are not run again once a configuration
        stops the router; the others (pulling sinks) drain what is queued.
        """
        self._tasks.append(task)
        if not source:
            self._sink_tasks.append(task)

    def task_count(self) -> int:
        return len(self._tasks)

    def add_live_source(self) -> None:
        """Count a source that may still emit packets (an active FromDump, any FromDevice).

        ``run(until_done=True)`` returns once no source is live and nothing moves;
        a source calls ``source_done`` when it can emit no more.
        """
        self._live_sources += 1

    def source_done(self) -> None:
        self._live_sources -= 1

    def add_reader(self, fd: int, callback: Callable[[], object]) -> None:
        """Call ``callback`` when ``fd`` is readable (device and control sockets)."""
        self._selector.register(fd, selectors.EVENT_READ, callback)

    def remove_reader(self, fd: int) -> None:
        try:
            self._selector.unregister(fd)
        except (KeyError, ValueError):
            pass

    def wake_at(self, when: float) -> None:
        """Make an idle router run its tasks again at ``when`` (time.monotonic)."""
        heapq.heappush(self._timers, when)

    def please_stop(self) -> None:
        """Stop at the next opportunity, as a configuration's ``stop`` does."""
        self._stopped_by_config = True
        self._stop = True

    def stop(self) -> None:
        """Stop the run loop; safe from any thread."""
        self._stop = True
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    # ---- running

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except (BlockingIOError, OSError):
            pass

    def _poll(self, timeout: float | None) -> bool:
        """Wait for readable fds (at most ``timeout`` s) and serve them; True if any."""
        events = self._selector.select(timeout)
        CLOCK.tick()
        for key, _ in events:
            key.data()
        return bool(events)

    def _next_timeout(self) -> float | None:
        timers = self._timers
        if not timers:
            return None
        now = time.monotonic()
        while timers and timers[0] <= now:
            heapq.heappop(timers)
        return max(0.0, timers[0] - now) if timers else 0.0

    def run(self, until_done: bool = True) -> None:
        """Run until ``stop()``, a configuration's stop, or (``until_done``) quiescence.

        Quiescence: no live source remains, no task made progress and no timer
        is pending.  A router with a FromDevice is never quiescent.
        """
        if not self._initialized:
            raise RuntimeError("router is not initialized")
        tasks = self._tasks
        tick = CLOCK.tick
        passes = 0
        while not self._stop:
            try:
                tick()
                worked = False
                for task in tasks:
                    if task():
                        worked = True
                if worked:
                    passes += 1
                    # keep the control socket and devices served while busy
                    if passes & 15 == 0:
                        self._poll(0)
                    continue
                if until_done and self._live_sources <= 0 and not self._timers:
                    break
                self._poll(self._next_timeout())
            except Exception:  # noqa: BLE001 - one bad packet must not kill an instance
                self._report_error()
        if self._stopped_by_config:
            self._drain_sinks()

    def _report_error(self) -> None:
        """Log an element's exception (the packet in flight is lost) and keep running."""
        self.errors += 1
        if self.errors <= 10 or self.errors % 1000 == 0:
            print(f"click runtime: error {self.errors} while forwarding (packet dropped):",
                  file=sys.stderr)
            traceback.print_exc(file=sys.stderr)

    def _drain_sinks(self) -> None:
        """Let pull-driven sinks empty queues after a stop, as Click's last task round does."""
        for _ in range(1 << 20):
            try:
                if not any([task() for task in self._sink_tasks]):
                    return
            except Exception:  # noqa: BLE001 - as in run()
                self._report_error()

    def cleanup(self) -> None:
        """Release every element's resources (close dump files, sockets)."""
        for elem in self.elements.values():
            try:
                elem.cleanup()
            except OSError:
                pass
        if self.control_socket is not None:
            self.control_socket.close()  # type: ignore[attr-defined]
            self.control_socket = None
        self.remove_reader(self._wake_r)
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    # ---- handlers

    def _split_handler(self, full: str) -> tuple[Element | None, str]:
        ename, dot, hname = full.partition(".")
        if not dot:
            return None, full
        elem = self.elements.get(ename)
        if elem is None and ename.isdigit() and 0 < int(ename) <= len(self.elements):
            elem = list(self.elements.values())[int(ename) - 1]
        if elem is None:
            raise NoSuchElement(f"No element named '{ename}'")
        return elem, hname

    def read_handlers_of(self, elem: Element | None) -> dict[str, Callable[[], str]]:
        """Read handlers of ``elem`` (the router's own for None); parameterised ones get ""."""
        if elem is None:
            return self.global_read
        with_param = {name: partial(handler, "")
                      for name, handler in elem.param_read_handlers.items()}
        return {**_default_read_handlers(self, elem), **with_param, **elem.read_handlers}

    def write_handlers_of(self, elem: Element | None) -> dict[str, Callable[[str], None]]:
        return self.global_write if elem is None else elem.write_handlers

    def read_handler(self, full: str, param: str = "") -> str:
        """Call a read handler ``elem.handler`` (or a global one); raises HandlerError.

        ``param`` goes to handlers that take one (ARPResponder's ``lookup``).
        """
        elem, hname = self._split_handler(full)
        if elem is not None and hname in elem.param_read_handlers:
            try:
                return elem.param_read_handlers[hname](param)
            except ArgError as e:
                raise HandlerError(str(e)) from e
        handler = self.read_handlers_of(elem).get(hname)
        if handler is None:
            if hname in self.write_handlers_of(elem):
                raise PermissionDenied(f"Handler '{full}' write-only")
            raise NoSuchHandler(f"No handler named '{full}'")
        return handler()

    def write_handler(self, full: str, value: str = "") -> None:
        """Call a write handler ``elem.handler`` with ``value``; raises HandlerError."""
        elem, hname = self._split_handler(full)
        handler = self.write_handlers_of(elem).get(hname)
        if handler is None:
            if hname in self.read_handlers_of(elem):
                raise PermissionDenied(f"Handler '{full}' read-only")
            raise NoSuchHandler(f"No handler named '{full}'")
        try:
            handler(value)
        except ArgError as e:
            raise HandlerError(str(e)) from e

    def call_write(self, call: str, caller: str) -> None:
        """Run an element's handler call ``HANDLER [VALUE]`` (COUNT_CALL, END_CALL);
        a failure is reported on stderr under the caller's name, as Click does."""
        handler, _, value = call.partition(" ")
        try:
            self.write_handler(handler, value.strip())
        except HandlerError as e:
            print(f"{caller}: {e}", file=sys.stderr)

    def handler_names(self, elem: Element | None) -> list[tuple[str, str]]:
        """(name, "r"/"w"/"rw") for each handler, as the ``handlers`` handler lists them."""
        reads = self.read_handlers_of(elem)
        writes = self.write_handlers_of(elem)
        names = sorted(set(reads) | set(writes))
        return [(n, ("r" if n in reads else "") + ("w" if n in writes else "")) for n in names]

    def _list_handler(self) -> str:
        return f"{len(self.elements)}\n" + "".join(f"{n}\n" for n in self.elements)

    def _config_handler(self) -> str:
        lines = [f"{d.name} :: {d.cls}({d.config});\n" for d in self.graph.elements.values()]
        lines += [f"{c.src} [{c.src_port}] -> [{c.dst_port}] {c.dst};\n"
                  for c in self.graph.connections]
        return "".join(lines)


def _default_read_handlers(router: Router, elem: Element) -> dict[str, Callable[[], str]]:
    """Handlers every Click element has: name, class, config, ports, handlers."""
    def ports() -> str:
        """Click's element_ports_string: per port, push/pull ("~" if agnostic), a
        packet count ("-": this Click counts none) and the connections, ordered as
        Click sorts them (by destination, then source, in element order)."""
        codes = processing_codes(elem.processing, elem.ninputs, elem.noutputs)
        in_codes, out_codes = codes if codes else ([], [])
        order = {name: k for k, name in enumerate(router.elements)}
        conns = sorted(router.graph.connections,
                       key=lambda c: (order[c.dst], c.dst_port, order[c.src], c.src_port))

        def mode(m: str, code: str) -> str:
            return ("push" if m == "h" else "pull") + ("~" if code == "a" else "")
        lines = [f"{elem.ninputs} input{'s' if elem.ninputs != 1 else ''}\n"]
        for i, m in enumerate(elem.input_modes):
            peers = ", ".join(dict.fromkeys(f"{c.src} [{c.src_port}]" for c in conns
                                            if c.dst == elem.name and c.dst_port == i))
            lines.append(f"{mode(m, in_codes[i])}\t-\t{peers}\n")
        lines.append(f"{elem.noutputs} output{'s' if elem.noutputs != 1 else ''}\n")
        for i, m in enumerate(elem.output_modes):
            peers = ", ".join(dict.fromkeys(f"[{c.dst_port}] {c.dst}" for c in conns
                                            if c.src == elem.name and c.src_port == i))
            lines.append(f"{mode(m, out_codes[i])}\t-\t{peers}\n")
        return "".join(lines)

    def handlers() -> str:
        return "".join(f"{n}\t{mode}\n" for n, mode in router.handler_names(elem))
    return {"name": lambda: elem.name, "class": lambda: elem.class_name,
            "config": lambda: elem.config, "ports": ports, "handlers": handlers}


def _unconnected_push(packet: object) -> None:
    """An output the checker let through unconnected: drop, as Click would refuse to start."""


def _unconnected_pull() -> None:
    return None


def run_in_thread(router: Router, until_done: bool = False) -> threading.Thread:
    """Run ``router`` in a daemon thread (tests, embedding); stop it with ``router.stop()``."""
    thread = threading.Thread(target=router.run, kwargs={"until_done": until_done}, daemon=True)
    thread.start()
    return thread
