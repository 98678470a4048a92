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
    """Names that elements define for one another while configuring (Click's NameInfo).

    A name defined by element ``c/x`` lives in compound ``c/``; a lookup from
    element ``c/d/y`` tries ``c/d/``, then ``c/``, then the top level, so a
    compound sees its own and its enclosing definitions, never a sibling's.
    """

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], object] = {}

    @staticmethod
    def _prefix(context: str) -> str:
        return context[:context.rfind("/") + 1]

    def define(self, kind: str, context: str, name: str, value: object) -> None:
        self._values[(kind, self._prefix(context) + name)] = value

    def lookup(self, kind: str, context: str, name: str) -> object | None:
        prefix = self._prefix(context)
        while True:
            value = self._values.get((kind, prefix + name))
            if value is not None or not prefix:
                return value
            prefix = prefix[:prefix.rfind("/", 0, len(prefix) - 1) + 1]


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
