"""Findings: every problem hubbot reports, at a file and line."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: what to change, where (1-based line, or None when unknown)."""

    severity: Severity
    path: str
    line: int | None
    rule: str
    message: str

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the output contract."""
        return {
            "severity": self.severity,
            "path": self.path,
            "line": self.line,
            "rule": self.rule,
            "message": self.message,
        }

    @property
    def is_error(self) -> bool:
        """Whether this finding fails validation."""
        return self.severity == "error"


def error(path: str, line: int | None, rule: str, message: str) -> Finding:
    """An error finding."""
    return Finding("error", path, line, rule, message)


def warning(path: str, line: int | None, rule: str, message: str) -> Finding:
    """A warning finding."""
    return Finding("warning", path, line, rule, message)


def sort_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Findings in a stable order: errors first, then by path and line, without duplicates."""
    unique = dict.fromkeys(findings)
    return sorted(
        unique,
        key=lambda f: (f.severity != "error", f.path, f.line or 0, f.rule, f.message),
    )


def has_errors(findings: Iterable[Finding]) -> bool:
    """Whether any finding is an error."""
    return any(f.is_error for f in findings)
