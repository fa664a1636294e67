"""The `confiture-fast` app: reads the command table and imports a command's module only when that
command runs (or when help or completion lists them all), so `sync` never loads bench or verify."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator, Mapping
from typing import Annotated

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import Terminated

# (command name, module of confiture_fast.cli), in the order `--help` lists them. Each module
# declares HELP and `command`, a function whose parameters are the command's typer options.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("sync", "sync"),
    ("demo", "demo"),
    ("bench", "bench"),
    ("scan", "scan"),
    ("verify", "verify"),
)


class _Commands(Mapping):
    """The command table as click sees it: a command is built the first time it is looked up."""

    def __init__(self, table: tuple[tuple[str, str], ...]):
        self._modules = dict(table)
        self._built: dict = {}

    def __getitem__(self, name: str):
        if name not in self._built:
            module = importlib.import_module(f"{__package__}.{self._modules[name]}")
            single = typer.Typer(add_completion=False, rich_markup_mode=None)
            single.command(name, help=module.HELP)(module.command)
            self._built[name] = typer.main.get_command(single)
        return self._built[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __len__(self) -> int:
        return len(self._modules)


class _TableGroup(TyperGroup):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.commands = _Commands(COMMANDS)

    def list_commands(self, ctx) -> list[str]:
        return list(self.commands)


app = typer.Typer(cls=_TableGroup, add_completion=True, no_args_is_help=True, rich_markup_mode=None,
                  help="Copy a production PostgreSQL database into a local or staging one, "
                       "anonymizing PII on the way.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"confiture-fast {__version__}")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    pass


def main() -> None:
    import signal
    import warnings

    if not sys.warnoptions and "PYTHONWARNINGS" not in os.environ:
        # A library's Python warning is not for the user's screen (ours are printed as "warning: ...");
        # worker processes inherit the setting through the environment.
        warnings.simplefilter("ignore")
        os.environ["PYTHONWARNINGS"] = "ignore"

    def _term(signum, frame):
        raise Terminated

    signal.signal(signal.SIGTERM, _term)
    app()
