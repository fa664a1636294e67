"""The end-of-run summary table (pgcopydb-style): one line per table, then totals."""

from __future__ import annotations

from pathlib import Path

import msgspec
from rich.table import Table

from .rules import Declared


def render(result, console, checkpoint: Path | None) -> None:
    table = Table(title="confiture-fast sync", title_justify="left")
    subset = any(t.subset for t in result.tables)  # --where, --sample: say per table what was copied
    for col, justify in (("table", "left"), ("rows", "right"), ("MB", "right"), ("seconds", "right"),
                         ("rows/s", "right"), ("anonymized columns", "left"), ("status", "left")) + \
            ((("copied", "left"),) if subset else ()):
        table.add_column(col, justify=justify)
    for t in result.tables:
        rate = f"{t.rows / t.seconds:,.0f}" if t.seconds > 0 else "-"
        table.add_row(t.table, f"{t.rows:,}", f"{t.bytes / 1e6:,.1f}", f"{t.seconds:.2f}", rate,
                      ", ".join(t.anonymized_columns) or "-", t.status,
                      *([f"subset of {t.rows:,} rows" if t.subset else "whole"] if subset else []))
    rate = f"{result.total_rows / result.seconds:,.0f}" if result.seconds > 0 else "-"
    table.add_section()
    table.add_row("total", f"{result.total_rows:,}", f"{sum(t.bytes for t in result.tables) / 1e6:,.1f}",
                  f"{result.seconds:.2f}", rate, "", "ok" if result.ok else "FAILED", *([""] if subset else []))
    console.print(table)
    render_modes(result.tables, console)
    if result.created or result.not_created:
        console.print(f"--create-schema: created {len(result.created)} object(s) on the target "
                      f"(owned by the target user; grants and roles are not copied)", markup=False)
        for n in result.not_created:
            console.print(f"  not created: {n}", markup=False, soft_wrap=True)
    if checkpoint:
        console.print(f"checkpoint: {checkpoint}")


def render_modes(tables, console) -> None:
    """--incremental: each table's mode, with its rows inserted, updated, deleted, or why it was reloaded."""
    if not any(t.mode == "incremental" or t.reason for t in tables):
        return
    console.print("--incremental:", markup=False)
    for t in tables:
        if t.mode == "incremental" and t.status == "synced":
            console.print(f"  {t.table}: incremental: {t.inserted:,} inserted, {t.updated:,} updated, "
                          f"{t.deleted:,} deleted", markup=False)
        elif t.mode == "incremental":
            console.print(f"  {t.table}: incremental: failed", markup=False)
        else:
            console.print(f"  {t.table}: full reload: {t.reason or 'asked'}", markup=False, soft_wrap=True)


def render_choices(choices, console) -> None:
    """--dry-run --incremental: what each table would get, from the survey's counts."""
    if not choices:
        return
    console.print("--incremental (nothing was written):", markup=False)
    for c in choices:
        if c.mode == "incremental":
            s = c.survey
            console.print(f"  {c.table}: incremental: {s.changed:,} rows to copy (inserted or updated), about "
                          f"{max(0, s.target_rows - s.source_rows + s.changed):,} at most to delete", markup=False)
        else:
            console.print(f"  {c.table}: full reload: {c.reason}", markup=False, soft_wrap=True)


def render_plan(plan, trigger_mode: str, console, schema=None, choices=()) -> None:
    """--dry-run: everything the sync would do, in load order, and nothing done."""
    if schema is not None:
        render_schema(schema, console)
    render_choices([c for c in choices if c.mode == "incremental" or c.reason], console)
    table = Table(title="confiture-fast sync --dry-run: the plan (nothing was written)", title_justify="left")
    for col, justify in (("#", "right"), ("table", "left"), ("rows (est.)", "right"), ("MB (est.)", "right"),
                         ("units", "right"), ("rules", "left"), ("notes", "left")):
        table.add_column(col, justify=justify)
    for n, t in enumerate(plan.tables, 1):
        rules = "\n".join(f"{r.column}: {r.strategy}" + ("" if isinstance(o, Declared) else f" ({o.describe()})")
                          for r, o in zip(t.rules, t.origins, strict=True)) or "-"
        notes = []
        if t.name in plan.completed:
            notes.append("skipped: completed in the checkpoint")
        if t.subset:
            notes.append("subset: the closure's rows")
        if len(t.units) > 1:
            notes.append(f"split into {len(t.units)} " + ("slices" if t.shared_relations else "partitions"))
        if t.units and t.units[0].binary:
            notes.append("binary COPY (same built-in types" + (", rules on text-like columns)" if t.anonymized_columns
                                                                else ")"))
        if t.skipped_generated:
            notes.append("generated, computed on the target: " + ", ".join(t.skipped_generated))
        if t.extra_target_columns:
            notes.append("only on the target (default/NULL): " + ", ".join(t.extra_target_columns))
        table.add_row(str(n), t.name, f"{t.est_rows:,}", f"{t.est_bytes / 1e6:,.1f}", str(len(t.units)), rules,
                      "\n".join(notes))
    console.print(table)
    if plan.subset is not None:
        render_subset(plan.subset, console)
    emptied = [t.name for t in plan.tables if t.name not in plan.completed] + list(plan.cascade)
    console.print(f"will empty (TRUNCATE ONLY, never CASCADE): {', '.join(emptied) or 'nothing'}", markup=False)
    if plan.cascade:
        console.print(f"  of which unselected, emptied because of --cascade: {', '.join(plan.cascade)}", markup=False)
    modes = {"replica": "session_replication_role = replica, and ENABLE ALWAYS / ENABLE REPLICA user triggers "
                        "disabled inside each load's transaction, their modes restored before it commits",
             "disable-user-triggers": "every enabled user trigger disabled inside each load's transaction, its "
                                      "mode restored before it commits"}
    console.print(f"triggers during the load: {modes[trigger_mode]}", markup=False)
    fks = [d for d in plan.deferred if d.phase == 2]
    idx = [d for d in plan.deferred if d.phase == 1]
    console.print(f"deferred: {len(idx)} indexes/keys and {len(fks)} foreign keys dropped before the load and "
                  "rebuilt after it", markup=False)
    for d in plan.deferred:
        console.print(f"  {d.table}: {d.name}", markup=False)
    if plan.kept:
        console.print(f"kept in place (loaded with them, maintained row by row): {len(plan.kept)}", markup=False)
    for k in plan.kept:
        console.print(f"  {k.table}: {k.name} ({k.why})", markup=False)
    follow = sum(s.source is None for s in plan.sequences)
    console.print(f"sequences reset to the source's values: {len(plan.sequences) - follow}"
                  + (f", set past the loaded values (no sequence on the source): {follow}" if follow else ""),
                  markup=False)
    changes = [c for t in plan.tables for c in t.type_changes]
    console.print(f"type differences accepted (lossless, values kept): {len(changes)}", markup=False)
    for c in changes:
        console.print(f"  {c}", markup=False, soft_wrap=True)


def render_subset(subset, console) -> None:
    """--dry-run with --where/--sample: the roots, the closure's steps in the order it takes them, the rows
    it counted per table (under the snapshot), and the sequential scans its plan does on the source."""
    for g in subset.groups:
        console.print("subset roots: " + "; ".join(
            f"{s.table} WHERE " + " AND ".join([*s.conditions, *([f"sample {s.sample:g}%"] if s.sample else [])])
            for s in g.seeds), markup=False, soft_wrap=True)
        console.print(f"closure steps, in order ({len(g.edges)}):", markup=False)
        for n, e in enumerate(g.edges, 1):
            console.print(f"  {n}. {e.describe}", markup=False, soft_wrap=True)
        console.print("rows per table (counted under the snapshot): " + ", ".join(
            f"{t} {subset.rows.get(t, 0):,}" for t in g.tables), markup=False, soft_wrap=True)
    console.print(f"copied whole (no foreign-key path to a root): {', '.join(subset.whole) or 'none'}", markup=False,
                  soft_wrap=True)
    console.print("sequential scans of the source the closure does (no index on the foreign-key columns it "
                  f"follows, or the planner prefers one): {', '.join(subset.scans) or 'none'}", markup=False,
                  soft_wrap=True)


def render_schema(schema, console) -> None:
    """--dry-run --create-schema: what would be created, in order, and what would not."""
    console.print(f"--create-schema: {schema.count} object(s) would be created on the target (owned by the target "
                  "user; grants and roles are not copied)", markup=False)
    for line in schema.listing():
        console.print(f"  {line}", markup=False, soft_wrap=True)
    for n in schema.not_created:
        console.print(f"  not created: {n}", markup=False, soft_wrap=True)


def plan_json(plan, schema=None, choices=()) -> str:
    """--dry-run --format json: the plan without the rules' keys, which are derived from the secret
    (with one, anyone could test guesses against the pseudonyms)."""
    data = msgspec.to_builtins(plan)
    for table in data["tables"]:
        for rule in table["rules"]:
            del rule["key"]
    if choices:
        data["incremental"] = [{"table": c.table, "mode": c.mode, "reason": c.reason,
                                "changed_rows": c.survey.changed if c.survey else None,
                                "source_rows": c.survey.source_rows if c.survey else None,
                                "target_rows": c.survey.target_rows if c.survey else None} for c in choices]
    if schema is not None:
        data["create_schema"] = {"create": schema.listing(), "not_created": list(schema.not_created),
                                 "count": schema.count}
    return msgspec.json.encode(data).decode()
