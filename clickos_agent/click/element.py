"""The element contract shared by the validator and the runtime.

An element class declares, as Click's C++ elements do:
- ``port_count``: Click's PORT_COUNT syntax, ``"IN/OUT"`` where each side is
  ``N``, ``N-M``, ``N-`` (N or more) or ``-`` (any); a bare ``"N"`` means N/N.
  Actual counts come from the connections (highest port used + 1) and must fit.
- ``processing``: Click's PROCESSING codes, ``"h"`` push, ``"l"`` pull, ``"a"``
  agnostic, per side and per port (``"a/a"``, ``"h/l"``, ``"a/ah"``: the last
  code repeats for higher ports).
- ``configure(args)``: parse the configuration arguments (already split by
  ``args.split_config``), raising ``ArgError`` with Click's wording on a bad
  argument.  ``self.ninputs``/``self.noutputs`` are known by then, as in Click,
  so an element like Classifier can require one pattern per output.
  Elements configure in ``configure_phase`` order, then file order, sharing
  ``self.names`` (a NameScope): an element can define names there for later
  ones to resolve (IPRewriterPatterns for IPRewriter), so a dangling
  reference fails at configure time, as in Click.

At run time the router wires ``self.out[i]`` (a callable taking a Packet: the
push into the element downstream of output i) and ``self.pull_in[i]`` (a
callable returning the next Packet or None from upstream of input i).
Before ``configure`` it sets ``input_modes``/``output_modes`` (``"h"`` or
``"l"`` per port, agnostic ports resolved as Click does), so an element can ask
``input_is_pull(0)``.  Wiring asks the downstream element for
``push_callable(port)`` and the upstream one for ``pull_callable(port)``; an
element may override them to hand out a specialised bound method (the fast
path: no port argument, no per-packet dispatch).  ``self.out`` is filled in
place, so a push callable may hold the list before wiring ends.

``initialize(router)`` runs once everything is wired; an element takes what it
needs from the Router there: ``add_task(fn)`` (``fn() -> bool``, True if it
did work; run round-robin while any task works), ``add_reader(fd, fn)``
(called when ``fd`` is readable), ``wake_at(monotonic_time)``,
``add_live_source()``/``source_done()``, ``please_stop()``, ``device(name)``
and the handler calls.  Handlers are plain callables: ``read_handlers[name]()
-> str``, ``write_handlers[name](value)`` (raising HandlerError or ArgError),
and ``param_read_handlers[name](param) -> str`` for reads that take a
parameter.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from clickos_agent.click.packet import Packet
    from clickos_agent.click.runtime import Router


class ArgError(Exception):
    """A bad configuration argument; the message is what Click would say."""


class HandlerError(Exception):
    """A handler read or write that failed; the message goes back to the caller."""


ReadHandler = Callable[[], str]
WriteHandler = Callable[[str], None]

ELEMENTS: dict[str, type[Element]] = {}


def element_class(cls: type[Element]) -> type[Element]:
    """Class decorator: register an element class under its Click class name."""
    ELEMENTS[cls.class_name] = cls
    return cls


class NameScope:
    """Names that elements define for one another while configuring (Click's NameInfo),
    and the router's elements, which ``find`` and handler calls resolve.

    A name defined by element ``c/x`` lives in compound ``c/``; a lookup from
    element ``c/d/y`` tries ``c/d/``, then ``c/``, then the top level, so a
    compound sees its own and its enclosing definitions, never a sibling's.
    Element names resolve the same way (Click's Router::find).
    """

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], object] = {}
        self.elements: dict[str, Element] = {}

    @staticmethod
    def _prefixes(context: str) -> list[str]:
        """``c/d/y`` -> ``["c/d/", "c/", ""]``."""
        parts = context.split("/")[:-1]
        return ["".join(p + "/" for p in parts[:k]) for k in range(len(parts), -1, -1)]

    def define(self, kind: str, context: str, name: str, value: object) -> None:
        self._values[(kind, self._prefixes(context)[0] + name)] = value

    def lookup(self, kind: str, context: str, name: str) -> object | None:
        for prefix in self._prefixes(context):
            value = self._values.get((kind, prefix + name))
            if value is not None:
                return value
        return None

    def find(self, context: str, name: str) -> Element | None:
        """The element ``name`` as seen from element ``context``, or None."""
        for prefix in self._prefixes(context):
            element = self.elements.get(prefix + name)
            if element is not None:
                return element
        return None

    def check_write_call(self, context: Element, call: str) -> None:
        """Raise ArgError unless ``call`` (``[ELEMENT.]HANDLER [VALUE]``) names a write
        handler, resolved as Click's HandlerCall does at initialize."""
        from clickos_agent.click.args import parse_string, split_words
        words = split_words(call)
        try:
            text = parse_string(words[0]) if words else ""
        except ArgError:
            text = ""
        if not text or text.endswith("."):
            raise ArgError("syntax error")
        dot = text.find(".")
        element: Element | None = None
        hname = text
        if dot == 0:
            hname = text[1:]
        elif dot > 0:
            element = self.find(context.name, text[:dot])
            if element is not None:
                hname = text[dot + 1:]
        if element is None and dot != 0:
            # a bare name may be the caller's own handler, else a global one
            if (text in context.read_handlers or text in context.write_handlers
                    or text in DEFAULT_HANDLERS):
                element = context
            elif dot > 0 and text not in GLOBAL_HANDLERS:
                raise ArgError(f"no element named '{text[:dot]}'")
        if element is None:
            writable = "w" in GLOBAL_HANDLERS.get(hname, "")
        else:
            writable = hname in element.write_handlers or (
                hname == "config" and element.live_reconfigure)
        if not writable:
            shown = hname if element is None else f"{element.name}.{hname}"
            raise ArgError(f"no '{shown}' write handler")


# the router's own handlers in Click 2.1 (user level) and whether they read or write
GLOBAL_HANDLERS = {"version": "r", "driver": "r", "config": "r", "flatconfig": "r",
                   "requirements": "r", "handlers": "r", "list": "r", "classes": "r",
                   "packages": "r", "stop": "w", "timewarp": "rw"}
# every element's own read handlers in Click
DEFAULT_HANDLERS = ("name", "class", "config", "ports", "handlers")


# Click's configure phases: an element that defines names for others configures first
CONFIGURE_PHASE_INFO = 20
CONFIGURE_PHASE_DEFAULT = 100


def configure_order(elements: list[Element]) -> list[Element]:
    """``elements`` in the order Click configures them (phase, then declaration order)."""
    return sorted(elements, key=lambda e: e.configure_phase)


class Element:
    class_name: ClassVar[str] = "Element"
    port_count: ClassVar[str] = "1/1"
    processing: ClassVar[str] = "a/a"
    configure_phase: ClassVar[int] = CONFIGURE_PHASE_DEFAULT
    # Click lets a write to ``config`` reconfigure the element live
    live_reconfigure: ClassVar[bool] = False

    def __init__(self, name: str, ninputs: int, noutputs: int) -> None:
        self.name = name
        self.ninputs = ninputs
        self.noutputs = noutputs
        self.config = ""
        self.out: list[Callable[[Packet], None]] = []
        self.pull_in: list[Callable[[], Packet | None]] = []
        self.read_handlers: dict[str, ReadHandler] = {}
        self.write_handlers: dict[str, WriteHandler] = {}
        # read handlers that take a parameter (``READ elem.lookup 10.0.0.1``)
        self.param_read_handlers: dict[str, Callable[[str], str]] = {}
        self.input_modes: list[str] = ["h"] * ninputs
        self.output_modes: list[str] = ["h"] * noutputs
        # shared by every element of one router (the checker and the runtime set it)
        self.names = NameScope()

    def input_is_pull(self, port: int) -> bool:
        return self.input_modes[port] == "l"

    def output_is_push(self, port: int) -> bool:
        return self.output_modes[port] == "h"

    def checked_push(self, port: int, packet: Packet) -> None:
        """Push out of ``port`` if the element has it, else drop (Click's checked_output_push)."""
        if port < len(self.out):
            self.out[port](packet)

    def push_callable(self, port: int) -> Callable[[Packet], None]:
        """What an upstream element calls to push into input ``port``."""
        if type(self).push is Element.push:
            # 1-in/1-out agnostic element: apply simple_action without the port dispatch
            action = self.simple_action
            out = self.out

            def push_simple(packet: Packet) -> None:
                result = action(packet)
                if result is not None:
                    out[0](result)
            return push_simple
        return partial(self.push, port)

    def pull_callable(self, port: int) -> Callable[[], Packet | None]:
        """What a downstream element calls to pull from output ``port``."""
        return partial(self.pull, port)

    def configure(self, args: list[str]) -> None:
        """Parse configuration arguments; the default takes none."""
        if args:
            raise ArgError("too many arguments")

    def resolve(self) -> None:
        """Check references to other elements once all are configured (handler calls,
        element names), raising ArgError as Click's initialize would; ``self.names``
        holds them.  Runs in the checker too, unlike ``initialize``."""

    def initialize(self, router: Router) -> None:
        """Called once the graph is wired, before packets flow (open devices, files)."""

    def cleanup(self) -> None:
        """Release what initialize took."""

    def push(self, port: int, packet: Packet) -> None:
        """A packet pushed into input ``port``; agnostic elements forward simple_action."""
        result = self.simple_action(packet)
        if result is not None:
            self.out[0](result)

    def pull(self, port: int) -> Packet | None:
        """Output ``port`` is pulled; agnostic elements pull upstream and apply simple_action."""
        while True:
            packet = self.pull_in[0]()
            if packet is None:
                return None
            result = self.simple_action(packet)
            if result is not None:
                return result

    def simple_action(self, packet: Packet) -> Packet | None:
        """One packet in, one (or None: dropped) out, for 1/1 agnostic elements."""
        return packet
