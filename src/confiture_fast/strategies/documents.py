"""The json strategy: other strategies applied at paths inside json/jsonb documents."""

from __future__ import annotations

from typing import Callable, Union

from confiture_fast.catalog import Column
from confiture_fast.copytext import parse_json_path
from confiture_fast.strategies.base import Params, Strategy


class JsonParams(Params, tag="json"):
    # JSON path -> strategy name, or {"strategy": name, <its params>}
    paths: dict[str, Union[str, dict]]


def inner_rules(p: JsonParams, lookup: Callable[[str], Strategy | None]) -> list[tuple[list, str, Params]]:
    """The (path steps, strategy name, params) in the order given, each strategy found by `lookup`
    (the registry); ValueError on the first problem."""
    out = []
    for path, spec in p.paths.items():
        steps = parse_json_path(path)
        raw = {"strategy": spec} if isinstance(spec, str) else dict(spec)
        name = raw.pop("strategy", None)
        strategy = lookup(name) if isinstance(name, str) else None
        if strategy is None or strategy.documents:
            raise ValueError(f"{path}: unknown or unusable strategy {name!r}")
        params, problems = strategy.parse_params(raw)
        if problems:
            raise ValueError(f"{path}: {'; '.join(problems)}")
        if getattr(params, "per_row_key", None):
            raise ValueError(f"{path}: per_row_key is not available inside json")
        out.append((steps, name, params))
    return out


class JsonStrategy(Strategy):
    """Applies other strategies at paths inside json/jsonb values; the rest stays byte-identical."""

    name, params_type = "json", JsonParams
    categories = frozenset("U")
    documents = True
    summary = "other strategies applied at JSON paths; the rest of the document byte-identical"
    output = "the document, rewritten at the paths"
    equal_by_design = "documents without the ruled paths stay as they are"
    same_row_by_design = True
    scan_ranks = {}
    lookup: Callable[[str], Strategy | None] = staticmethod(lambda name: None)  # set by the registry

    def validate(self, p: JsonParams, problems):
        if not p.paths:
            problems.append("paths is empty")
        try:
            inner_rules(p, self.lookup)
        except ValueError as e:
            problems.append(str(e))

    def check_column(self, p, column: Column) -> str | None:
        if column.is_array:
            return f"{self.name} on {column.name} ({column.described}): arrays of json are not supported"
        if column.base_type not in ("json", "jsonb"):
            return f"{self.name} works on json and jsonb columns; {column.name} is {column.described}"
        return None

    def reference(self, p, value, digest):
        raise ValueError(f"{self.name} rewrites whole documents, not single values")

    def output_format(self, p):
        return None


STRATEGIES = (JsonStrategy(),)
