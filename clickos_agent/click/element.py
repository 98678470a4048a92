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

At run time the router wires ``self.out[i]`` (a callable taking a Packet: the
push into the element downstream of output i) and ``self.pull_in[i]`` (a
callable returning the next Packet or None from upstream of input i).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from clickos_agent.click.packet import Packet


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


class Element:
    class_name: ClassVar[str] = "Element"
    port_count: ClassVar[str] = "1/1"
    processing: ClassVar[str] = "a/a"

    def __init__(self, name: str, ninputs: int, noutputs: int) -> None:
        self.name = name
        self.ninputs = ninputs
        self.noutputs = noutputs
        self.config = ""
        self.out: list[Callable[[Packet], None]] = []
        self.pull_in: list[Callable[[], Packet | None]] = []
        self.read_handlers: dict[str, ReadHandler] = {}
        self.write_handlers: dict[str, WriteHandler] = {}

    def configure(self, args: list[str]) -> None:
        """Parse configuration arguments; the default takes none."""
        if args:
            raise ArgError("too many arguments")

    def initialize(self, router: object) -> None:
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
