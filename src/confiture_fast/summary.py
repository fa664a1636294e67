"""The end-of-run summary table (pgcopydb-style): one line per table, then totals."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table


def render(result, console, checkpoint: Path | None) -> None:
    table = Table(title="confiture-fast sync", title_justify="left")
    for col, justify in (("table", "left"), ("rows", "right"), ("MB", "right"), ("seconds", "right"),
                         ("rows/s", "right"), ("anonymized columns", "left"), ("status", "left")):
        table.add_column(col, justify=justify)
    for t in result.tables:
        rate = f"{t.rows / t.seconds:,.0f}" if t.seconds > 0 else "-"
        table.add_row(t.table, f"{t.rows:,}", f"{t.bytes / 1e6:,.1f}", f"{t.seconds:.2f}", rate,
                      ", ".join(t.anonymized_columns) or "-", t.status)
    rate = f"{result.total_rows / result.seconds:,.0f}" if result.seconds > 0 else "-"
    table.add_section()
    table.add_row("total", f"{result.total_rows:,}", f"{sum(t.bytes for t in result.tables) / 1e6:,.1f}",
                  f"{result.seconds:.2f}", rate, "", "ok" if result.ok else "FAILED")
    console.print(table)
    for c in result.constraints:
        if not c.valid:
            console.print(f"warning: {c.table}: foreign key {c.name} is violated by the loaded rows "
                          f"({c.error}); it was recreated NOT VALID", markup=False)
    if checkpoint:
        console.print(f"checkpoint: {checkpoint}")
