"""The positional YAML reader: the fast reader must agree with libyaml on values and positions."""

from __future__ import annotations

import glob
import os
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chains import yamlsrc
from chains.errors import ConfigError
from chains.yamlsrc import YDict, YList, load_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from chain_load import generate  # noqa: E402 - the benchmark's generator, from bench/


def same(fast, slow, path="doc"):
    """Values, types, key order and every recorded position agree."""
    assert type(fast) is type(slow), path
    if isinstance(fast, YDict):
        assert list(fast) == list(slow), path
        assert (fast.pos, fast.key_pos, fast.value_pos) == (slow.pos, slow.key_pos, slow.value_pos), path
        for key in fast:
            same(fast[key], slow[key], f"{path}.{key}")
    elif isinstance(fast, YList):
        assert (len(fast), fast.pos, fast.item_pos) == (len(slow), slow.pos, slow.item_pos), path
        for index, (a, b) in enumerate(zip(fast, slow)):
            same(a, b, f"{path}[{index}]")
    else:
        assert fast == slow, path


def libyaml(text, filename):
    """The libyaml path alone, raising like load_yaml."""
    value, problems = yamlsrc._libyaml_load(text, filename)
    if problems:
        raise ConfigError(problems)
    return value


def agrees_with_libyaml(text: str) -> None:
    """load_yaml gives libyaml's value, or, where libyaml refuses the text, its errors."""
    try:
        slow = libyaml(text, "t")
    except ConfigError as exc:
        with pytest.raises(ConfigError) as caught:
            load_yaml(text, "t")
        assert caught.value.problems == exc.problems
        return
    same(load_yaml(text, "t"), slow)


def fast_or_none(text):
    try:
        return yamlsrc._fast_load(text)
    except yamlsrc._Fallback:
        return None


def test_example_files_take_the_fast_path_and_agree():
    for path in sorted(glob.glob(os.path.join(ROOT, "chains", "examples", "*.yaml"))):
        text = open(path, encoding="utf-8").read()
        fast = fast_or_none(text)
        if "click: |" not in text:           # block scalars are left to libyaml
            assert fast is not None, path
            same(fast, libyaml(text, path))


def test_generated_benchmark_file_takes_the_fast_path_and_agrees():
    text = generate(200)
    fast = fast_or_none(text)
    assert fast is not None
    same(fast, libyaml(text, "bench"))


@pytest.mark.parametrize("text", [
    "a: &x 1\nb: *x\n",                       # anchors and aliases
    "a: |\n  two\n  lines\n",                 # block scalar
    "a: plain\n  continued\n",                # multi-line plain scalar
    "a: café\n",                              # non-ASCII
    "a: \"esc\\taped\"\n",                    # escapes
    "a: !!str 5\n",                           # tags
    "---\na: 1\n",                            # document marker
    "a:\nb: 1\n",                             # empty value (null)
    "a: [1,\n  2]\n",                         # flow over two lines
    "- - 1\n  - 2\n",                         # nested sequence on one line
    "a: 2001-02-30\n",                        # looks like a date, is not one
    "? a\n: 1\n",                             # explicit key
    "a: 'it''s'\nb: {c: 'x''y'}\n",           # doubled quotes
    "a: \"x\"#c\n",                           # a comment without a space before it
])
def test_outside_the_fast_subset_libyaml_decides(text):
    agrees_with_libyaml(text)


@pytest.mark.parametrize("text", [
    "a: 1\na: 2\n",
    "a: {b: 1, b: 2}\n",
    "a: b: c\n",
    "a:\n  - 1\n - 2\n",
    "a: [1, 2\n",
    "a: 'x'y\n",
])
def test_errors_are_libyamls(text):
    with pytest.raises(ConfigError) as slow:
        libyaml(text, "t")
    with pytest.raises(ConfigError) as fast:
        load_yaml(text, "t")
    assert fast.value.problems == slow.value.problems


@pytest.mark.parametrize("text", [
    "a: 1\nb:\n- x\n- y\nc: 3\n",              # indentless sequence
    "a:\n    b:   c   # comment\n    d: 'q # not a comment'\n",
    "# head\n\n- {a: 1, b: [x, y, {c: d}], e: \"f\"}\n- [ ]\n- {}\n",
    "k: http://host:80/x\nm: 02:00:00:00:00:01\nn: a#b\n",
    "x: -5\ny: 1_000\nz: 0x1F\nw: 1e3\nv: .5\nu: ~\nt: yes\ns: Off\nr: 2026-01-02\n",
    "'quoted key': 1\n\"dq\": {\"a\":1}\n",
    "  indented: 1\n  root: 2\n",
    "list:\n  -   spaced: 1\n      more: 2\n  - x\n",
])
def test_tricky_but_supported(text):
    slow = libyaml(text, "t")
    same(load_yaml(text, "t"), slow)


# ---- generated documents --------------------------------------------------------------------

WORDS = ["web", "fw", "10.0.1.0/24", "80", "8000-8099", "true", "no", "null", "~", "1.5", "0x10", "-3",
         "a b", "x:y", "c#d", "http://h:1", "2026-01-01", "é", "it's", 'say "hi"', "a: b", "[x]", "-", "#",
         "", " lead", "trail ", "tab\there", "back\\slash"]
KEYS = ["name", "hops", "params", "src", "dst_port", "a b", "80", "true", "k-1", "x.y", "null"]


def scalar_text(word: str, flow: bool, style: int) -> str:
    if style == 1:
        return "'" + word.replace("'", "''") + "'"
    if style == 2:
        return '"' + word.replace("\\", "\\\\").replace('"', '\\"').replace("\t", "\\t") + '"'
    return word          # plain: may be invalid YAML, or mean something else; both readers must agree


@st.composite
def documents(draw) -> str:
    """YAML text in many shapes: block and flow, various indents, quoting, comments."""
    step = draw(st.sampled_from([1, 2, 4]))
    lines: list[str] = []

    def value(depth: int, flow: bool) -> object:
        kind = draw(st.sampled_from(["scalar", "scalar", "map", "seq"] if depth < 3 else ["scalar"]))
        if kind == "scalar":
            return scalar_text(draw(st.sampled_from(WORDS)), flow, draw(st.integers(0, 2)))
        size = draw(st.integers(0 if flow else 1, 3))
        if kind == "map":
            return {scalar_text(draw(st.sampled_from(KEYS)), flow, draw(st.integers(0, 2))): value(depth + 1, flow)
                    for _ in range(size)}
        return [value(depth + 1, flow) for _ in range(size)]

    def flow_text(node: object) -> str:
        if isinstance(node, dict):
            return "{" + ", ".join(f"{k}: {flow_text(v)}" for k, v in node.items()) + "}"
        if isinstance(node, list):
            return "[" + ", ".join(flow_text(v) for v in node) + "]"
        return str(node)

    def comment() -> str:
        return draw(st.sampled_from(["", "", " # note", "  #x"]))

    def block(node: object, indent: int) -> None:
        pad = " " * indent
        if isinstance(node, dict):
            for key, item in node.items():
                if isinstance(item, (dict, list)) and item and not draw(st.booleans()):
                    lines.append(f"{pad}{key}:{comment()}")
                    indentless = isinstance(item, list) and draw(st.booleans())
                    block(item, indent if indentless else indent + step)
                elif isinstance(item, (dict, list)):
                    lines.append(f"{pad}{key}: {flow_text(item)}{comment()}")
                else:
                    lines.append(f"{pad}{key}: {item}{comment()}")
        elif isinstance(node, list):
            for item in node:
                if isinstance(item, dict) and item and draw(st.booleans()):
                    # "- key: value" with the rest of the mapping aligned under the first key
                    start = len(lines)
                    block(item, indent + 2)
                    lines[start] = f"{pad}- " + lines[start][indent + 2:]
                elif isinstance(item, (dict, list)):
                    lines.append(f"{pad}- {flow_text(item)}{comment()}")
                else:
                    lines.append(f"{pad}- {item}{comment()}")
                if draw(st.integers(0, 5)) == 0:
                    lines.append(draw(st.sampled_from(["", "# comment", "   "])))

    root = value(0, False)
    if not isinstance(root, dict) or not root:
        root = {"root": root}
    block(root, draw(st.sampled_from([0, 0, 2])))
    return "\n".join(lines) + "\n"


@settings(max_examples=400, deadline=None)
@given(documents())
def test_fast_reader_agrees_with_libyaml(text):
    # invalid YAML included: the fast reader must not accept it
    agrees_with_libyaml(text)
