"""The rules of a rules file resolved against a source catalog, once, for every command: which rule each
column gets and where it comes from (written in the file, propagated through a foreign key, inherited from
a parent table), and every problem with them. Sync's plan, `sync --strict`, scan and verify all read
`resolve`, so they agree on what is covered and on what conflicts."""

from __future__ import annotations

from typing import Any

import msgspec

from . import strategies
from .catalog import Catalog, Column, Table, UniqueUse, ambiguous, display_name
from .config import RuleSpec, Rules


class Declared(msgspec.Struct, frozen=True, tag_field="origin", tag="declared"):
    """Written in the rules file, for this column."""

    path: str
    line: int

    def describe(self) -> str:
        return f"{self.path}:{self.line}"


class Propagated(msgspec.Struct, frozen=True, tag_field="origin", tag="propagated"):
    """The rule of the column a foreign key references, so that joins still match on the target."""

    foreign_key: str
    table: str  # display name of the referenced table
    column: str

    def describe(self) -> str:
        return f"propagated from {self.table}.{self.column}"


class Inherited(msgspec.Struct, frozen=True, tag_field="origin", tag="inherited"):
    """The rule of the same column of an inheritance parent (COPY of a parent reads none of a child's rows)."""

    table: str  # display name of the parent
    column: str

    def describe(self) -> str:
        return f"inherited from {self.table}.{self.column}"


Origin = Declared | Propagated | Inherited


class Rule(msgspec.Struct, frozen=True):
    """The rule one column of the source gets."""

    table: tuple[str, str]  # (schema, name) of the column's table
    column: str
    spec: RuleSpec  # as written; for a spread rule, the one written where it starts (its seed, its line)
    params: Any  # spec's parameters parsed (strategies.parse_params); None in a refused rule
    origin: Origin  # where it comes from: the last hop of a spread rule

    @property
    def strategy(self) -> str:
        return self.spec.strategy


class Resolution(msgspec.Struct, frozen=True):
    """What `resolve` found; a command that runs with problems left would act on other rules than written."""

    rules: tuple[Rule, ...]  # one per ruled column: written ones in file order, then spread ones
    refused: tuple[Rule, ...]  # written on a table of the source, but invalid: spread nowhere
    problems: tuple[str, ...]  # each with FILE:LINE, or the table.column it is about

    def by_table(self) -> dict[tuple[str, str], dict[str, Rule]]:
        out: dict[tuple[str, str], dict[str, Rule]] = {}
        for r in self.rules:
            out.setdefault(r.table, {})[r.column] = r
        return out

    def covering(self) -> dict[tuple[tuple[str, str], str], Rule]:
        """(table key, column) -> the rule that marks it reviewed, for scan: a refused rule counts too,
        as somebody wrote it (sync refuses to run with it, and says why)."""
        return {(r.table, r.column): r for r in self.refused + self.rules}


def resolve(source: Catalog, rules: Rules | None, target: Catalog | None = None) -> Resolution:
    """Every rule of `rules` validated against the source (and the target's columns, when given, which
    a rule's output must fit), then spread to a fixed point: a rule on a column of an inheritance parent
    covers that column in every descendant at any depth, with the same seed so that pseudonyms agree;
    a rule on a referenced column covers the referencing columns. A different rule already there
    (written, or arrived another way) is a conflict, reported once; the rule that was there stays."""
    if rules is None:
        return Resolution((), (), ())
    problems: list[str] = []
    found: dict[tuple[str, str], dict[str, Rule]] = {}
    written: list[Rule] = []
    refused: list[Rule] = []
    path = str(rules.path)
    written_as: dict[tuple[str, str], str] = {}
    for key, specs in rules.tables.items():
        hits = source.find(key)
        if len(hits) != 1:
            problems.append(f"{path}:{specs[0].line if specs else 0}: {key}: "
                            f"{'no such table on the source' if not hits else ambiguous(source, hits)}")
            continue
        table = hits[0]
        if table.key in written_as:
            problems.append(f"{path}:{specs[0].line if specs else 0}: {key}: names the same table as "
                            f"{written_as[table.key]}: put its rules under one key")
            continue
        written_as[table.key] = key
        dst = _target_table(target, table)
        for spec in specs:
            params, why = _declared(table, dst, spec)
            rule = Rule(table.key, spec.column, spec, params, Declared(path, spec.line))
            problems += [f"{path}:{spec.line}: {table.display}.{spec.column}: {w}" for w in why]
            if why:
                refused.append(rule)
            else:
                written.append(rule)
                found.setdefault(table.key, {})[spec.column] = rule
    spread = _spread(source, found, problems)
    for rule in spread:
        table = source.tables[rule.table]
        if (why := _placement(table, _target_table(target, table), rule.spec, rule.params, rule.column)):
            problems.append(f"{path}:{rule.spec.line}: {table.display}.{rule.column} (rule "
                            f"{rule.origin.describe()}): {why}")
    return Resolution(tuple(written + spread), tuple(refused), tuple(problems))


def _target_table(target: Catalog | None, table: Table) -> Table:
    """The table a rule's output must fit: the target's, else (no target, or not there) the source's."""
    return (target.tables.get(table.key) if target is not None else None) or table


def _declared(table: Table, dst: Table, spec: RuleSpec) -> tuple[Any, list[str]]:
    """(parsed params, why the written rule cannot be applied: empty when it can)."""
    col = table.column(spec.column)
    if col is None:
        return None, ["no such column on the source"]
    if col.generated:
        return None, ["generated column, computed on the target: anonymize the columns it is computed from"]
    if spec.strategy not in strategies.STRATEGIES:
        return None, [f"unknown strategy {spec.strategy!r} (known: {', '.join(sorted(strategies.STRATEGIES))})"]
    params, why = strategies.parse_params(spec.strategy, {**spec.params, "allow_duplicates": spec.allow_duplicates})
    if not why and (misplaced := _placement(table, dst, spec, params, spec.column)):
        why = [misplaced]
    return (None if why else params), why


def _placement(table: Table, dst: Table, spec: RuleSpec, params, column: str) -> str | None:
    """Why a valid rule cannot go on `column` of `table`: its per-row key is not a copied column there, or
    its output does not fit the target column."""
    key_col = getattr(params, "per_row_key", None)
    if key_col is not None and (table.column(key_col) is None or table.column(key_col).generated):
        return f"per_row_key {key_col!r} is not a copied column of {table.display}"
    col = table.column(column)
    return _fit_problem(spec, params, col, dst.column(column) or col)


def _same(a: Rule, b: Rule) -> bool:
    return (a.spec.strategy, a.spec.seed, a.params) == (b.spec.strategy, b.spec.seed, b.params)


def _spread(catalog: Catalog, found: dict[tuple[str, str], dict[str, Rule]], problems: list[str]) -> list[Rule]:
    """Extends `found` in place along inheritance and foreign keys to a fixed point; returns the rules
    added, in the order they arrived. A conflict is reported once per column and origin: the rule
    already there never changes, so neither does the comparison."""
    added: list[Rule] = []
    reported: set[tuple[tuple[str, str], str, Origin]] = set()

    def arrive(t: Table, col: str, rule: Rule, origin: Origin) -> bool:
        mine = found.setdefault(t.key, {})
        if col not in mine:
            mine[col] = Rule(t.key, col, rule.spec, rule.params, origin)
            added.append(mine[col])
            return True
        if not _same(mine[col], rule) and (t.key, col, origin) not in reported:
            reported.add((t.key, col, origin))
            how = f"which it references ({origin.foreign_key})" if isinstance(origin, Propagated) else "which it inherits"
            problems.append(f"{t.display}.{col}: its rule differs from the rule on {origin.table}.{origin.column}, "
                            f"{how}: use the same strategy and seed, or remove it")
        return False

    changed = True
    while changed:
        changed = False
        for t in catalog.tables.values():
            for parent in t.parents:
                for col, rule in list(found.get(parent, {}).items()):
                    if t.column(col) is not None:
                        changed |= arrive(t, col, rule, Inherited(display_name(*parent), col))
            for fk in t.foreign_keys:
                theirs = found.get(fk.ref_table, {})
                for col, ref_col in zip(fk.columns, fk.ref_columns):
                    if ref_col in theirs:
                        changed |= arrive(t, col, theirs[ref_col],
                                          Propagated(fk.name, display_name(*fk.ref_table), ref_col))
    return added


def _fit_problem(spec: RuleSpec, params, col: Column, dst_col: Column) -> str | None:
    """Why a rule's output cannot go into the target column `dst_col` (its type through domains, its
    length, NOT NULL), or could break a unique index that reads the column."""
    fit = strategies.STRATEGIES[spec.strategy].check_column(params, dst_col)
    if fit or spec.allow_duplicates:
        return fit
    return unique_conflict(spec.strategy, params, col, dst_col)


def unique_conflict(name: str, params, col: Column, dst_col: Column | None = None) -> str | None:
    """Why strategy `name` could make two rows equal under a unique index that reads the column, on
    the source (`col`: the target may get its indexes rebuilt) or the target (`dst_col`), else None."""
    if name in strategies.IDENTITY:
        return None
    dst_col = dst_col or col
    uses = [(u, "source") for u in col.unique_indexes if u not in dst_col.unique_indexes]
    uses += [(u, "target" if dst_col is not col else "") for u in dst_col.unique_indexes]
    if not uses and (col.unique or dst_col.unique):
        uses = [(UniqueUse("of a PRIMARY KEY or UNIQUE key", "key"), "")]
    unique = strategies.STRATEGIES[name].is_unique(params)
    return next((why for use, side in uses if (why := _unique_problem(name, unique, use, side)) is not None), None)


def _unique_problem(name: str, unique: bool, use, side: str) -> str | None:
    """Whether a rule can make two rows equal under a unique index that reads its column: a non-unique
    strategy on a key or inside a key expression; a unique one inside an expression other than lower()
    or upper() of the column (left(email, 8) of two pseudonyms can be equal); any rule on a column of
    the predicate of a partial index, which decides the rows it covers (only the null strategy, when
    the predicate only tests the column for NULL: every other strategy keeps NULL and non-NULL); any
    rule on what an exclusion constraint compares with another operator than `=`."""
    index = use.index + (f" ({side})" if side else "")
    fix = "or add allow_duplicates: true"
    if use.role in ("key", "expression") and not unique:
        inside = f", inside its key {use.expression}" if use.role == "expression" else ""
        return (f"{name!r} can map different values to the same output, but the column is in a UNIQUE index or "
                f"constraint ({index}{inside}): use a unique-preserving strategy (email, hash, uuid) {fix}")
    if use.role == "expression" and not use.case_only:
        return (f"{name!r} keeps different values different, but the UNIQUE index {index} keys on {use.expression}, "
                f"which can map two of its outputs to one: key the index on the column (or lower()/upper() of it) {fix}")
    if use.role == "exclusion":
        return (f"{name!r} changes values that the exclusion constraint {index} compares ({use.expression}), which "
                f"can make two rows conflict: keep the column {fix}")
    if use.role == "predicate" or (use.role == "null_test" and name in strategies.NULLING):
        return (f"{name!r} changes which rows the partial UNIQUE index {index} covers (the column is in its WHERE), "
                f"which can bring rows with equal keys under it: keep the column {fix}")
    return None
