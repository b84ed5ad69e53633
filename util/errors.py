"""The one base class of the errors a user can fix, and its one-line format.

Every user-facing error of the project (bad data, a wrong flag, a missing checkpoint, a failed
download, ...) derives from `UserError` and carries three parts: `where` (the path or flag at fault),
`problem` (what is wrong) and `fix` (what to do). An entry point catches `UserError` once, through
`util.outputs.run_command`, and prints

    error: <where>: <problem>; <fix>

on one line, without a traceback. Code that re-raises an error with more context builds the new
one from these parts (`CheckpointError(path, exc.problem, hint)`), never by parsing its text.

This module is the lowest layer: it imports nothing from the project.
"""
from __future__ import annotations

import os


class UserError(Exception):
    """A mistake the user can fix: `where` (a path or a flag), `problem`, `fix` (may be empty)."""

    def __init__(self, where: str | os.PathLike, problem: str, fix: str = "") -> None:
        self.where, self.problem, self.fix = str(where), problem, fix
        super().__init__(self.where, problem, fix)

    def __str__(self) -> str:
        return format_error(self.where, self.problem, self.fix)


def format_error(where: str, problem: str, fix: str = "") -> str:
    """The one-line format of a user error: `where: problem; fix` (`; fix` left out when empty)."""
    return f"{where}: {problem}" + (f"; {fix}" if fix else "")
