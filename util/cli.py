"""The commands' `--help`: one argparse formatter for every entry point.

It shows each flag's default (`(default: ...)`), also for flags without a help text, and keeps the
description's own line breaks, so the usage examples of a command's docstring print as written.
"""
from __future__ import annotations

import argparse
import copy


def _has_default(action: argparse.Action) -> bool:
    return action.default not in (None, False, argparse.SUPPRESS)


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Defaults shown after each flag's help (not where there is none: None, an off switch, or a help text
    that states it already); description and epilog printed as written."""

    def add_argument(self, action: argparse.Action) -> None:
        if action.help is None and action.option_strings and _has_default(action):
            action = copy.copy(action)  # the parser's own action keeps no help
            action.help = "(default: %(default)s)"
        super().add_argument(action)

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if not _has_default(action) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)
