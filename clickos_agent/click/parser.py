"""Parser for the Click configuration language, producing a flat RouterGraph.

The decisions follow Click 2.1's lib/lexer.cc (read for semantics, not
copied): what a token is, when ``x`` is an anonymous element versus a
reference, how ``a, b :: C(cfg)`` spreads the class, port lists and ``=>``,
element groups ``( ... )``, compound classes with formals, ``||`` overloads
and ``...`` extensions, ``define``, ``require``, anonymous names ``Class@N``,
and the flattening of compounds into ``outer/inner`` names joined through
their ``input``/``output`` pseudo-elements.  Errors carry line and column;
all of them are collected before ``parse`` raises one ConfigError.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field

from chains.errors import ConfigError, Problem
from clickos_agent.click.args import keyword_of, parse_int, split_config, split_words
from clickos_agent.click.element import ArgError, Element
from clickos_agent.click.graph import Connection, ElementDecl, RouterGraph

MAX_DEPTH = 50          # Click's limit on compound and group nesting
MAX_EXPANSION = 100     # compounds instantiated inside compounds
_WORD_EXTRA = "_@"


def _is_word_char(c: str) -> bool:
    return (c.isascii() and c.isalnum()) or c in _WORD_EXTRA


def _is_space(c: str) -> bool:
    return c in " \t\n\r\f\v"


# ---------------------------------------------------------------- tokens

KEYWORDS = ("elementclass", "require", "provide", "define")


@dataclass(frozen=True)
class Token:
    kind: str       # "ident", "var", "eof", a keyword, an operator, or the character itself
    text: str
    line: int
    col: int


class _Lexer:
    """Splits the text into tokens, tracking line and column (Click tracks lines)."""

    def __init__(self, text: str, filename: str, problems: list[Problem]) -> None:
        self.text = text
        self.filename = filename
        self.problems = problems
        self.pos = 0
        self.line = 1
        self.line_start = 0
        self.pushed: list[Token] = []

    def error(self, message: str, line: int | None = None, col: int | None = None) -> None:
        self.problems.append(Problem(self.filename, line or self.line,
                                     col or self.pos - self.line_start + 1, message))

    def _newline_at(self, i: int) -> int:
        """If a newline starts at ``i``, count it and return the index after it."""
        if self.text[i] == "\r" and self.text[i + 1:i + 2] == "\n":
            i += 1
        self.line += 1
        self.line_start = i + 1
        return i + 1

    def _skip_to(self, i: int, end: int) -> None:
        """Advance from ``i`` to ``end``, counting the newlines in between."""
        while i < end:
            i = self._newline_at(i) if self.text[i] in "\n\r" else i + 1

    def _skip_line(self, i: int) -> int:
        end = len(self.text)
        while i < end and self.text[i] not in "\n\r":
            i += 1
        return self._newline_at(i) if i < end else end

    def _skip_block_comment(self, i: int) -> int:
        close = self.text.find("*/", i)
        end = len(self.text) if close < 0 else close + 2
        self._skip_to(i, end)
        return end

    def _skip_quote(self, i: int, quote: str) -> int:
        """``i`` is just after the opening quote; returns the index after the closing one."""
        text, end = self.text, len(self.text)
        while i < end:
            c = text[i]
            if c in "\n\r":
                i = self._newline_at(i)
            elif c == "\\" and quote == '"' and i + 1 < end:
                if text[i + 1] == "<":
                    i = self._skip_angle(i + 2)
                elif text[i + 1] in "\n\r":
                    i = self._newline_at(i + 1)
                else:
                    i += 2
            elif c == quote:
                return i + 1
            else:
                i += 1
        return end

    def _skip_angle(self, i: int) -> int:
        """Skip a ``\\<hex>`` body; ``i`` is after ``\\<``."""
        text, end = self.text, len(self.text)
        while i < end:
            c = text[i]
            if c in "\n\r":
                i = self._newline_at(i)
            elif c == "/" and text[i + 1:i + 2] == "/":
                i = self._skip_line(i + 2)
            elif c == "/" and text[i + 1:i + 2] == "*":
                i = self._skip_block_comment(i + 2)
            elif c == ">":
                return i + 1
            else:
                i += 1
        return end

    def _line_directive(self, i: int) -> int:
        """``# LINE "FILE"`` at the start of a line resets the position, as cpp output does."""
        text, end = self.text, len(self.text)
        i += 1
        while i < end and text[i] in " \t":
            i += 1
        if text.startswith("line", i) and text[i + 4:i + 5] in (" ", "\t"):
            i += 4
            while i < end and text[i] in " \t":
                i += 1
        if i >= end or not text[i].isdigit() or not text[i].isascii():
            self.error("unknown preprocessor directive")
            return self._skip_line(i)
        start = i
        while i < end and text[i].isascii() and text[i].isdigit():
            i += 1
        number = int(text[start:i])
        while i < end and text[i] in " \t":
            i += 1
        if i < end and text[i] == '"':
            close = i + 1
            while close < end and text[close] not in '"\n\r':
                close += 2 if text[close] == "\\" and close + 1 < end else 1
            self.filename = text[i + 1:close] or self.filename
            i = close
        i = self._skip_line(i)
        self.line = number
        return i

    def _at_line_start(self, i: int) -> bool:
        return i == 0 or self.text[i - 1] in "\n\r"

    def lex(self) -> Token:
        if self.pushed:
            return self.pushed.pop()
        return self._next()

    def unlex(self, token: Token) -> None:
        self.pushed.append(token)

    def _next(self) -> Token:
        text, end = self.text, len(self.text)
        i = self.pos
        while True:
            while i < end and _is_space(text[i]):
                i = self._newline_at(i) if text[i] in "\n\r" else i + 1
            if i >= end:
                self.pos = end
                return Token("eof", "", self.line, end - self.line_start + 1)
            if text[i] == "/" and text[i + 1:i + 2] == "/":
                i = self._skip_line(i + 2)
            elif text[i] == "/" and text[i + 1:i + 2] == "*":
                i = self._skip_block_comment(i + 2)
            elif text[i] == "#" and self._at_line_start(i):
                self.pos = i
                i = self._line_directive(i)
            else:
                break
        start = i
        line, col = self.line, i - self.line_start + 1
        c = text[i]
        if _is_word_char(c):
            i += 1
            while True:
                while i < end and _is_word_char(text[i]):
                    i += 1
                # a slash joins words only when a word character follows it
                if i + 1 < end and text[i] == "/" and _is_word_char(text[i + 1]):
                    i += 1
                    continue
                break
            self.pos = i
            word = text[start:i]
            return Token(word if word in KEYWORDS else "ident", word, line, col)
        if c == "$":
            i += 1
            while i < end and text[i].isascii() and (text[i].isalnum() or text[i] == "_"):
                i += 1
            self.pos = i
            return Token("var", text[start + 1:i], line, col)
        for op in ("->", "=>", "::", "||", "..."):
            if text.startswith(op, i):
                self.pos = i + len(op)
                return Token(op, op, line, col)
        self.pos = i + 1
        return Token(c, c, line, col)

    def lex_config(self) -> str:
        """The raw configuration after ``(``, up to the matching ``)`` (not consumed)."""
        text, end = self.text, len(self.text)
        i = self.pos
        depth = 1
        pieces: list[str] = []
        piece_start = i
        while i < end:
            c = text[i]
            if c == "(":
                depth += 1
                i += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    break
                i += 1
            elif c in "\n\r":
                i = self._newline_at(i)
                if i < end and text[i] == "#":
                    pieces.append(text[piece_start:i])
                    i = self._line_directive(i)
                    piece_start = i
            elif c == "/" and text[i + 1:i + 2] == "/":
                i = self._skip_line(i + 2)
            elif c == "/" and text[i + 1:i + 2] == "*":
                i = self._skip_block_comment(i + 2)
            elif c in "'\"":
                i = self._skip_quote(i + 1, c)
            elif c == "\\" and text[i + 1:i + 2] == "<":
                i = self._skip_angle(i + 2)
            else:
                i += 1
        pieces.append(text[piece_start:i])
        self.pos = i
        return "".join(pieces)

    def expect(self, kind: str, quiet: bool = False) -> bool:
        token = self.lex()
        if token.kind == kind:
            return True
        self.unlex(token)
        if not quiet:
            self.error(f"expected '{kind}'", token.line, token.col)
        return False


# ---------------------------------------------------------------- parse structures

TUNNEL = "<tunnel>"


@dataclass
class _Type:
    """An element class as the parser sees it: a primitive (or unknown) class, or a compound."""

    name: str
    compound: _Compound | None = None    # first overload, for a compound class


@dataclass
class _Elem:
    name: str
    type: _Type | str                # _Type, or TUNNEL for input/output pseudo-elements
    config: str
    line: int
    col: int
    file: str
    nin: int = 0
    nout: int = 0


@dataclass
class _Conn:
    src: int
    src_port: int
    dst: int
    dst_port: int
    line: int
    col: int


@dataclass
class _Compound:
    """A compound class body (Click's Lexer::Compound) or the file itself."""

    name: str
    line: int
    col: int
    file: str
    depth: int = 0
    elements: list[_Elem] = field(default_factory=list)
    emap: dict[str, int] = field(default_factory=dict)
    conns: list[_Conn] = field(default_factory=list)
    anon_offset: int = 0
    formals: list[tuple[str, str]] = field(default_factory=list)    # ($name, KEYWORD or "")
    defines: list[tuple[str, str]] = field(default_factory=list)
    ninputs: int = 0
    noutputs: int = 0
    next_overload: _Type | None = None      # tried after this one (|| or ...)
    groups: dict[int, tuple[int, int]] = field(default_factory=dict)  # group -> its input, output

    def connect(self, src: int, sport: int, dst: int, dport: int, line: int, col: int) -> None:
        sport, dport = max(sport, 0), max(dport, 0)
        self.conns.append(_Conn(src, sport, dst, dport, line, col))
        self.elements[dst].nin = max(self.elements[dst].nin, dport + 1)
        self.elements[src].nout = max(self.elements[src].nout, sport + 1)

    def signature(self) -> str:
        names = [("<arg>" if not kw else "..." if kw == "__REST__" else kw) for _, kw in self.formals]
        args = f"({', '.join(names)})" if names else ""
        return f"{self.name or '<anonymous>'}{args}[{_plural(self.ninputs, 'input')}, {_plural(self.noutputs, 'output')}]"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


@dataclass
class _ElementState:
    """One element mentioned in a connection or declaration, before it is added."""

    name: str
    type: _Type | None          # set when the name itself is a class (anonymous element)
    bare: bool
    line: int
    col: int
    file: str
    decl_type: _Type | None = None
    config: str = ""
    inports: list[int] = field(default_factory=list)
    outports: list[int] = field(default_factory=list)
    index: int = -1


@dataclass
class _SetFlags:
    """What one element set (``a, b, c``) of a connection used."""

    implicit: bool = False      # an implicit input/output (compound bodies and groups)
    ports: bool = False         # explicit port lists


class _Group:
    """State of one nesting level: the file, a compound body, or a ( ) group."""

    def __init__(self, kind: str, parent: _Group | None) -> None:
        self.kind = kind            # "file", "compound", "group"
        self.parent = parent
        self.depth = parent.depth + 1 if parent else 0
        self.last_connection_ends_output = True


# ---------------------------------------------------------------- the parser

class Parser:
    def __init__(self, text: str, filename: str, classes: Collection[str]) -> None:
        self.problems: list[Problem] = []
        self.lexer = _Lexer(text, filename, self.problems)
        self.filename = filename
        self.types: dict[str, _Type] = {name: _Type(name) for name in classes}
        self.top = _Compound("", 1, 1, filename)
        self.c = self.top
        self.requirements: list[str] = []
        self.warnings: list[Problem] = []

    # -- errors

    def error(self, message: str, token: Token | None = None) -> None:
        if token is None:
            self.lexer.error(message)
        else:
            self.problems.append(Problem(self.lexer.filename, token.line, token.col, message))

    def error_at(self, line: int, col: int, file: str, message: str, path: str = "") -> None:
        self.problems.append(Problem(file, line, col, message, path))

    def syntax_error(self, token: Token) -> None:
        self.error(f"syntax error near '{token.text}'", token)

    # -- types and elements

    def force_type(self, name: str, token: Token | None, report: bool = True) -> _Type:
        t = self.types.get(name)
        if t is not None:
            return t
        if report:
            self.error(f"unknown element class '{name}'", token)
        # an unknown class is remembered so that it is reported once
        t = _Type(name)
        self.types[name] = t
        return t

    def get_element(self, name: str, etype: _Type | str, config: str,
                    line: int, col: int, file: str) -> int:
        c = self.c
        if name in c.emap:
            return c.emap[name]
        for component in name.split("/"):
            if component.isdigit() and component.isascii():
                self.error_at(line, col, file, f"element name '{name}' has all-digit component")
                break
        c.emap[name] = len(c.elements)
        c.elements.append(_Elem(name, etype, config, line, col, file))
        return len(c.elements) - 1

    def anon_name(self, class_name: str) -> str:
        # ';' marks a name to deanonymize later, as in Click
        return f";{class_name}@{len(self.c.elements) - self.c.anon_offset + 1}"

    # -- statements

    def parse(self) -> None:
        self.statements(_Group("file", None))

    def statements(self, g: _Group) -> Token:
        """Parse statements until the end of ``g``; returns the closing token."""
        lx = self.lexer
        while True:
            t = lx.lex()
            k = t.kind
            if k in ("ident", "[", "{", "(", "->", "=>"):
                lx.unlex(t)
                self.connection(g)
            elif k == "elementclass":
                self.elementclass(g)
            elif k == "require":
                self.require(t)
            elif k == "define":
                self.define()
            elif k == ";":
                pass
            elif k in ("}", "||"):
                if g.kind == "compound":
                    return t
                self.syntax_error(t)
                if g.kind == "group":
                    lx.unlex(t)
                    return t
            elif k == ")" and g.kind == "group":
                return t
            elif k == "eof":
                if g.kind == "group":
                    self.error("expected ')'", t)
                elif g.kind == "compound":
                    self.error("expected '}'", t)
                return t
            else:
                self.syntax_error(t)

    # -- connections

    def ports(self, lx: _Lexer, out: list[int]) -> None:
        """``[0]``, ``[0, 2]``, ``[0-3]``, ``[]`` (-1 marks an expandable end)."""
        if not lx.expect("[", quiet=True):
            return
        last = -1
        dash = False
        while True:
            t = lx.lex()
            if t.kind == "ident":
                port = _click_int(t.text)
                if port is None:
                    self.error("syntax error: port number should be integer", t)
                    port = 0
                if dash:
                    out.extend(range(last + 1, port + 1))
                    last = max(last, port)
                else:
                    out.append(port)
                    last = port
            elif t.kind == "]":
                if not out:
                    out.append(0)
                out.append(-1)
                return
            else:
                self.error("syntax error: expected port number", t)
                lx.unlex(t)
                return
            t = lx.lex()
            if t.kind == "]":
                return
            if t.kind == "-" and not dash:
                dash = True
            elif t.kind == ",":
                dash = False
            else:
                self.error("syntax error: expected ','", t)
                lx.unlex(t)

    def connection(self, g: _Group) -> None:
        """One connection statement: element sets joined by ``->`` or ``=>``."""
        lx = self.lexer
        nested = self.c is not self.top or g.parent is not None
        last: list[_ElementState] = []
        connector: Token | None = None
        while True:
            current: list[_ElementState] = []
            flags = _SetFlags()
            done = False
            while True:
                e, done = self.element(g, nested, not last, current, flags)
                if e is not None:
                    current.append(e)
                    if e.inports or e.outports:
                        flags.ports = True
                if done:
                    break
                t = lx.lex()
                if t.kind != ",":
                    lx.unlex(t)
                    break
            if done:
                break
            t = lx.lex()
            lx.unlex(t)
            arrow = t.kind in ("->", "=>")
            if flags.implicit and last and arrow:
                self.error("implicit ports used in the middle of a chain", t)
            if len(current) > 1 and not last and not arrow and not flags.ports \
                    and not flags.implicit:
                self.spread_declaration(current)
            self.add_elements(current)
            if not last:
                self.check_useless(current, output=False)
            else:
                assert connector is not None
                self.connect_all(last, current, connector)
            last = current
            t = lx.lex()
            while t.kind in (",", "::"):
                self.syntax_error(t)
                t = lx.lex()
            if t.kind in ("->", "=>"):
                connector = t
                continue
            if t.kind in ("ident", "{", "}", "[", ")", "||") or t.kind in KEYWORDS:
                lx.unlex(t)
            elif t.kind not in (";", "eof"):
                self.syntax_error(t)
                if t.kind in ("var", "..."):     # meaningful tokens are kept, as in Click
                    lx.unlex(t)
            break
        self.check_useless(last, output=True)
        out = self.c.emap.get("output")
        g.last_connection_ends_output = (len(last) == 1 and out is not None
                                         and last[0].index == out)

    def element(self, g: _Group, nested: bool, first_set: bool, current: list[_ElementState],
                flags: _SetFlags) -> tuple[_ElementState | None, bool]:
        """One element of a set; returns it (or None) and whether the statement ended."""
        lx = self.lexer
        inports: list[int] = []
        self.ports(lx, inports)
        t = lx.lex()
        implicit = False
        if t.kind == "ident":
            e = self.element_type_part(g, t.text, self.types.get(t.text), True, False, t)
        elif t.kind == "{":
            ctype = self.compound_class("", t, g)
            e = self.element_type_part(g, "", ctype, False, False, t)
        elif t.kind == "(":
            name, implied_in, implied_out = self.group(g, t)
            e = self.element_type_part(g, name, None, False, False, t)
            inports = inports or implied_in
            e.outports = implied_out
        else:
            if nested and t.kind in ("->", "=>"):
                implicit = first_set and (bool(inports) or not current)
                if implicit and not inports and not g.last_connection_ends_output:
                    self.warnings.append(Problem(
                        lx.filename, t.line, t.col,
                        f"suggest 'input {t.text}' or '[0] {t.text}' to start connection"))
            elif nested and t.kind == ",":
                implicit = bool(inports)
            elif nested and t.kind != "::":
                implicit = not first_set and (bool(inports) or not current)
            if not implicit:
                if inports:
                    self.error("stranded port ignored", t)
                if current:
                    return None, False
                if nested and first_set:
                    lx.unlex(t)
                else:
                    self.syntax_error(t)
                return None, True
            lx.unlex(t)
            flags.implicit = True
            name = "input" if first_set else "output"
            e = self.element_type_part(g, name, self.types.get(name), False, True, t)
            if first_set:
                # an implicit input's ports are its outputs
                e.outports, inports = inports, []
        if inports:
            e.inports = inports
        if not implicit:
            self.element_config_part(e, lx)
        return e, False

    def element_type_part(self, g: _Group, name: str, etype: _Type | None, ident: bool,
                          implicit: bool, token: Token) -> _ElementState:
        """After the name: an optional ``:: Class`` or ``:: { compound }``."""
        lx = self.lexer
        e = _ElementState(name, etype, ident, token.line, token.col, lx.filename)
        t = lx.lex()
        if t.kind == "::" and not implicit:
            e.bare = False
            t = lx.lex()
            if t.kind == "ident":
                e.decl_type = self.force_type(t.text, t)
            elif t.kind == "{":
                e.decl_type = self.compound_class("", t, g)
            else:
                self.error("missing element type in declaration", t)
                e.decl_type = self.force_type(e.name, t)
                lx.unlex(t)
            return e
        lx.unlex(t)
        return e

    def element_config_part(self, e: _ElementState, lx: _Lexer) -> None:
        """After the class: an optional ``(config)`` and output ports."""
        t = lx.lex()
        if t.kind == "(":
            if e.name in self.c.emap:
                self.error("configuration string ignored on element reference", t)
            e.config = lx.lex_config()
            lx.expect(")")
            e.bare = False
            t = lx.lex()
        lx.unlex(t)
        if t.kind == "[":
            e.outports = []
            self.ports(lx, e.outports)

    def spread_declaration(self, current: list[_ElementState]) -> None:
        """``a, b :: Class(config)``: every bare name before the last takes its class."""
        last = current[-1]
        if all(e.bare for e in current[:-1]):
            for e in current[:-1]:
                e.decl_type = last.decl_type
                e.config = last.config

    def add_elements(self, current: list[_ElementState]) -> None:
        c = self.c
        for e in current:
            existing = c.emap.get(e.name)
            if e.type is not None or existing is None:
                if e.decl_type is not None and e.type is not None:
                    self.error_at(e.line, e.col, e.file, f"class '{e.name}' used as element name")
                elif e.decl_type is None and e.type is None:
                    self.error_at(e.line, e.col, e.file, f"undeclared element '{e.name}'")
                    e.type = self.force_type(e.name, None, report=False)
                if e.type is not None:
                    e.name = self.anon_name(e.name)
                etype = e.type if e.type is not None else e.decl_type
                assert etype is not None
                e.index = self.get_element(e.name, etype, e.config, e.line, e.col, e.file)
            else:
                e.index = existing
                if e.decl_type is not None:
                    self.error_at(e.line, e.col, e.file, f"redeclaration of element '{e.name}'")
                    old = c.elements[existing]
                    if old.type != TUNNEL:
                        self.error_at(old.line, old.col, old.file,
                                      f"element '{e.name}' previously declared here")

    def check_useless(self, current: list[_ElementState], output: bool) -> None:
        for e in current:
            if e.outports if output else e.inports:
                self.error("output ports ignored at end of chain" if output
                           else "input ports ignored at start of chain")
                return

    def connect_all(self, outputs: list[_ElementState], inputs: list[_ElementState],
                    connector: Token) -> None:
        """Connect the previous element set to this one (Click's one-to-one, fan and ``=>`` rules)."""
        def analyze(sets: list[_ElementState], out: bool) -> tuple[int, int]:
            minp = expandable = 0
            for e in sets:
                ports = e.outports if out else e.inports
                if len(ports) <= 1:
                    minp += 1
                elif ports[-1] == -1:
                    minp += len(ports) - 1
                    expandable += 1
                else:
                    minp += len(ports)
            return minp, expandable

        t = connector
        minp = [0, 0]
        expandable = [0, 0]
        minp[1], expandable[1] = analyze(outputs, True)
        minp[0], expandable[0] = analyze(inputs, False)
        if expandable[0] + expandable[1] > 1:
            self.error("at most one expandable port allowed per connection", t)
            expandable[1 if minp[0] < minp[1] else 0] = 0
        if connector.kind == "=>":
            for k, sets in ((0, inputs), (1, outputs)):
                first_ports = sets[0].outports if k else sets[0].inports
                if minp[k] == 1 and minp[1 - k] > 1 and not first_ports:
                    expandable[k] = 1
        step = [minp[k] > 1 or bool(expandable[k]) for k in range(2)]
        nexpand = [minp[1 - k] - minp[k] if expandable[k] else 0 for k in range(2)]
        if step[0] and step[1]:
            if connector.kind != "=>":
                self.error("syntax error: many-to-many connections require '=>'", t)
            if not expandable[0] and not expandable[1] and minp[0] != minp[1]:
                self.error(f"connection mismatch: {minp[1]} outputs connected to {minp[0]} inputs", t)
            elif not expandable[0] and minp[0] < minp[1]:
                self.error(f"connection mismatch: {minp[1]} or more outputs connected to {minp[0]} inputs", t)
            elif not expandable[1] and minp[1] < minp[0]:
                self.error(f"connection mismatch: {minp[1]} outputs connected to {minp[0]} or more inputs", t)
        elif not step[0] and not step[1]:
            step[0] = True

        sets = (inputs, outputs)
        it = [0, 0]
        ppos = [0, 0]
        port = [-1, -1]
        while it[0] < len(inputs) and it[1] < len(outputs):
            for k in range(2):
                if port[k] < 0:
                    e = sets[k][it[k]]
                    plist = e.outports if k else e.inports
                    port[k] = plist[0] if plist else 0
            self.c.connect(outputs[it[1]].index, port[1], inputs[it[0]].index, port[0],
                           t.line, t.col)
            for k in range(2):
                if not step[k]:
                    continue
                e = sets[k][it[k]]
                plist = e.outports if k else e.inports
                np = len(plist)
                ppos[k] += 1
                if ppos[k] < np and plist[ppos[k]] >= 0:
                    port[k] = plist[ppos[k]]
                elif np and plist[-1] == -1 and nexpand[k] > 0:
                    port[k] = (plist[np - 2] if np >= 2 else 0) + ppos[k] - (np - 2)
                    nexpand[k] -= 1
                elif np == 0 and minp[k] == 1 and nexpand[k] > 0:
                    port[k] = ppos[k]
                    nexpand[k] -= 1
                else:
                    port[k] = -1
                    ppos[k] = 0
                    it[k] += 1

    # -- groups

    def group(self, g: _Group, open_token: Token) -> tuple[str, list[int], list[int]]:
        """``( ... )``: an element group; returns its name and implied port lists."""
        c = self.c
        lx = self.lexer
        name = self.anon_name("")
        where = (open_token.line, open_token.col, lx.filename)
        idx = self.get_element(name, TUNNEL, "", *where)
        gin = self.get_element(name + "/input", TUNNEL, "", *where)
        gout = self.get_element(name + "/output", TUNNEL, "", *where)
        c.groups[idx] = (gin, gout)
        saved = (c.emap.get("input"), c.emap.get("output"))
        c.emap["input"], c.emap["output"] = gin, gout
        inner = _Group("group", g)
        if inner.depth >= MAX_DEPTH:
            self.error("maximum element group nesting depth exceeded", open_token)
        else:
            self.statements(inner)
        for key, value in zip(("input", "output"), saved):
            if value is None:
                del c.emap[key]
            else:
                c.emap[key] = value
        here = Token(")", ")", lx.line, lx.pos - lx.line_start + 1)
        nin = self.check_pseudo(c, gin, False, "<anonymous group>", here)
        nout = self.check_pseudo(c, gout, True, "<anonymous group>", here)
        # an anonymous group has implied, overridable ports: all of them
        return name, list(range(nin)), list(range(nout))

    def check_pseudo(self, c: _Compound, which: int, is_output: bool, name: str,
                     where: Token | None) -> int:
        """Check a compound's (or group's) input or output pseudo-element; returns its port count."""
        elem = c.elements[which]
        count = elem.nin if is_output else elem.nout
        used = [False] * count
        for conn in c.conns:
            if is_output and conn.dst == which:
                used[conn.dst_port] = True
            elif not is_output and conn.src == which:
                used[conn.src_port] = True
        wrong = elem.nout if is_output else elem.nin
        line, col = (where.line, where.col) if where else (c.line, c.col)
        kind, other = ("output", "input") if is_output else ("input", "output")
        if wrong:
            self.error_at(line, col, c.file,
                          f"'{name}' pseudoelement '{kind}' may only be used as {other}")
        for i, u in enumerate(used):
            if not u:
                self.error_at(line, col, c.file, f"'{name}' {kind} {i} missing")
        return count

    # -- compounds

    def elementclass(self, g: _Group) -> None:
        lx = self.lexer
        tname = lx.lex()
        name = ""
        if tname.kind == "ident":
            name = tname.text
        else:
            lx.unlex(tname)
            self.error("expected element type name", tname)
        t = lx.lex()
        if t.kind == "{":
            self.compound_class(name, t, g)
        elif t.kind == "ident":
            self.types[name] = self.force_type(t.text, t)
        else:
            self.syntax_error(t)
            self.types[name] = _Type(name)

    def compound_class(self, name: str, open_token: Token, g: _Group) -> _Type:
        """Parse ``{ [formals |] body } [|| { ... }] [|| ...]``; registers and returns the type."""
        lx = self.lexer
        saved_types = dict(self.types)
        saved_c = self.c
        first: _Compound | None = None
        last: _Compound | None = None
        extension: _Type | None = None
        while True:
            t = lx.lex()
            if t.kind == "...":
                if name not in self.types:
                    self.error(f"cannot extend unknown element class '{name}'", t)
                    self.types[name] = _Type(name)
                extension = self.types[name]
                t2 = lx.lex()
                if first is None or t2.kind != "}":
                    self.error("'...' should occur last, after one or more compounds", t2)
                # as in Click, what follows is parsed as one more (usually empty) compound
                lx.unlex(t2)
                continue
            lx.unlex(t)
            comp = _Compound(name, open_token.line, open_token.col, lx.filename,
                             depth=saved_c.depth + 1)
            self.c = comp
            self.get_element("input", TUNNEL, "", t.line, t.col, lx.filename)
            self.get_element("output", TUNNEL, "", t.line, t.col, lx.filename)
            comp.anon_offset = 2
            self.formals(comp)
            inner = _Group("compound", g)
            if inner.depth >= MAX_DEPTH or comp.depth >= MAX_DEPTH:
                self.error("maximum compound element nesting depth exceeded", t)
                end = Token("eof", "", t.line, t.col)
            else:
                end = self.statements(inner)
            self.types = saved_types
            self.c = saved_c
            self.finish_compound(comp)
            if last is None:
                first = comp
            else:
                overload = _Type(name, compound=comp)
                last.next_overload = overload
            last = comp
            if end.kind != "||":
                break
            saved_types = dict(self.types)
        assert first is not None and last is not None
        if extension is not None:
            last.next_overload = extension
        ctype = _Type(name, compound=first)
        if name:
            self.types[name] = ctype
        return ctype

    def formals(self, comp: _Compound) -> None:
        """``$a, $b, KEY $c, __REST__ $d |`` at the start of a compound body."""
        lx = self.lexer
        while True:
            t1 = lx.lex()
            keyword = ""
            if t1.kind == "ident":
                t2 = lx.lex()
                if t2.kind == "var":
                    keyword, var = t1.text, t2.text
                else:
                    if comp.formals:
                        self.error("expected variable", t2)
                    lx.unlex(t2)
                    lx.unlex(t1)
                    return
            elif t1.kind == "var":
                var = t1.text
            elif t1.kind == "|":
                return
            else:
                if comp.formals:
                    self.error("expected variable", t1)
                lx.unlex(t1)
                return
            self.define_formal(comp, var, keyword, t1)
            sep = lx.lex()
            if sep.kind == "|":
                return
            if sep.kind != ",":
                self.error("expected ',' or '|'", sep)
                lx.unlex(sep)
                return

    def define_formal(self, comp: _Compound, var: str, keyword: str, token: Token) -> None:
        if any(v == var for v, _ in comp.formals + comp.defines):
            self.error(f"parameter '${var}' multiply defined", token)
            return
        if keyword and any(k == keyword for _, k in comp.formals):
            self.error(f"repeated keyword parameter '{keyword}' in compound element", token)
        if comp.formals:
            previous = comp.formals[-1][1]
            if (not keyword and previous) or previous == "__REST__":
                self.error("compound element parameters out of order\n(The correct order is "
                           "'[positional], [keywords], [__REST__]'.)", token)
        comp.formals.append((var, keyword))

    def finish_compound(self, comp: _Compound) -> None:
        where = Token("{", "{", comp.line, comp.col)
        name = comp.name or "<anonymous>"
        comp.ninputs = self.check_pseudo(comp, 0, False, name, where)
        comp.noutputs = self.check_pseudo(comp, 1, True, name, where)
        for i, elem in enumerate(comp.elements):
            if elem.name.startswith(";"):
                _deanonymize(comp, i)

    # -- require and define

    def require(self, token: Token) -> None:
        lx = self.lexer
        if not lx.expect("("):
            return
        text = lx.lex_config()
        lx.expect(")")
        lx.expect(";", quiet=True)
        for arg in split_config(text):
            words = split_words(arg)
            if not words:
                continue
            kind = words[0]
            if kind not in ("compact_config", "package", "library") and len(words) == 1:
                words, kind = ["package", kind], "package"
            if kind == "compact_config" and len(words) == 1:
                self.requirements.append("compact_config")
            elif kind == "package" and len(words) == 2:
                package = _unquote_word(words[1])
                self.requirements.append(package)
                # Click's user-level driver provides no packages by name
                self.error(f"requirement '{package}' not available", token)
            elif kind == "library" and len(words) == 2:
                self.error("'require library' may not be used in this driver", token)
            else:
                self.error("syntax error at requirement", token)

    def define(self) -> None:
        lx = self.lexer
        if not lx.expect("("):
            return
        here = Token("define", "define", lx.line, lx.pos - lx.line_start + 1)
        text = lx.lex_config()
        lx.expect(")")
        for arg in split_config(text):
            if not arg:
                continue
            words = arg.split(None, 1)
            var = words[0]
            value = words[1].strip() if len(words) > 1 else ""
            if (len(var) < 2 or var[0] != "$"
                    or not all(ch.isascii() and (ch.isalnum() or ch == "_") for ch in var[1:])):
                self.error("bad 'define' declaration: not a variable", here)
                continue
            name = var[1:]
            if any(v == name for v, _ in self.c.formals + self.c.defines):
                self.error(f"parameter '${name}' multiply defined", here)
                continue
            self.c.defines.append((name, value))


def _unquote_word(word: str) -> str:
    if len(word) >= 2 and word[0] == word[-1] and word[0] in "'\"":
        return word[1:-1]
    return word


def _click_int(text: str) -> int | None:
    """A port number as Click's IntArg reads it (decimal, 0x hex, 0 octal)."""
    try:
        return parse_int(text, 0, 2**31 - 1)
    except ArgError:
        return None


def _deanonymize(comp: _Compound, i: int) -> str:
    """Turn ``;Class@N`` into ``Class@N``, bumping N if a declared element took that name."""
    name = comp.elements[i].name[1:]
    if name in comp.emap:
        prefix, _, number = name.rpartition("@")
        n = int(number) if number.isdigit() else 0
        while True:
            n += 1
            name = f"{prefix}@{n}"
            if name not in comp.emap:
                break
    comp.emap.pop(comp.elements[i].name, None)
    comp.emap[name] = i
    comp.elements[i].name = name
    return name


# ---------------------------------------------------------------- variables

class _Env:
    """Variable bindings of one compound instance (Click's VariableEnvironment)."""

    def __init__(self, parent: _Env | None) -> None:
        self.parent = parent
        self.depth = parent.depth + 1 if parent else 0
        self.values: dict[str, str] = {}

    def parent_of(self, depth: int) -> _Env | None:
        env: _Env | None = self
        while env is not None and env.depth >= depth:
            env = env.parent
        return env

    def lookup(self, name: str) -> str | None:
        env: _Env | None = self
        while env is not None:
            if name in env.values:
                return env.values[name]
            env = env.parent
        return None


def _lookup(body: str, env: _Env, depth: int) -> str | None:
    """The value of ``${body}``: ``name``, ``name[N]`` (Nth word), ``name-default``."""
    if "$" in body:
        body = expand_variables(body, env, depth + 1)
    m = re.fullmatch(r"\s*(\w*)\s*(?:\[\s*(\d+)\s*\]\s*)?(-.*)?", body, re.S | re.A)
    if m is None:
        return None
    value = env.lookup(m.group(1))
    if value is None:
        return expand_variables(m.group(3)[1:], env, depth + 1) if m.group(3) else None
    value = expand_variables(value, env, depth + 1)
    if m.group(2) is not None:
        words = split_words(value)
        index = int(m.group(2))
        return words[index] if index < len(words) else ""
    return value


def _paren_end(config: str, i: int) -> int:
    """Index after the ``)`` closing the ``$(`` whose body starts at ``i``, or -1."""
    level, quote = 1, ""
    while i < len(config):
        c = config[i]
        if c in "'\"":
            quote = c if not quote else ("" if quote == c else quote)
        elif c == "\\" and quote != "'":
            i += 1
        elif not quote and c in "()":
            level += 1 if c == "(" else -1
            if level == 0:
                return i + 1
        i += 1
    return -1


def _skip_comment_at(config: str, i: int) -> int:
    if config[i + 1] == "/":
        ends = [j for j in (config.find("\n", i), config.find("\r", i)) if j >= 0]
        return min(ends, default=len(config))
    close = config.find("*/", i + 2)
    return len(config) if close < 0 else close + 2


def expand_variables(config: str, env: _Env, depth: int = 0) -> str:
    """Replace ``$name``, ``${name}``, ``${name[N]}``, ``${name-default}``, ``$(name)`` (cp_expand).

    Nothing is replaced inside single quotes or comments; unknown variables
    stay as written; inside double quotes the value is escaped so that it
    stays one quoted string.  As in Click, if everything up to the last
    replacement comes out empty, the configuration is left unexpanded.
    """
    if "$" not in config or depth > 10:
        return config
    out: list[str] = []
    length = expanded_length = 0     # output length now, and just after the last replacement
    i, n = 0, len(config)
    quote = ""
    while i < n:
        c = config[i]
        piece = c
        step = 1
        if c == "\\" and quote == '"' and i + 1 < n:
            piece, step = config[i:i + 2], 2
        elif c in "'\"":
            quote = c if not quote else ("" if quote == c else quote)
        elif c == "/" and not quote and config[i + 1:i + 2] in ("/", "*"):
            end = _skip_comment_at(config, i)
            piece, step = config[i:end], end - i
        elif c == "$" and quote != "'" and i + 1 < n:
            value: str | None = None
            end = i + 1
            if config[i + 1] == "{":
                close = config.find("}", i + 2)
                if close < 0:
                    break           # Click stops expanding here
                value = _lookup(config[i + 2:close], env, depth)
                end = close + 1
            elif config[i + 1] == "(":
                end = _paren_end(config, i + 2)
                if end < 0:
                    break
                name = config[i + 2:end - 1]
                if "$" in name:
                    name = expand_variables(name, env, depth + 1)
                value = env.lookup(name)
                if value is not None:
                    value = expand_variables(value, env, depth + 1)
            else:
                while end < n and config[end].isascii() and (config[end].isalnum() or config[end] == "_"):
                    end += 1
                if end > i + 1:
                    value = _lookup(config[i + 1:end], env, depth)
            if value is not None:
                if quote == '"':
                    value = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
                piece, step = value, end - i
                expanded_length = length + len(value)
        out.append(piece)
        length += len(piece)
        i += step
    if expanded_length == 0:
        return config
    return "".join(out) + config[i:]


def assign_arguments(args: list[str], formals: list[tuple[str, str]]) -> list[str] | None:
    """Bind compound arguments to formals (positional, then mandatory keywords, then __REST__)."""
    if not formals or not formals[-1][1]:
        return list(args) if len(args) == len(formals) else None
    rest = formals[-1][1] == "__REST__"
    named = formals[:-1] if rest else formals
    npositional = sum(1 for _, kw in named if not kw)
    if len(args) < npositional:
        return None
    values = list(args[:npositional])
    keywords = {kw: None for _, kw in named if kw}
    leftover: list[str] = []
    for arg in args[npositional:]:
        word = keyword_of(arg)
        if word is not None and word in keywords:
            keywords[word] = arg[len(word):].strip(" \t\n\r\f\v")
        elif rest:
            leftover.append(arg)
        else:
            return None
    if any(v is None for v in keywords.values()):
        return None
    values += [keywords[kw] or "" for _, kw in named if kw]
    if rest:
        values.append(", ".join(leftover))
    return values


# ---------------------------------------------------------------- flattening

@dataclass
class _Flat:
    name: str
    cls: str            # primitive class name, or TUNNEL
    config: str
    line: int
    col: int
    file: str


class _Flattener:
    """Expands compounds and groups into one graph of primitive elements (click-flatten)."""

    def __init__(self, parser: Parser) -> None:
        self.p = parser
        self.elements: list[_Flat] = []
        self.names: dict[str, int] = {}
        self.conns: list[_Conn] = []
        # tunnel element -> (its input pseudo-element, its output pseudo-element)
        self.pairs: dict[int, tuple[int, int]] = {}
        self.reverse: dict[int, tuple[int, str]] = {}   # pseudo-element -> (tunnel, "input"/"output")
        self.memo: dict[tuple[bool, int, int], list[tuple[int, int]]] = {}

    def error(self, elem: _Flat, message: str) -> None:
        self.p.error_at(elem.line, elem.col, elem.file, message, elem.name)

    def add(self, name: str, cls: str, src: _Elem, config: str = "") -> int:
        self.names[name] = len(self.elements)
        self.elements.append(_Flat(name, cls, config, src.line, src.col, src.file))
        return len(self.elements) - 1

    def add_pair(self, tunnel: int, src: _Elem) -> None:
        name = self.elements[tunnel].name
        self.elements[tunnel].cls = TUNNEL
        pin = self.add(name + "/input", TUNNEL, src)
        pout = self.add(name + "/output", TUNNEL, src)
        self.pairs[tunnel] = (pin, pout)
        self.reverse[pin] = (tunnel, "input")
        self.reverse[pout] = (tunnel, "output")

    def instantiate(self, comp: _Compound, prefix: str, env: _Env,
                    pseudo: tuple[int, int] | None) -> None:
        """Add ``comp``'s elements as ``prefix + name`` and its connections."""
        local: list[int] = []
        to_expand: list[tuple[int, _Elem]] = []
        for i, elem in enumerate(comp.elements):
            if pseudo is not None and i < 2:
                local.append(pseudo[i])
                continue
            name = prefix + elem.name
            if name in self.names:
                old = self.elements[self.names[name]]
                self.p.error_at(elem.line, elem.col, elem.file,
                                f"redeclaration of element '{name}'", name)
                self.error(old, f"'{name}' previously declared here")
                local.append(-1)
                continue
            if prefix and name in self.p.types:
                self.p.error_at(elem.line, elem.col, elem.file, f"'{name}' is an element class")
            if elem.type == TUNNEL:
                local.append(self.add(name, TUNNEL, elem))
                continue
            assert isinstance(elem.type, _Type)
            index = self.add(name, elem.type.name, elem, expand_variables(elem.config, env))
            local.append(index)
            if elem.type.compound is not None:
                to_expand.append((index, elem))
        for group, (gin, gout) in comp.groups.items():
            if min(local[group], local[gin], local[gout]) >= 0:
                self.pairs[local[group]] = (local[gin], local[gout])
                self.reverse[local[gin]] = (local[group], "input")
                self.reverse[local[gout]] = (local[group], "output")
        for conn in comp.conns:
            src, dst = local[conn.src], local[conn.dst]
            if src >= 0 and dst >= 0:
                self.conns.append(_Conn(src, conn.src_port, dst, conn.dst_port, conn.line, conn.col))
        for index, elem in to_expand:
            assert isinstance(elem.type, _Type)
            self.expand(index, elem, elem.type, env)

    def expand(self, index: int, elem: _Elem, etype: _Type, env: _Env) -> None:
        """Replace compound element ``index`` by its body, choosing among overloads."""
        flat = self.elements[index]
        if flat.name.count("/") >= MAX_EXPANSION:
            # only absurd chains of classes get here; Python's stack is the limit
            self.error(flat, "maximum compound element nesting depth exceeded")
            return
        args = split_config(flat.config)
        found: _Compound | None = None
        closest: _Compound | None = None
        tried = 0
        fallback: _Type | None = None
        t: _Type | None = etype
        while t is not None and t.compound is not None:
            comp = t.compound
            tried += 1
            values = assign_arguments(args, comp.formals)
            if values is not None and comp.ninputs == elem.nin and comp.noutputs == elem.nout:
                found = comp
                break
            if values is not None:
                closest = comp
            t = comp.next_overload
            if t is not None and t.compound is None:
                fallback = t        # '...': the class this compound extends
        if found is None and fallback is not None:
            flat.cls = fallback.name
            return
        if found is None:
            if tried != 1 or closest is None:
                first = etype.compound
                assert first is not None
                nargs = f"{len(args)} argument{'s' if len(args) != 1 else ''}, " if args else ""
                self.error(flat, f"no match for '{first.name or '<anonymous>'}[{nargs}"
                                 f"{_plural(elem.nin, 'input')}, {_plural(elem.nout, 'output')}]'"
                                 f" (candidates are: {'; '.join(_signatures(etype))})")
            if closest is None:
                flat.cls = etype.name
                return
            found = closest
        values = assign_arguments(args, found.formals) or []
        new_env = _Env(env.parent_of(found.depth))
        for (var, _), value in zip(found.formals, values):
            new_env.values[var] = value
        for var, value in found.defines:
            new_env.values[var] = expand_variables(value, new_env)
        self.add_pair(index, elem)
        pin, pout = self.pairs[index]
        self.instantiate(found, flat.name + "/", new_env, (pin, pout))

    # -- connections through tunnels

    def ends(self, is_output: bool, idx: int, port: int) -> list[tuple[int, int]]:
        """The real ports a connection end at (idx, port) stands for."""
        if self.elements[idx].cls != TUNNEL:
            return [(idx, port)]
        key = (is_output, idx, port)
        if key in self.memo:
            return self.memo[key]
        self.memo[key] = []         # a loop of tunnels leads nowhere
        result: list[tuple[int, int]] = []
        name = self.elements[idx].name
        if idx in self.pairs:
            # the outside of a compound or group: continue inside it
            pin, pout = self.pairs[idx]
            if is_output:
                inner = [(c.src, c.src_port) for c in self.conns if c.dst == pout and c.dst_port == port]
                missing = f"'{name}' has no output {port}"
            else:
                inner = [(c.dst, c.dst_port) for c in self.conns if c.src == pin and c.src_port == port]
                missing = f"'{name}' has no input {port}"
        elif idx in self.reverse:
            # the inside pseudo-element: continue outside
            outer, side = self.reverse[idx]
            oname = self.elements[outer].name
            if is_output and side == "input":
                inner = [(c.src, c.src_port) for c in self.conns if c.dst == outer and c.dst_port == port]
                missing = f"'{oname}' input {port} unused"
            elif not is_output and side == "output":
                inner = [(c.dst, c.dst_port) for c in self.conns if c.src == outer and c.src_port == port]
                missing = f"'{oname}' output {port} unused"
            else:
                inner = []
                missing = f"'{name}' used as {'output' if is_output else 'input'}"
        else:
            inner = []
            missing = f"'{name}' used as {'output' if is_output else 'input'}"
        if not inner:
            self.error(self.elements[idx], missing)
        for end in inner:
            result.extend(self.ends(is_output, *end))
        self.memo[key] = result
        return result

    def graph(self, requirements: list[str]) -> RouterGraph:
        graph = RouterGraph(requirements=requirements, file=self.p.filename)
        for e in self.elements:
            if e.cls != TUNNEL:
                graph.elements[e.name] = ElementDecl(e.name, e.cls, e.config, e.line, e.col, e.file)
        seen: set[tuple[int, int, int, int]] = set()
        for c in self.conns:
            for src, sport in self.ends(True, c.src, c.src_port):
                for dst, dport in self.ends(False, c.dst, c.dst_port):
                    key = (src, sport, dst, dport)
                    if key in seen:     # duplicate connections are harmless in Click
                        continue
                    seen.add(key)
                    graph.connections.append(Connection(
                        self.elements[src].name, sport, self.elements[dst].name, dport,
                        c.line, c.col))
        return graph


def _signatures(etype: _Type) -> list[str]:
    result = []
    t: _Type | None = etype
    while t is not None and t.compound is not None:
        result.append(t.compound.signature())
        t = t.compound.next_overload
    return result


# ---------------------------------------------------------------- entry points

def default_registry() -> Mapping[str, type[Element]]:
    """The element catalog, class name -> class (imported on first use)."""
    import clickos_agent.click.elements  # noqa: F401  (registers every element class)
    from clickos_agent.click.element import ELEMENTS
    return ELEMENTS


def parse_collect(text: str, filename: str = "<config>", classes: Collection[str] | None = None
                  ) -> tuple[RouterGraph, list[Problem], list[Problem]]:
    """Parse and flatten; returns the graph with every error and warning found."""
    parser = Parser(text, filename, default_registry().keys() if classes is None else classes)
    parser.parse()
    top = parser.top
    env = _Env(None)
    for var, value in top.defines:
        env.values[var] = value
    for i, elem in enumerate(top.elements):
        if elem.name.startswith(";"):
            _deanonymize(top, i)
    flattener = _Flattener(parser)
    flattener.instantiate(top, "", env, None)
    graph = flattener.graph(parser.requirements)
    return graph, parser.problems, parser.warnings


def parse(text: str, filename: str = "<config>", classes: Collection[str] | None = None
          ) -> RouterGraph:
    """Parse a Click configuration into a flat graph; raises ConfigError on any error.

    ``classes`` names the primitive element classes (default: the catalog in
    ``clickos_agent.click.elements``); it decides, as in Click, whether a bare
    word in a connection is an anonymous element or a reference.
    """
    graph, errors, _ = parse_collect(text, filename, classes)
    if errors:
        raise ConfigError(errors)
    return graph
