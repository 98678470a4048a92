"""Conformance: our verdicts against a real Click 2.1 build (``click -q``), when one is at hand.

Set CLICKSTEER_CLICK to the path of Click's user-level ``click`` binary to run
these; without it they are skipped.  Configurations are generated from a fixed
seed (chains, compounds with formals and overloads, groups, port lists and
``=>``, variables, and character-level mutations of all of these) and use only
elements whose catalog versions agree with Click's, so a mismatch points at the
language toolkit.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from clickos_agent.click.check import check

CLICK = os.environ.get("CLICKSTEER_CLICK", "")
pytestmark = pytest.mark.skipif(not (CLICK and os.access(CLICK, os.X_OK)),
                                reason="set CLICKSTEER_CLICK to a Click 2.1 'click' binary")

ELEMENTS = ["Null", "Counter", "Queue", "Queue(3)", "Tee", "Tee(1)", "Strip(1)", "Paint(1)", "Print(x)"]


def _element(rng: random.Random, depth: int) -> str:
    r = rng.random()
    if depth < 2 and r < 0.1:
        return "( " + _body(rng, depth + 1) + " )"
    if depth < 2 and r < 0.2:
        return "{ " + _body(rng, depth + 1) + " }"
    if r < 0.35:
        return rng.choice(["C0", "C1", "C1(4)", "C2(KEY 2)", "C2(1, KEY 2)"])
    return rng.choice(ELEMENTS)


def _body(rng: random.Random, depth: int) -> str:
    items = [_element(rng, depth) for _ in range(rng.randint(0, 2))]
    start, end = rng.choice(["input", "[0]", ""]), rng.choice(["output", "[0]", ""])
    text = " -> ".join(([start] if start else []) + items + ([end] if end else [])) or "input -> output"
    return ("-> " if not start and items else "") + text + (" ->" if not end and items else "")


def _program(rng: random.Random) -> str:
    lines = ["elementclass C0 { input -> Null -> output }",
             "elementclass C1 { $n | input -> Queue($n) -> output || input -> Counter -> output }",
             "elementclass C2 { $a, KEY $k | input -> Queue(${k-1}) -> output || input -> Null -> output }"
             if rng.random() < 0.5 else "elementclass C2 { __REST__ $r | input -> Print($r) -> output }"]
    if rng.random() < 0.4:
        lines.append(f"define($v {rng.choice(['5', 'x', '', '$w'])})")
    for _ in range(rng.randint(1, 3)):
        chain = ["Idle"] + [_element(rng, 0) for _ in range(rng.randint(0, 3))] + [rng.choice(["Discard", "Idle"])]
        lines.append(" -> ".join(chain) + ";")
    lines.append(rng.choice(["", "t :: Tee(2); Idle -> t => Discard, Discard;", "Idle -> Queue($v) -> Discard;",
                             "a, b :: Idle; a [0,1] => [0,1] b;", "q :: Queue; Idle -> q -> Discard; q -> Discard;",
                             "Idle => (-> Null ->), Discard;", "x :: C1(2, 3); Idle -> x -> Discard;"]))
    text = "\n".join(lines)
    for _ in range(rng.choice([0, 0, 1, 2])):
        i = rng.randrange(len(text))
        text = rng.choice([text[:i] + text[i + 1:],
                           text[:i] + rng.choice("()[]{};,:->|$/*\"'\n@1") + text[i:]])
    return text


def _click_accepts(text: str, tmp: Path) -> bool:
    path = tmp / "config.click"
    path.write_text(text)
    done = subprocess.run([CLICK, "-q", str(path)], capture_output=True, timeout=30)
    return done.returncode == 0


@pytest.mark.parametrize("seed", range(4))
def test_verdicts_match_click(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    mismatches = []
    for _ in range(60):
        text = _program(rng)
        ours = check(text, "config.click")
        if ours.ok != _click_accepts(text, tmp_path):
            mismatches.append((text, [str(e) for e in ours.errors]))
    assert not mismatches, mismatches[:3]
