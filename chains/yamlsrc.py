"""YAML loading that remembers where every key and value came from.

PyYAML's plain loaders forget positions and silently keep the last of two
duplicate keys.  Here the document is composed to nodes (libyaml when
available) and converted to dicts and lists that carry the 1-based
(line, col) of each key and value, so that validators can report
``FILE:LINE:COL`` for any key path.

libyaml through PyYAML still builds a Python event and two marks per node:
about 1.5 MB/s, so a 10,000-chain file (7 MB) takes 5 s.  Chain files use a
small, regular part of YAML (block mappings and sequences, one-line scalars
and flow collections), so a fast reader handles exactly that part and hands
anything else (anchors, tags, block scalars, multi-line scalars, errors,
duplicate keys, non-ASCII text) to libyaml.  Both give identical values and
positions (tests/test_chains_yamlsrc.py checks them against each other);
scalars are resolved by PyYAML's own resolver and constructor either way.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from chains.errors import ConfigError, Problem

Pos = tuple[int, int]

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YDict(dict):
    """A mapping with positions: ``pos`` of the mapping, ``key_pos``, ``value_pos``."""

    pos: Pos
    key_pos: dict[Any, Pos]
    value_pos: dict[Any, Pos]


class YList(list):
    """A sequence with positions: ``pos`` of the sequence, ``item_pos``."""

    pos: Pos
    item_pos: list[Pos]


def _pos(node: yaml.Node) -> Pos:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Converter:
    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.problems: list[Problem] = []
        self.scalars = yaml.SafeLoader("")

    def convert(self, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            out = YDict()
            out.pos, out.key_pos, out.value_pos = _pos(node), {}, {}
            for key_node, value_node in node.value:
                key = self.convert(key_node)
                if isinstance(key, (YDict, YList)):
                    self.problems.append(Problem(self.filename, *_pos(key_node), "a key must be a plain value"))
                    continue
                if key in out:
                    line, col = out.key_pos[key]
                    self.problems.append(Problem(
                        self.filename, *_pos(key_node),
                        f"duplicate key {key!r} (first at line {line}, column {col})"))
                    continue
                out[key] = self.convert(value_node)
                out.key_pos[key] = _pos(key_node)
                out.value_pos[key] = _pos(value_node)
            return out
        if isinstance(node, yaml.SequenceNode):
            seq = YList(self.convert(item) for item in node.value)
            seq.pos, seq.item_pos = _pos(node), [_pos(item) for item in node.value]
            return seq
        try:
            return self.scalars.construct_object(node)
        except (ValueError, OverflowError) as exc:   # e.g. 2001-02-30 looks like a date but is not one
            self.problems.append(Problem(self.filename, *_pos(node), f"invalid value {node.value!r}: {exc}"))
            return None


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    return lines[line][column:column + 1] if line < len(lines) else ""


class _Fallback(Exception):
    """The fast reader met something outside its subset of YAML; libyaml decides."""


_MISSING = object()
_NOT_A_KEY, _KEY, _KEY_AND_PLAIN = 0, 1, 2      # kinds of line (see _FastReader.line_key)
_BLOCK_PLAIN_BAD_START = set("&*!|>%@`?:,[]{}#'\"-")   # what cannot start a one-line plain scalar here
# A key made of common characters followed by ": " or ":" at the end: most keys, found in one step.
_SIMPLE_KEY = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_./-]*) *:(?= |$)")
# A "key: plain value" line (the value ends before " #"; ": " in it is an error left to libyaml).
_KEY_VALUE = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_./-]*) *: +"
                        r"([^ '\"&*!|>%@`?:,\[\]{}#-](?:[^:#]|:(?! |$)|(?<! )#)*?) *(?: #.*)?$")
# A "key: scalar" pair in a flow mapping: double-quoted (no escapes), single-quoted (no '') or plain.
_FLOW_PAIR = re.compile(r"([A-Za-z0-9_][A-Za-z0-9_./-]*) *: +(?:\"([^\"\\\\]*)\"|'([^']*)'(?!')|"
                        r"([^ ,\[\]{}:#'\"&*!|>%@`?-](?:[^,\[\]{}:#]|:(?![ ,\]}]|$)|(?<! )#)*?)) *(?=[,}])")
# A plain scalar in a flow collection: no flow indicators, no ": " (or ":," ...), no " #".
_FLOW_PLAIN = re.compile(r"(?:[^,\[\]{}:# ]|:(?![ ,\]}]|$)|(?<! )#| +(?=[^,\[\]{}:# ]|:(?![ ,\]}]|$)))+")


class _FastReader:
    """Reads the block/flow subset of YAML that chain files use, with libyaml's positions.

    Works line by line on ASCII text without tabs; raises _Fallback on
    anything else.  Each parse method takes and returns a cursor: the index
    of the current line in ``self.lines``.
    """

    def __init__(self, text: str, scalars: yaml.SafeLoader, cache: dict[str, Any]) -> None:
        if not text.isascii() or "\t" in text or "\r" in text:
            raise _Fallback
        self.scalars = scalars
        self.cache = cache
        self.line_cache: dict[str, tuple[int, int, Any, Any, int]] = {}
        # flat flow collections seen before: line -> (column, items as (key, key col, value, value col))
        self.flow_cache: dict[str, tuple[int, list[tuple[Any, int, Any, int]] | None]] = {}
        # (0-based line number, indent, text) of each line that holds something
        self.lines: list[tuple[int, int, str]] = []
        for number, line in enumerate(text.split("\n")):
            body = line.lstrip(" ")
            if not body or body[0] == "#":
                continue
            if body.startswith(("---", "...", "%")):
                raise _Fallback
            self.lines.append((number, len(line) - len(body), line))

    def document(self) -> Any:
        if not self.lines:
            raise _Fallback
        _, indent, _ = self.lines[0]
        value, at = self.block(0, indent)
        if at != len(self.lines):
            raise _Fallback
        return value

    # ---- block context ---------------------------------------------------------------

    def block(self, at: int, col: int) -> tuple[Any, int]:
        """The block node starting on line ``at`` at column ``col``."""
        _, _, line = self.lines[at]
        if line.startswith("-", col) and (len(line) == col + 1 or line[col + 1] == " "):
            return self.sequence(at, col)
        if self.line_key(line, col)[1] != _NOT_A_KEY:
            return self.mapping(at, col)
        raise _Fallback

    def mapping(self, at: int, col: int) -> tuple[YDict, int]:
        # the hottest loop of the reader: attributes are bound to locals once
        lines, count, lines_seen = self.lines, len(self.lines), self.line_cache.get
        out = YDict()
        number = lines[at][0]
        key_pos: dict[Any, Pos] = {}
        value_pos: dict[Any, Pos] = {}
        out.pos, out.key_pos, out.value_pos = (number + 1, col + 1), key_pos, value_pos
        first = True
        while at < count:
            number, indent, line = lines[at]
            if indent != col and not first:
                if indent < col:
                    break
                raise _Fallback
            first = False
            seen = lines_seen(line)
            _, kind, key, value, rest = seen if seen is not None and seen[0] == col else self.line_key(line, col)
            if kind == _NOT_A_KEY or key in out:
                raise _Fallback      # libyaml reports duplicate keys with both positions
            key_pos[key] = (number + 1, col + 1)
            if kind == _KEY_AND_PLAIN:    # the common "key: plain value" line, in one step
                value_pos[key] = (number + 1, rest + 1)
                out[key] = value
                at += 1
                continue
            if self.empty_rest(line, rest):
                at += 1
                if at == count:
                    raise _Fallback          # "key:" with nothing: a null
                _, next_indent, next_line = lines[at]
                if next_indent > col or (next_indent == col and next_line.startswith("-", next_indent)):
                    value, at = self.block(at, next_indent)
                    value_pos[key] = value.pos
                else:
                    raise _Fallback
            else:
                value, value_pos[key] = self.inline(line, rest, number)
                at += 1
            out[key] = value
        return out, at

    def sequence(self, at: int, col: int) -> tuple[YList, int]:
        out = YList()
        number, _, _ = self.lines[at]
        out.pos, out.item_pos = (number + 1, col + 1), []
        while at < len(self.lines):
            number, indent, line = self.lines[at]
            if indent < col:
                break
            if indent > col or not line.startswith("-", col):
                # a key at the same indent ends an indentless sequence; anything else is odd
                if indent == col and self.split_key(line, col) is not None:
                    break
                raise _Fallback
            item = col + 1
            while item < len(line) and line[item] == " ":
                item += 1
            if item == col + 1 and item < len(line):
                raise _Fallback              # "-x" is a plain scalar, not an entry
            if self.empty_rest(line, item):
                raise _Fallback              # "-" alone: the item is on later lines (or null)
            if line[item] == "-" and line[item + 1:item + 2] in ("", " "):
                raise _Fallback              # nested "- - x"
            if self.line_key(line, item)[1] != _NOT_A_KEY:
                value, at = self.mapping(at, item)
                out.item_pos.append((number + 1, item + 1))
            else:
                value, pos = self.inline(line, item, number)
                out.item_pos.append(pos)
                at += 1
            out.append(value)
        return out, at

    def line_key(self, line: str, col: int) -> tuple[int, int, Any, Any, int]:
        """What starts at ``col``: ``(col, kind, key, plain value, column of the value or rest)``.

        Chain files repeat many lines ("function: monitor"), so the answer is
        remembered per line (its indentation is part of it).
        """
        match = _KEY_VALUE.match(line, col)
        if match is not None:
            entry = (col, _KEY_AND_PLAIN, self.plain(match.group(1)), self.plain(match.group(2)), match.start(2))
        else:
            split = self.split_key(line, col)
            entry = (col, _NOT_A_KEY, None, None, 0) if split is None else (col, _KEY, split[0], None, split[1])
        self.line_cache[line] = entry
        return entry

    @staticmethod
    def empty_rest(line: str, col: int) -> bool:
        """Whether nothing but spaces and a comment follow ``col`` (a comment needs a space before it)."""
        rest = line[col:]
        stripped = rest.lstrip(" ")
        return not stripped or (stripped[0] == "#" and (len(stripped) < len(rest) or line[col - 1] == " "))

    def split_key(self, line: str, col: int) -> tuple[Any, int] | None:
        """If a ``key:`` starts at ``col``: the key and the column after the colon."""
        simple = _SIMPLE_KEY.match(line, col)
        if simple is not None:
            return self.plain(simple.group(1)), simple.end()
        char = line[col:col + 1]
        if char in ("'", '"'):
            try:
                key, end = self.quoted(line, col)
            except _Fallback:
                return None
            if line.startswith(":", end) and (len(line) == end + 1 or line[end + 1] == " "):
                return key, end + 1
            return None
        if not char or char in _BLOCK_PLAIN_BAD_START:
            return None
        colon = line.find(":", col)
        while colon != -1 and not (colon + 1 == len(line) or line[colon + 1] == " "):
            colon = line.find(":", colon + 1)
        if colon == -1:
            return None
        text = line[col:colon]
        if " #" in text:
            return None
        return self.plain(text.rstrip(" ")), colon + 1

    def inline(self, line: str, col: int, number: int) -> tuple[Any, tuple[int, int]]:
        """A value that fits on the rest of this line (scalar or flow collection)."""
        while line[col] == " ":
            col += 1
        char = line[col]
        pos = (number + 1, col + 1)
        if char == "{":
            return self.flow_mapping_line(line, col, number), pos
        if char == "[":
            value, end = self.flow(line, col, number)
        elif char in ("'", '"'):
            value, end = self.quoted(line, col)
        elif char in _BLOCK_PLAIN_BAD_START:
            raise _Fallback
        else:
            end = line.find(" #", col)
            end = len(line) if end == -1 else end
            text = line[col:end].rstrip(" ")
            if ": " in text or text.endswith(":"):
                raise _Fallback              # a YAML error: libyaml words it
            value = self.plain(text)
        if not self.empty_rest(line, end):
            raise _Fallback
        return value, pos

    def flow_mapping_line(self, line: str, col: int, number: int) -> YDict:
        """A flow mapping that ends the line; one of scalars only is remembered per line, so
        repeated lines (the same firewall rule in many chains) are rebuilt without parsing."""
        seen = self.flow_cache.get(line)
        if seen is not None and seen[0] == col and seen[1] is not None:
            out = YDict()
            out.pos, out.key_pos, out.value_pos = (number + 1, col + 1), {}, {}
            for key, key_col, value, value_col in seen[1]:
                out[key] = value
                out.key_pos[key] = (number + 1, key_col)
                out.value_pos[key] = (number + 1, value_col)
            return out
        value, end = self.flow(line, col, number)
        if not self.empty_rest(line, end):
            raise _Fallback
        flat = not any(isinstance(item, (dict, list)) for item in value.values())
        self.flow_cache[line] = (col, [(key, value.key_pos[key][1], item, value.value_pos[key][1])
                                       for key, item in value.items()] if flat else None)
        return value

    # ---- scalars -------------------------------------------------------------------------

    def plain(self, text: str) -> Any:
        if not text:
            raise _Fallback                  # an empty scalar: libyaml knows where it is
        value = self.cache.get(text, _MISSING)
        if value is _MISSING:
            tag = self.scalars.resolve(yaml.ScalarNode, text, (True, False))
            try:
                value = text if tag == "tag:yaml.org,2002:str" else \
                    self.scalars.construct_object(yaml.ScalarNode(tag, text))
            except Exception:            # e.g. a date that matches the pattern but does not exist
                raise _Fallback from None
            if isinstance(value, (dict, list)):
                raise _Fallback
            self.cache[text] = value
        return value

    @staticmethod
    def quoted(line: str, col: int) -> tuple[str, int]:
        """A one-line quoted scalar starting at ``col``: its value and the column after it."""
        quote = line[col]
        if quote == '"':
            end = line.find('"', col + 1)
            if end == -1 or "\\" in line[col:end]:
                raise _Fallback              # escapes, or a scalar spanning lines
            return line[col + 1:end], end + 1
        parts = []
        start = col + 1
        while True:
            end = line.find("'", start)
            if end == -1:
                raise _Fallback
            parts.append(line[start:end])
            if line.startswith("''", end):
                parts.append("'")
                start = end + 2
                continue
            return "".join(parts), end + 1

    # ---- flow context --------------------------------------------------------------------

    def flow(self, line: str, col: int, number: int) -> tuple[Any, int]:
        """A flow mapping or sequence that ends on this line; returns it and the column after it."""
        if line[col] == "[":
            seq = YList()
            seq.pos, seq.item_pos = (number + 1, col + 1), []
            col = self.skip(line, col + 1)
            while line[col] != "]":
                seq.item_pos.append((number + 1, col + 1))
                item, col = self.flow_node(line, col, number)
                seq.append(item)
                col = self.after_item(line, col, "]")
            return seq, col + 1
        out = YDict()
        out.pos, out.key_pos, out.value_pos = (number + 1, col + 1), {}, {}
        col = self.skip(line, col + 1)
        while line[col] != "}":
            key_pos = (number + 1, col + 1)
            pair = _FLOW_PAIR.match(line, col)
            if pair is not None:          # the common "key: scalar" pair, in one step
                key = self.plain(pair.group(1))
                if key in out:
                    raise _Fallback
                if pair.group(4) is not None:
                    out[key], start = self.plain(pair.group(4)), pair.start(4)
                else:                     # a quoted scalar's position is its opening quote
                    group = 2 if pair.group(2) is not None else 3
                    out[key], start = pair.group(group), pair.start(group) - 1
                out.key_pos[key], out.value_pos[key] = key_pos, (number + 1, start + 1)
                col = self.after_item(line, self.skip(line, pair.end()), "}")
                continue
            key, col = self.flow_node(line, col, number)
            if isinstance(key, (dict, list)) or key in out or not line.startswith(":", col):
                raise _Fallback
            col = self.skip(line, col + 1)
            out.key_pos[key], out.value_pos[key] = key_pos, (number + 1, col + 1)
            out[key], col = self.flow_node(line, col, number)
            col = self.after_item(line, col, "}")
        return out, col + 1

    def flow_node(self, line: str, col: int, number: int) -> tuple[Any, int]:
        char = line[col]
        if char in ("[", "{"):
            value, col = self.flow(line, col, number)
        elif char in ("'", '"'):
            value, col = self.quoted(line, col)
        elif char in _BLOCK_PLAIN_BAD_START:
            raise _Fallback
        else:
            plain = _FLOW_PLAIN.match(line, col)
            if plain is None:
                raise _Fallback
            value, col = self.plain(plain.group()), plain.end()
        return value, self.skip(line, col)

    @staticmethod
    def skip(line: str, col: int) -> int:
        while col < len(line) and line[col] == " ":
            col += 1
        if col == len(line) or line[col] == "#":
            raise _Fallback                  # the flow collection goes on to the next line
        return col

    def after_item(self, line: str, col: int, close: str) -> int:
        if line[col] == ",":
            return self.skip(line, col + 1)
        if line[col] != close:
            raise _Fallback
        return col


def _fast_load(text: str) -> Any:
    """The document via the fast reader, or raise _Fallback."""
    return _FastReader(text, yaml.SafeLoader(""), {}).document()


def load_yaml(text: str, filename: str) -> Any:
    """Parse one YAML document; raise ConfigError (with positions) when it is not valid YAML.

    An empty document loads as None.  Tabs used for indentation, unclosed
    brackets and the like become one Problem at the place libyaml points to.
    """
    value, problems = load_yaml_keep_going(text, filename)
    if problems:
        raise ConfigError(problems)
    return value


def load_yaml_keep_going(text: str, filename: str) -> tuple[Any, list[Problem]]:
    """Like load_yaml, but problems that still leave a usable document (duplicate keys,
    which keep their first value; impossible values, which become null) are returned
    rather than raised, so that a validator can report them together with its own."""
    try:
        return _fast_load(text), []
    except _Fallback:
        pass
    return _libyaml_load(text, filename)


def _libyaml_load(text: str, filename: str) -> tuple[Any, list[Problem]]:
    """The document via libyaml: any YAML, and the authority on errors."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = exc.problem or exc.context or "invalid YAML"
        if mark and _char_at(text, mark.line, mark.column) == "\t":
            message += " (a tab: YAML indents with spaces only)"
        elif exc.problem and exc.context and exc.context_mark and exc.context_mark is not mark:
            # libyaml often notices late (at the end of the file); say where it started
            where = exc.context_mark
            message += f" ({exc.context} at line {where.line + 1}, column {where.column + 1})"
        raise ConfigError([Problem(filename, line, col, f"invalid YAML: {message}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(filename, 1, 1, f"invalid YAML: {exc}")]) from None
    if node is None:
        return None, []
    converter = _Converter(filename)
    try:
        value = converter.convert(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise ConfigError([Problem(filename, mark.line + 1 if mark else 1, mark.column + 1 if mark else 1,
                                   f"invalid YAML: {exc.problem}")]) from None
    return value, converter.problems


def read_text(path: str) -> str:
    """A file's text; unreadable files are a ConfigError too."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(path, 1, 1, f"cannot read file: {exc}")]) from None


def read_yaml(path: str) -> Any:
    """Read and parse a YAML file."""
    return load_yaml(read_text(path), path)


def plain_load(text: str) -> Any:
    """Plain libyaml loading with no positions: the baseline the benchmark compares against."""
    return yaml.load(text, Loader=_Loader)


def flow_scalar(value: Any) -> str:
    """``value`` as a YAML flow scalar, quoted only where it would read back as something else.

    Some MAC addresses, for one, read back as sexagesimal integers unless quoted.
    """
    return yaml.safe_dump([value], default_flow_style=True, width=1000).strip()[1:-1]
