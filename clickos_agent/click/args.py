"""Click configuration arguments: splitting and typed parsing.

Elements receive their configuration string split into arguments by
``split_config`` (Click's ``cp_argvec``) and parse them with ``parse_keywords``
(a small version of Click's ``Args``) and the typed parsers below, which raise
``ArgError`` with messages worded like Click's.

Behaviour taken from Click's lib/confparse.cc and lib/args.cc:
- arguments split at commas outside quotes; parentheses and braces do NOT
  protect commas (cp_argvec does not track them);
- comments are removed and a comment with its surrounding space becomes one
  space; an empty last argument is dropped (``"a, b,"`` is two arguments);
- an argument ``WORD value`` whose WORD starts with a letter or ``_`` carries
  the keyword WORD; keywords may repeat and the last one wins;
- an empty argument counts as not given, even for a mandatory one;
- a plain string argument is one word (quoted parts allowed): use
  ``parse_string`` as Click's StringArg does, so ``Print(a b)`` is rejected
  and ``Print("a b")`` accepted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from clickos_agent.click.element import ArgError

_SPACE = " \t\n\r\f\v"


def _skip_comment(text: str, i: int) -> int:
    """Index just after the comment starting at ``text[i]`` (``//`` or ``/*``)."""
    if text[i + 1] == "/":
        end = len(text)
        for j in range(i + 2, end):
            if text[j] in "\n\r":
                return j + 2 if text[j] == "\r" and text[j + 1:j + 2] == "\n" else j + 1
        return end
    close = text.find("*/", i + 2)
    return len(text) if close < 0 else close + 2


def _skip_quote(text: str, i: int) -> int:
    """Index just after the quoted string starting at ``text[i]``."""
    quote = text[i]
    j = i + 1
    while j < len(text):
        if quote == '"' and text[j] == "\\":
            j += 2
        elif text[j] == quote:
            return j + 1
        else:
            j += 1
    return len(text)


def _is_comment_start(text: str, i: int) -> bool:
    return text[i] == "/" and i + 1 < len(text) and text[i + 1] in "/*"


def _uncomment_until_comma(text: str, i: int, stop_at_comma: bool) -> tuple[str, int]:
    """One argument from ``text[i:]``: comments removed, outer space stripped.

    Returns the argument and the index where it stopped (a comma or the end).
    """
    pieces: list[str] = []
    left = right = -1
    pending_space = False
    n = len(text)
    while i < n:
        c = text[i]
        if c in _SPACE:
            i += 1
        elif _is_comment_start(text, i):
            i = _skip_comment(text, i)
            pending_space = left >= 0
        elif c == "," and stop_at_comma:
            break
        else:
            if left < 0:
                left = i
            elif pending_space:
                # a comment between words counts as one space, like Click
                pieces.append(text[left:right])
                left = i
            pending_space = False
            if c in "'\"":
                i = _skip_quote(text, i)
            else:
                i += 1
            right = i
    if left < 0:
        return "", i
    pieces.append(text[left:right])
    return " ".join(pieces), i


def uncomment(text: str) -> str:
    """Click's cp_uncomment: comments removed, outer whitespace stripped."""
    return _uncomment_until_comma(text, 0, False)[0]


def split_config(config: str) -> list[str]:
    """Split a configuration string into arguments, as Click's cp_argvec does."""
    args: list[str] = []
    pos = 0
    n = len(config)
    while pos < n:
        arg, pos = _uncomment_until_comma(config, pos, True)
        # an empty final argument is dropped; empty inner ones are kept
        if arg or pos < n:
            args.append(arg)
        pos += 1
    return args


def split_words(text: str) -> list[str]:
    """Click's cp_spacevec: split at unquoted whitespace, dropping comments."""
    words: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i] in _SPACE:
            i += 1
        elif _is_comment_start(text, i):
            i = _skip_comment(text, i)
        else:
            start = i
            while i < n and text[i] not in _SPACE and not _is_comment_start(text, i):
                i = _skip_quote(text, i) if text[i] in "'\"" else i + 1
            words.append(text[start:i])
    return words


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_HEX = "0123456789abcdefABCDEF"


def _backslash(text: str, i: int, out: list[str]) -> int:
    """Process the escape at ``text[i]`` (a backslash) as Click's cp_process_backslash."""
    n = len(text)
    if i + 1 >= n:
        out.append("\\")
        return n
    c = text[i + 1]
    if c == "\r":
        return i + 3 if text[i + 2:i + 3] == "\n" else i + 2
    if c == "\n":
        return i + 2
    if c in _ESCAPES:
        out.append(_ESCAPES[c])
        return i + 2
    if c in "01234567":
        j, value = i + 1, 0
        while j < n and j < i + 4 and text[j] in "01234567":
            value = value * 8 + int(text[j])
            j += 1
        out.append(chr(value & 0xFF))
        return j
    if c == "x":
        j, value = i + 2, 0
        while j < n and text[j] in _HEX:
            value = value * 16 + int(text[j], 16)
            j += 1
        out.append(chr(value & 0xFF))
        return j
    if c == "<":
        j, value, digits = i + 2, 0, 0
        while j < n:
            if text[j] == ">":
                return j + 1
            if _is_comment_start(text, j):
                j = _skip_comment(text, j)
                continue
            if text[j] in _HEX:
                value = value * 16 + int(text[j], 16)
                digits += 1
                if digits == 2:
                    out.append(chr(value))
                    value = digits = 0
            j += 1
        return n
    out.append(c)
    return i + 2


def unquote(text: str) -> str:
    """Click's cp_unquote: comments removed, one level of quotes removed, escapes expanded.

    Escapes (``\\n``, ``\\x41``, ``\\101``, ``\\<0a 0b>`` ...) are expanded inside
    double quotes, and ``\\<...>`` also outside quotes.  Bytes come back as the
    characters U+0000..U+00FF (``.encode("latin-1")`` gives the bytes).
    """
    text = uncomment(text)
    out: list[str] = []
    quote = ""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"" and (quote == "" or quote == c):
            quote = "" if quote else c
            i += 1
        elif c == "\\" and i + 1 < n and (quote == '"' or (quote == "" and text[i + 1] == "<")):
            i = _backslash(text, i, out)
        else:
            out.append(c)
            i += 1
    return "".join(out)


# ---------------------------------------------------------------- keywords

_KEYWORD = re.compile(r"([A-Za-z_][A-Za-z0-9_:.?!]*)[ \t\n\r\f\v]+(?=\S)", re.S)


def keyword_of(arg: str) -> str | None:
    """The keyword of ``arg`` (``"SRC 1.0.0.1"`` -> ``"SRC"``), or None."""
    m = _KEYWORD.match(arg)
    return m.group(1) if m else None


@dataclass(frozen=True)
class Spec:
    """One argument an element accepts.

    ``positional``: may be given without its keyword, in order;
    ``mandatory``: must be given; ``parse``: turns the text into a value.
    """

    keyword: str
    parse: Callable[[str], Any] = str
    mandatory: bool = False
    positional: bool = False
    default: Any = None


def parse_keywords(args: Sequence[str], specs: Sequence[Spec],
                   given: set[str] | None = None) -> dict[str, Any]:
    """Parse ``args`` against ``specs`` like Click's Args; returns keyword -> value.

    Positional specs take, in order, the leading arguments that have no
    keyword; a keyword argument matches its spec wherever it is, the last one
    winning.  Leftovers are ``KW: unknown argument`` / ``too many arguments``.
    An empty argument satisfies a mandatory spec without being parsed (the
    value is the default); ``given``, if passed, collects the keywords that had
    an argument, empty or not (Click's read_status).
    """
    keywords = [keyword_of(a) for a in args]
    # per argument: None unused, "kw" taken by keyword, "pos" taken by position
    taken: list[str | None] = [None] * len(args)
    values: dict[str, Any] = {}
    errors: list[str] = []
    for spec in specs:
        found = -1
        for i, kw in enumerate(keywords):
            if kw == spec.keyword and taken[i] is None:
                taken[i] = "kw"
                found = i
        text = None if found < 0 else args[found][len(spec.keyword):].lstrip(_SPACE)
        if spec.positional:
            # the first argument not taken positionally; an argument taken by
            # keyword there ends positional matching, as in Click
            first = next((i for i, t in enumerate(taken) if t != "pos"), -1)
            if (first >= 0 and taken[first] is None
                    and (keywords[first] is None or (found < 0 and spec.mandatory))):
                taken[first] = "pos"
                # the positional argument is used up either way; a later keyword wins
                if found < first:
                    text = args[first]
        if text is None and spec.mandatory:
            errors.append(f"{spec.keyword}: required argument missing")
        if text is not None and given is not None:
            given.add(spec.keyword)
        if not text:
            # an empty argument counts as not given, without complaint (Click's Args)
            values[spec.keyword] = spec.default
            continue
        try:
            values[spec.keyword] = spec.parse(text)
        except ArgError as e:
            errors.append(f"{spec.keyword}: {e}")
    too_many = False
    for i, kw in enumerate(keywords):
        if taken[i] is not None:
            continue
        if kw is None:
            too_many = True
        else:
            errors.append(f"{kw}: unknown argument")
    if too_many:
        errors.append("too many arguments")
    if errors:
        raise ArgError("; ".join(errors))
    return values


# ---------------------------------------------------------------- typed parsers

def parse_string(text: str) -> str:
    """Click's StringArg (cp_string): one word, quoted parts allowed, then unquoted.

    ``"a b"`` and ``a"b c"`` are strings; ``a b`` is not (unquoted space).
    """
    i, n = 0, len(text)
    while i < n and text[i] not in _SPACE:
        if text[i] in "'\"":
            i = _skip_quote(text, i)
        elif text[i] == "\\" and text[i + 1:i + 2] == "<":
            close = text.find(">", i + 2)
            i = n if close < 0 else close + 1
        else:
            i += 1
    if i == 0 or i != n:
        raise ArgError("parse error")
    return unquote(text)


def parse_filename(text: str) -> str:
    """Click's FilenameArg: a non-empty string, with a leading ``~`` or ``~user`` expanded."""
    name = parse_string(text)
    if not name:
        raise ArgError("parse error")
    return os.path.expanduser(name) if name.startswith("~") else name


def parse_word(text: str) -> str:
    """Click's WordArg (cp_word): a string whose value has no space, quote, backslash or comma."""
    word = parse_string(text)
    if not word or any(c in "\"'\\," or not "!" <= c <= "~" for c in word):
        raise ArgError("parse error")
    return word



def parse_bool(text: str) -> bool:
    """Click's BoolArg: true/false, yes/no, 1/0, t/f, y/n."""
    if text in ("1", "t", "y", "true", "yes"):
        return True
    if text in ("0", "f", "n", "false", "no"):
        return False
    raise ArgError("expected boolean")


_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F](_?[0-9a-fA-F])*|0[bB][01](_?[01])*|[0-9](_?[0-9])*)")


def parse_int(text: str, low: int | None = None, high: int | None = None,
              signed: bool = True) -> int:
    """Click's IntArg: decimal, 0x hex, 0b binary, leading-0 octal, ``_`` between digits."""
    if not _INT.fullmatch(text) or (not signed and text.startswith("-")):
        raise ArgError("expected integer" if signed else "expected unsigned integer")
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    body = digits.lstrip("+-")
    if body[:2] in ("0x", "0X"):
        value = int(body[2:], 16)
    elif body[:2] in ("0b", "0B"):
        value = int(body[2:], 2)
    elif len(body) > 1 and body[0] == "0":
        if any(c in "89" for c in body):
            raise ArgError("expected integer")
        value = int(body, 8)
    else:
        value = int(body)
    value *= sign
    if low is not None and value < low:
        raise ArgError(f"out of range, bound {low}")
    if high is not None and value > high:
        raise ArgError(f"out of range, bound {high}")
    return value


def parse_uint(text: str, high: int = 0xFFFFFFFF) -> int:
    """An unsigned 32-bit integer (Click's default for counts and sizes)."""
    return parse_int(text, 0, high, signed=False)


def parse_mac(text: str) -> bytes:
    """Click's EtherAddressArg: six hex bytes separated by ``:`` or ``-``."""
    parts = re.split(r"[:-]", text)
    seps = set(re.findall(r"[:-]", text))
    if (len(parts) != 6 or len(seps) != 1
            or not all(re.fullmatch(r"[0-9a-fA-F]{1,2}", p) for p in parts)):
        raise ArgError("expected Ethernet address")
    return bytes(int(p, 16) for p in parts)


def _ip_bytes(text: str) -> list[int] | None:
    parts = text.split(".")
    if not 1 <= len(parts) <= 4 or not all(p.isdigit() and p.isascii() for p in parts):
        return None
    values = [int(p) for p in parts]
    return values if all(v <= 255 for v in values) else None


def parse_ip(text: str) -> str:
    """Click's IPAddressArg: a dotted quad, returned in canonical form."""
    values = _ip_bytes(text)
    if values is None or len(values) != 4:
        raise ArgError("expected IP address")
    return ".".join(map(str, values))


def parse_ip_prefix(text: str, allow_bare_address: bool = False) -> tuple[str, int]:
    """Click's IPPrefixArg: ``ADDR/LEN`` or ``ADDR/MASK`` -> (address, prefix length).

    As in Click the address may be shortened (``10/8``) if the mask covers only
    the bytes given; a mask that is not a prefix is rejected here because
    ClickSteer only needs prefixes.
    """
    addr, slash, mask = text.rpartition("/")
    if slash and mask:
        values = _ip_bytes(addr)
        length: int | None = None
        if mask.isdigit() and mask.isascii() and int(mask) <= 32:
            length = int(mask)
        else:
            mvalues = _ip_bytes(mask)
            if mvalues is not None and len(mvalues) == 4:
                bits = "".join(f"{v:08b}" for v in mvalues)
                if "01" not in bits:
                    length = bits.count("1")
        if values is not None and length is not None and length <= 8 * len(values):
            values += [0] * (4 - len(values))
            return ".".join(map(str, values)), length
    elif allow_bare_address:
        return parse_ip(text), 32
    raise ArgError("expected IP address prefix")


_NUMBER = re.compile(r"[+]?([0-9](_?[0-9])*(\.([0-9](_?[0-9])*)?)?|\.[0-9](_?[0-9])*)([eE][+-]?[0-9]+)?")
_SECONDS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hr": 3600.0,
            "d": 86400.0, "day": 86400.0}
_SECOND_PREFIX = {"m": 1e-3, "u": 1e-6, "n": 1e-9}
_BANDWIDTH = {"baud": 0.125, "bps": 0.125, "b/s": 0.125, "Bps": 1.0, "B/s": 1.0}
_BANDWIDTH_PREFIX = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}


def _split_unit(text: str, units: dict[str, float], prefixes: dict[str, float]
                ) -> tuple[str, float] | None:
    """Split ``text`` into number and unit factor, as Click's UnitArg does.

    Units are tried in Click's order (first matching suffix wins), a prefix
    may stand just before the unit, and space may separate number and unit.
    """
    for unit, factor in units.items():
        if text.endswith(unit):
            head = text[:-len(unit)]
            if head and head[-1] in prefixes:
                factor *= prefixes[head[-1]]
                head = head[:-1]
            head = head.rstrip(_SPACE)
            return (head, factor) if _NUMBER.fullmatch(head) else None
    return (text, 1.0) if _NUMBER.fullmatch(text) else None


def parse_time(text: str) -> float:
    """Click's SecondsArg: a number with optional unit (s, ms, us, ns, min, h, d), in seconds."""
    split = _split_unit(text, _SECONDS, _SECOND_PREFIX)
    if split is None:
        raise ArgError("expected time in seconds")
    return float(split[0].replace("_", "")) * split[1]


def parse_bandwidth(text: str) -> int:
    """Click's BandwidthArg: whole bytes per second (rounded half up, as Click's
    unsigned result); units bps/Bps/baud with k/M/G prefixes.

    A bare number means bytes per second, as in Click.
    """
    split = _split_unit(text, _BANDWIDTH, _BANDWIDTH_PREFIX)
    if split is None:
        raise ArgError("expected bandwidth")
    value = int(float(split[0].replace("_", "")) * split[1] + 0.5)
    if value > 0xFFFFFFFF:
        raise ArgError("out of range")
    return value
