"""`confiture-fast demo`: its flags; the demo itself is confiture_fast.demo."""

from __future__ import annotations

from typing import Annotated

import typer

from ..demo import run_demo
from . import guard
from .options import DebugOpt

HELP = ("Run the whole thing on a throwaway PostgreSQL: a sample production database full of fake "
        "PII, an anonymized sync into a local one, and a look at the result.")


def command(
    ctx: typer.Context,
    users: Annotated[int, typer.Option("--users", min=10, help="Users in the sample shop (orders: 2x).")] = 30_000,
    keep: Annotated[bool, typer.Option("--keep", help="Leave the server running and print the connection strings.")] = False,
    debug: DebugOpt = False,
) -> None:
    app = ctx.find_root()

    def sync(args: list[str]) -> int:
        """The app's own `sync`, as the user would run it (the demo imports no other command)."""
        return app.command.main(["sync", *args], prog_name=app.info_name, standalone_mode=False)

    guard.run(lambda: run_demo(sync, users=users, keep=keep), debug)
