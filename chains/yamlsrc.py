"""YAML loading that remembers where every key and value came from.

PyYAML's plain loaders forget positions and silently keep the last of two
duplicate keys.  Here the document is composed to nodes (libyaml when
available, for speed) and converted to dicts and lists that carry the
1-based (line, col) of each key and value, so that validators can report
``FILE:LINE:COL`` for any key path.
"""

from __future__ import annotations

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
        return self.scalars.construct_object(node)


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    return lines[line][column:column + 1] if line < len(lines) else ""


def load_yaml(text: str, filename: str) -> Any:
    """Parse one YAML document; raise ConfigError (with positions) when it is not valid YAML.

    An empty document loads as None.  Tabs used for indentation, unclosed
    brackets and the like become one Problem at the place libyaml points to.
    """
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = exc.problem or exc.context or "invalid YAML"
        if mark and _char_at(text, mark.line, mark.column) == "\t":
            message += " (a tab: YAML indents with spaces only)"
        raise ConfigError([Problem(filename, line, col, f"invalid YAML: {message}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(filename, 1, 1, f"invalid YAML: {exc}")]) from None
    if node is None:
        return None
    converter = _Converter(filename)
    try:
        value = converter.convert(node)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise ConfigError([Problem(filename, mark.line + 1 if mark else 1, mark.column + 1 if mark else 1,
                                   f"invalid YAML: {exc.problem}")]) from None
    if converter.problems:
        raise ConfigError(converter.problems)
    return value


def read_yaml(path: str) -> Any:
    """Read and parse a YAML file; unreadable files are a ConfigError too."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(path, 1, 1, f"cannot read file: {exc}")]) from None
    return load_yaml(text, path)
