"""The one error type of ClickSteer's input languages (chains, topologies, Click).

Every problem carries where it is (file, line, column, all 1-based) and, for
YAML, the key path (``chains[1].hops[0].params``).  Problems are collected and
reported all at once, compiler style: ``FILE:LINE:COL: message``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    col: int
    message: str
    path: str = ""

    def __str__(self) -> str:
        where = f"{self.path}: " if self.path else ""
        return f"{self.file}:{self.line}:{self.col}: {where}{self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "col": self.col,
                "path": self.path, "message": self.message}


class ConfigError(Exception):
    """Raised with every problem found in one input; nothing was applied."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
