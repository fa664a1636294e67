"""The strategy registry: every strategy module's declarations, and what the program derives from them.

Each family module (pseudonyms, masks, typed, fake, documents) declares its strategies completely
(see `base.Strategy`). Everything else is derived here: the parameter union a FieldRule carries, the
compiled dispatch codes, verify's output formats and exemptions, scan's suggestions and the table in
docs/strategies.md. Adding a strategy touches its module, its compiled file (_compiled/, which
registers its function in _anon's dispatch table under the strategy's name) and its tests; this
module names no strategy.
"""

from __future__ import annotations

from typing import Any, Mapping, Union

import msgspec

from confiture_fast import _anon
from confiture_fast.errors import RewriteError
from confiture_fast.strategies import documents, fake, masks, pseudonyms, typed
from confiture_fast.strategies.base import (MAX_HEX, UNIQUE_HEX_FLOOR, Params, Strategy,
                                            derive_key, siphash24)
from confiture_fast.strategies.fake import FAKE_POOL_DRAWS

FAMILIES = (pseudonyms, masks, typed, fake, documents)


class IncompleteStrategy(TypeError):
    """A strategy module forgot a part, two strategies claim the same name, or a strategy and its
    compiled function miss each other."""


def _register(families, compiled: Mapping[str, int]) -> dict[str, Strategy]:
    """Strategies by name, in the families' order; refuses an incomplete or clashing declaration. Every
    strategy but those copied through (identity) needs a function of its name in `compiled` (the
    compiled layer's name -> dispatch code), and every compiled function a strategy."""
    found: dict[str, Strategy] = {}
    for family in families:
        for strategy in family.STRATEGIES:
            missing = strategy.missing()
            if missing:
                raise IncompleteStrategy(f"strategy {type(strategy).__name__} in {family.__name__} lacks "
                                         f"{', '.join(missing)}")
            tag = strategy.params_type.__struct_config__.tag
            if tag != strategy.name:
                raise IncompleteStrategy(f"{strategy.name}: its params are tagged {tag!r}")
            if strategy.name in found:
                raise IncompleteStrategy(f"{strategy.name}: name already used in {family.__name__}")
            if strategy.same_row_by_design and strategy.equal_by_design is None:
                raise IncompleteStrategy(f"{strategy.name}: same_row_by_design needs equal_by_design")
            if strategy.identity == (strategy.name in compiled):
                raise IncompleteStrategy(f"{strategy.name}: " + (
                    "writes its input back, so the rewriter copies it: it needs no compiled function"
                    if strategy.identity else
                    "lacks a compiled function (a file in _compiled/ registering one under its name)"))
            found[strategy.name] = strategy
    orphans = sorted(set(compiled) - set(found))
    if orphans:
        raise IncompleteStrategy(f"compiled functions without a strategy: {', '.join(orphans)}")
    return found


STRATEGIES: dict[str, Strategy] = _register(FAMILIES, _anon.CODES)
for _strategy in STRATEGIES.values():
    if _strategy.documents:  # it parses the rules it applies inside documents through the registry
        type(_strategy).lookup = staticmethod(STRATEGIES.get)

AnyParams = Union[tuple(s.params_type for s in STRATEGIES.values())]  # type: ignore[misc]


class FieldRule(msgspec.Struct, frozen=True):
    """One anonymized column of one table, as the rewriters consume it."""

    index: int  # position of the column in the COPY column list
    column: str
    strategy: str
    key: bytes  # 16 bytes from derive_key (any 16 bytes for unkeyed strategies)
    params: AnyParams
    is_array: bool = False  # the column is an array: the strategy rewrites each element
    key_index: int = -1  # per_row_key: position of the column whose value keys the PRF


def parse_params(name: str, raw: dict | None) -> tuple[Params | None, list[str]]:
    """Params Struct for strategy `name` from raw config values, plus the problems found."""
    strategy = STRATEGIES.get(name)
    if strategy is None:
        return None, [f"unknown strategy {name!r} (known: {', '.join(sorted(STRATEGIES))})"]
    return strategy.parse_params(raw)


def json_rules(p: Params) -> list[tuple[list, str, Params]]:
    """The json strategy's (path steps, strategy name, params) in the order given; ValueError on
    the first problem."""
    return documents.inner_rules(p, STRATEGIES.get)


def fake_pools(name: str, locale: str) -> tuple[tuple[str, ...], ...]:
    """The value lists the pool strategy `name` picks from (the compiled rewriter reads them)."""
    return fake.locale_pools(STRATEGIES[name].pool_kind, locale)


def draws_from_pools(name: str) -> bool:
    return hasattr(STRATEGIES[name], "pool_kind")


# name -> entry in the compiled dispatch table; a strategy that writes its input back is copied through.
COMPILED_CODES: dict[str, int] = {name: _anon.COPIED if s.identity else _anon.CODES[name]
                                  for name, s in STRATEGIES.items()}


class _Compiled:
    """What the compiled rewriter asks about a rule: the registry's side of its dispatch table."""

    def __init__(self):
        self.codes = COMPILED_CODES
        self.keyed = frozenset(name for name, s in STRATEGIES.items() if s.keyed)
        self.error = RewriteError

    def pools(self, name: str, params):
        return fake_pools(name, params.locale) if draws_from_pools(name) else None

    def inner_rules(self, params):
        return json_rules(params)

    def inner_rule(self, rule, name: str, params):
        return FieldRule(index=rule.index, column=rule.column, strategy=name, key=rule.key, params=params)


COMPILED = _Compiled()


class Rewriter(_anon.Rewriter):
    """The compiled rewriter of one table's COPY text, dispatching through this registry."""

    def __init__(self, table: str, columns: list, rules: list):
        super().__init__(table, columns, rules, COMPILED)


class BinaryRewriter(_anon.BinaryRewriter):
    """The compiled rewriter of one table's COPY binary data; `jsonb`: indexes of its jsonb(/[]) columns."""

    def __init__(self, table: str, columns: list, rules: list, jsonb=()):
        super().__init__(table, columns, rules, COMPILED, jsonb)


# -- derived views --------------------------------------------------------------------------------
IDENTITY = frozenset(name for name, s in STRATEGIES.items() if s.identity)
NULLING = frozenset(name for name, s in STRATEGIES.items() if s.writes_null)
DOCUMENTS = frozenset(name for name, s in STRATEGIES.items() if s.documents)
NUMERIC_OUT = frozenset(name for name, s in STRATEGIES.items() if s.numeric_out)


def output_format(name: str, params: Any):
    """The shape every non-empty output of strategy `name` has as COPY text, or None."""
    strategy = STRATEGIES.get(name)
    return None if strategy is None else strategy.output_format(params)


# verify: strategies whose output may equal a source value by design (name -> why), and those for
# which even a row keeping its own value can be by design.
EQUAL_BY_DESIGN: dict[str, str] = {n: s.equal_by_design for n, s in STRATEGIES.items() if s.equal_by_design}
SAME_ROW_BY_DESIGN = frozenset(n for n, s in STRATEGIES.items() if s.same_row_by_design)


def _ranked(kinds_of) -> dict[str, tuple[str, ...]]:
    out: dict[str, list[tuple[int, str]]] = {}
    for name, strategy in STRATEGIES.items():
        for kind, rank in kinds_of(strategy).items():
            out.setdefault(kind, []).append((rank, name))
    return {kind: tuple(name for _, name in sorted(ranked)) for kind, ranked in sorted(out.items())}


# scan: PII kind -> strategies to try, best first; the fallbacks on unique columns; the one for
# kinds nobody ranks; the one for values no strategy rewrites inside; params a suggestion needs.
SCAN_PREFERENCES: dict[str, tuple[str, ...]] = _ranked(lambda s: s.scan_ranks)
SCAN_UNIQUE_FALLBACK: tuple[str, ...] = tuple(
    n for n, s in sorted(STRATEGIES.items(), key=lambda i: (i[1].scan_unique_rank or 0))
    if s.scan_unique_rank is not None)
SCAN_FALLBACK: str = next(n for n, s in STRATEGIES.items() if s.scan_fallback)
SCAN_WHOLE_VALUE: str = next(n for n, s in STRATEGIES.items() if s.scan_whole_value)
SCAN_DOCUMENTS: str = next(iter(DOCUMENTS))
SCAN_PARAMS: dict[str, dict[str, Any]] = {n: dict(s.scan_params) for n, s in STRATEGIES.items() if s.scan_params}


# -- docs/strategies.md ---------------------------------------------------------------------------
DOC_BEGIN = "<!-- strategy table: generated from the registry (confiture_fast.strategies.doc_table) -->"
DOC_END = "<!-- end of the generated strategy table -->"


def _param_text(strategy: Strategy) -> str:
    out = []
    for field in msgspec.structs.fields(strategy.params_type):
        if field.name == "allow_duplicates":
            continue
        default = field.default if field.default is not msgspec.NODEFAULT else None
        out.append(f"`{field.name}`" + ("" if field.required else f" = `{default!r}`" if default is not None
                                        else ""))
    return ", ".join(out) or "—"


def doc_table() -> str:
    """The strategies table of docs/strategies.md, between its markers, as the registry declares it."""
    lines = [DOC_BEGIN, "",
             "| strategy | what it writes | output | params | keyed | unique | verify checks the format |",
             "|---|---|---|---|---|---|---|"]
    for name, s in STRATEGIES.items():
        fmt = "yes" if s.output_format(s.params_type(**_required_examples(s))) is not None else "no"
        lines.append(f"| `{name}` | {s.summary} | {s.output} | {_param_text(s)} | {'yes' if s.keyed else 'no'} "
                     f"| {'yes' if s.unique else 'no'} | {fmt} |")
    lines += ["", DOC_END]
    return "\n".join(lines)


def _required_examples(strategy: Strategy) -> dict[str, Any]:
    """Values for the params that have no default, to ask output_format whether a shape exists."""
    examples = {str: "x", dict: {}}
    return {f.name: examples.get(f.type, "x") for f in msgspec.structs.fields(strategy.params_type) if f.required}


__all__ = ["AnyParams", "COMPILED", "COMPILED_CODES", "FAKE_POOL_DRAWS", "FieldRule", "IncompleteStrategy",
           "MAX_HEX", "Params", "RewriteError", "Rewriter", "STRATEGIES", "Strategy", "UNIQUE_HEX_FLOOR",
           "derive_key", "doc_table", "fake_pools", "json_rules", "output_format", "parse_params",
           "siphash24"]
