"""Tables and progress for people, with `rich` (a CLI dependency only: no Lambda handler imports this module).

Tables are sized to their data. On a terminal they fit its width and severities are coloured; anywhere else (a
pipe, a file, a test) nothing is coloured and nothing wraps, so that every row stays on one line.
"""

from __future__ import annotations

import io
import sys

SEVERITY_ORDER = {"CRITICAL": 0, "HIGH": 1, "MEDIUM": 2, "LOW": 3, "INFORMATIONAL": 4}
SEVERITY_STYLES = {"CRITICAL": "bold white on red", "HIGH": "bold red", "MEDIUM": "yellow", "LOW": "cyan", "INFORMATIONAL": "dim"}


def is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _console(file, color: bool, width: int | None = None):
    from rich.console import Console

    return Console(file=file, force_terminal=color, no_color=not color, color_system="standard" if color else None,
                   width=width if width else (None if color else 100_000), highlight=False, emoji=False, markup=False,
                   soft_wrap=False)


def table(columns: list[str], rows: list[list[str]], color: bool = False, indent: int = 0, severity_column: str | None = "SEVERITY",
          width: int | None = None) -> str:
    """A table as text: a header, one line per row, columns as wide as their widest cell."""
    from rich.padding import Padding
    from rich.table import Table
    from rich.text import Text

    grid = Table(box=None, pad_edge=False, show_edge=False, header_style="bold" if color else "", expand=False)
    for column in columns:
        grid.add_column(column, no_wrap=not color, overflow="fold")
    index = columns.index(severity_column) if severity_column in columns else None
    for row in rows:
        cells = [Text(str(cell)) for cell in row]
        if index is not None and color:
            cells[index].stylize(SEVERITY_STYLES.get(str(row[index]), ""))
        grid.add_row(*cells)
    buffer = io.StringIO()
    _console(buffer, color, width).print(Padding(grid, (0, 0, 0, indent)) if indent else grid)
    return "\n".join(line.rstrip() for line in buffer.getvalue().rstrip("\n").split("\n"))


def severity(text: str, color: bool) -> str:
    """One severity word, coloured on a terminal."""
    if not color:
        return text
    from rich.text import Text

    buffer = io.StringIO()
    _console(buffer, True).print(Text(text, style=SEVERITY_STYLES.get(text, "")), end="")
    return buffer.getvalue()


class Progress:
    """A one-line progress indicator on stderr when it is a terminal; silent otherwise (pipes, CI, tests)."""

    def __init__(self, stream=None, enabled: bool = True):
        self.stream = stream or sys.stderr
        self.enabled = enabled and is_terminal(self.stream)

    def say(self, text: str) -> None:
        if self.enabled:
            self.stream.write(f"\r{text}\033[K")
            self.stream.flush()

    def __call__(self, unit, done: int, known: int) -> None:  # scanner.scan's on_unit_done
        self.say(f"scanned {done}/{known} account-regions ({unit.account_id} {unit.region})")

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()
