"""Classifier, IPClassifier and IPFilter with Click's pattern semantics.

Patterns are compiled at configure time into one generated Python function
per element (see ``ipexpr`` for the IP expression language), so the
per-packet cost is a handful of byte comparisons.  As in Click, a packet that
matches no pattern (or an IPFilter ``deny``/``drop`` pattern) is dropped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from clickos_agent.click import ipexpr
from clickos_agent.click.element import ArgError, Element, HandlerError, element_class

if TYPE_CHECKING:
    from clickos_agent.click.packet import Packet

_SPACES = " \t\n\r\f\v"
_HEX = "0123456789abcdefABCDEF"


# ---------------------------------------------------------------- Classifier patterns

Clause = tuple[bool, list[tuple[int, int, int]]]   # (negated, [(offset, mask, value) per byte])


def _nibble(c: str) -> tuple[int, int]:
    """(value, mask) of one pattern hex digit; ``?`` matches anything."""
    return (0, 0) if c == "?" else (int(c, 16), 0xF)


def parse_classifier_pattern(slot: int, s: str, errors: list[str]) -> list[Clause]:
    """One Classifier pattern: clauses ``[!]OFFSET/VALUE[%MASK]`` (Click's parse_program)."""
    clauses: list[Clause] = []
    n = len(s)
    i = 1 if s == "-" else 0
    while i < n:
        while i < n and s[i] in _SPACES:
            i += 1
        if i >= n:
            break
        negated = False
        if s[i] == "!":
            negated = True
            i += 1
            while i < n and s[i] in _SPACES:
                i += 1
        if i >= n or not ("0" <= s[i] <= "9"):
            errors.append(f"pattern {slot}: expected a digit")
            break
        start = i
        while i < n and "0" <= s[i] <= "9":
            i += 1
        offset = int(s[start:i])
        if i >= n or s[i] != "/":
            errors.append(f"pattern {slot}: expected '/'")
            break
        i += 1
        value_pos = i
        while i < n and (s[i] in _HEX or s[i] == "?"):
            i += 1
        value = s[value_pos:i]
        mask: str | None = None
        if i < n and s[i] == "%":
            i += 1
            mask_pos = i
            while i < n and (s[i] in _HEX or s[i] == "?"):
                i += 1
            mask = s[mask_pos:i]

        # length checks: each is an error (Click reports them all and goes on)
        nerrors = len(errors)
        if len(value) < 2:
            errors.append(f"pattern {slot}: value has less than 2 hex digits")
            value = ""
            mask = "" if mask is not None else None
        if len(value) % 2:
            errors.append(f"pattern {slot}: value has odd number of hex digits")
            value = value[:-1]
            mask = mask[:-1] if mask is not None else None
        if mask is not None and len(mask) != len(value):
            too_many = len(mask) > len(value)
            errors.append(f"pattern {slot}: mask has too {'many' if too_many else 'few'} hex digits")
            if too_many:
                mask = mask[:len(value)]
            else:
                value = value[:len(mask)]

        nbytes: list[tuple[int, int, int]] = []
        if len(errors) > nerrors:
            continue        # the configuration is refused; no need for the bytes
        for k in range(0, len(value), 2):
            hv, hm = _nibble(value[k])
            lv, lm = _nibble(value[k + 1])
            v, m = hv << 4 | lv, hm << 4 | lm
            if mask is not None:
                mhv, mhm = _nibble(mask[k])
                mlv, mlm = _nibble(mask[k + 1])
                m &= (mhv << 4 | mlv) & (mhm << 4 | mlm)
            if m:
                nbytes.append((offset + k // 2, m, v & m))
        clauses.append((negated, nbytes))
    return clauses


def _clause_source(clause: Clause) -> str:
    """A clause holds iff the packet has every masked byte and each matches.

    Click tests words; a word the packet is too short for fails, and a
    negated clause then succeeds, which is what ``not (n >= need and ...)`` says.
    """
    negated, nbytes = clause
    if not nbytes:
        test = "True"
    else:
        need = max(off for off, _, _ in nbytes) + 1
        parts = [f"n>={need}"]
        for off, m, v in nbytes:
            byte = f"b[o+{off}]" if m == 0xFF else f"(b[o+{off}]&{m})"
            parts.append(f"{byte}=={v}")
        test = "(" + " and ".join(parts) + ")"
    return f"(not {test})" if negated else test


def compile_classifier(patterns: list[list[Clause]]) -> Callable[[bytearray, int], int]:
    """One function ``match(b, o)``: the first matching pattern's index, or -1."""
    lines = ["def match(b, o):", "    n = len(b) - o"]
    for slot, clauses in enumerate(patterns):
        tests = [_clause_source(c) for c in clauses if _clause_source(c) != "True"]
        if not tests:
            lines.append(f"    return {slot}")
            break
        lines.append(f"    if {' and '.join(tests)}: return {slot}")
    else:
        lines.append("    return -1")
    namespace: dict[str, object] = {}
    exec(compile("\n".join(lines), "<classifier>", "exec"), namespace)  # noqa: S102 - our own generated code
    match = namespace["match"]
    assert callable(match)
    return match


# ---------------------------------------------------------------- elements

class _Dispatcher(Element):
    """Shared push path: ``_match(packet) -> output`` then push or drop."""

    port_count = "1/-"
    processing = "h/h"

    def _match(self, packet: Packet) -> int:
        raise NotImplementedError

    def push(self, port: int, packet: Packet) -> None:
        out = self._match(packet)
        if out >= 0:
            self.out[out](packet)


@element_class
class Classifier(_Dispatcher):
    """Click's Classifier: byte patterns on the packet data, one per output."""

    class_name = "Classifier"
    live_reconfigure = True

    def configure(self, args: list[str]) -> None:
        if len(args) != self.noutputs:
            raise ArgError(f"need {self.noutputs} arguments, one per output port")
        errors: list[str] = []
        patterns = [parse_classifier_pattern(slot, arg, errors) for slot, arg in enumerate(args)]
        if errors:
            raise ArgError("; ".join(errors))
        self._fn = compile_classifier(patterns)

    def _match(self, packet: Packet) -> int:
        return self._fn(packet.buf, packet.off)

    def push_callable(self, port: int) -> Callable[[Packet], None]:
        fn, outs = self._fn, self.out

        def push(packet: Packet) -> None:
            out = fn(packet.buf, packet.off)
            if out >= 0:    # outputs are checked at configure; -1 drops
                outs[out](packet)
        return push


@element_class
class IPFilter(_Dispatcher):
    """Click's IPFilter: ``ACTION EXPR`` rules, first match wins; ``deny``/``drop`` drop."""

    class_name = "IPFilter"
    live_reconfigure = True

    def configure(self, args: list[str]) -> None:
        self._set_program(ipexpr.parse_patterns(args, self.noutputs))

    def _set_program(self, patterns: list[tuple[int, ipexpr.Node]]) -> None:
        self._fn = ipexpr.compile_ip_program(patterns)

    def _match(self, packet: Packet) -> int:
        ip_off = packet.ip_off if packet.ip_off is not None else packet.off
        return self._fn(packet.buf, ip_off, packet)

    def push_callable(self, port: int) -> Callable[[Packet], None]:
        el, outs = self, self.out   # el._fn, not a copy: patterns can be rewritten live

        def push(packet: Packet) -> None:
            ip_off = packet.ip_off
            out = el._fn(packet.buf, packet.off if ip_off is None else ip_off, packet)
            if out >= 0:    # outputs are checked at configure; -1 drops
                outs[out](packet)
        return push


@element_class
class IPClassifier(IPFilter):
    """Click's IPClassifier: one IP expression per output (IPFilter with ``N`` actions)."""

    class_name = "IPClassifier"
    live_reconfigure = True

    def configure(self, args: list[str]) -> None:
        if len(args) != self.noutputs:
            raise ArgError(f"need {self.noutputs} arguments, one per output port")
        self._set_program(ipexpr.parse_patterns([f"{i} {a}" for i, a in enumerate(args)],
                                                self.noutputs))
        self._args = list(args)
        for i in range(self.noutputs):
            self.read_handlers[f"pattern{i}"] = lambda i=i: self._args[i]
            self.write_handlers[f"pattern{i}"] = lambda text, i=i: self._write_pattern(i, text)

    def _write_pattern(self, i: int, text: str) -> None:
        """Replace pattern ``i`` (Click's live reconfiguration; a bad one changes nothing)."""
        args = self._args[:i] + [text.strip()] + self._args[i + 1:]
        try:
            patterns = ipexpr.parse_patterns([f"{k} {a}" for k, a in enumerate(args)], self.noutputs)
        except ArgError as e:
            raise HandlerError(str(e)) from None
        self._set_program(patterns)
        self._args = args
