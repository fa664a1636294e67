"""The package's import graph (issue 13, point 2): no cycle among confiture_fast modules, commands
registered from a table, no command module importing another, application modules free of the
command line, and `sync` importing neither bench, verify nor the sample data, even lazily. Read from
the source with ast; tests/e2e/test_cli_processes.py checks the same in running processes."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

import confiture_fast

PACKAGE = Path(confiture_fast.__file__).parent
COMMANDS = ("sync", "scan", "verify", "bench", "demo")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("confiture_fast", *path.relative_to(PACKAGE).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


@functools.cache
def _imports(module: str, top_level_only: bool = False) -> frozenset[str]:
    """Every confiture_fast module `module` imports, at module level or inside a function (a lazy
    import closes a cycle as surely as an eager one); external modules by their top-level name."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = tree.body if top_level_only else ast.walk(tree)
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.add(alias.name if alias.name.startswith("confiture_fast") else alias.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if not name.startswith("confiture_fast"):
                found.add(name.split(".")[0])
                continue
            submodules = {f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in MODULES}
            found |= submodules
            if len(submodules) < len(node.names):
                found.add(name)
    return frozenset(found)


def _missing(module: str) -> list[str]:
    """The confiture_fast modules `module` imports that do not exist (a lazy import fails only when run)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    compiled = {f"confiture_fast.{p.stem}" for p in PACKAGE.glob("*.pyx")}
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")
            base = base[: len(base) - node.level + 1]
            names = [".".join(base + ([node.module] if node.module else []))]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("confiture_fast"):
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("confiture_fast")]
        else:
            continue
        out += [f"line {node.lineno}: {n}" for n in names if n not in MODULES and n not in compiled]
    return out


@functools.cache
def _graph() -> dict[str, frozenset[str]]:
    return {m: frozenset(d for d in _imports(m) if d in MODULES and d != m) for m in MODULES}


def _cycle(graph: dict[str, frozenset[str]] | dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, as the modules along it, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def _reachable(start: str, graph: dict[str, frozenset[str]]) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    return seen


def test_the_package_has_no_import_cycle():
    assert _cycle(_graph()) is None, " -> ".join(_cycle(_graph()))


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_import_names_a_module_that_exists(module):
    assert _missing(module) == []


def test_the_cycle_finder_finds_a_lazy_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_commands_come_from_one_table_of_one_module_each():
    from confiture_fast.cli.app import COMMANDS as table

    assert tuple(sorted(name for name, _ in table)) == tuple(sorted(COMMANDS))
    for name, module in table:
        assert f"confiture_fast.cli.{module}" in MODULES, name


@pytest.mark.parametrize("command", COMMANDS)
def test_no_command_module_imports_another_command(command):
    others = {f"confiture_fast.cli.{c}" for c in COMMANDS if c != command} | {"confiture_fast.cli.app"}
    assert not _imports(f"confiture_fast.cli.{command}") & others


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith("confiture_fast.cli")
                                          and m != "confiture_fast.__main__"))
def test_application_modules_import_neither_typer_nor_the_cli(module):
    imported = _imports(module)
    assert "typer" not in imported
    assert not {m for m in imported if m.startswith("confiture_fast.cli")}


def test_the_entry_point_stays_light():
    """Spawned workers re-import the main module: it must not load the command line at import."""
    top = _imports("confiture_fast.__main__", top_level_only=True)
    assert not top & {"typer", "rich", "click"} and not {m for m in top if m.startswith("confiture_fast.cli")}


UNWANTED_BY_SYNC = {"confiture_fast.bench", "confiture_fast.verify", "confiture_fast.sample", "confiture_fast.demo"}


def test_sync_does_not_even_lazily_import_bench_verify_or_the_sample_data():
    reachable = _reachable("confiture_fast.cli.sync", _graph())
    assert not reachable & UNWANTED_BY_SYNC
    assert not reachable & {f"confiture_fast.cli.{c}" for c in COMMANDS if c != "sync"}
