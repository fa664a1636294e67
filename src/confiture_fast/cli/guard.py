"""The one error wrapper every command runs its use case through.

Exit codes: the use case's own (0 success, 1 failure), 2 for bad usage or configuration (a
ConfigError: the target untouched), 1 for an internal error, 130 / 143 when interrupted by
SIGINT / SIGTERM. Every message is one line (two with its fix) and leaves through the Redactor;
--debug adds the traceback, redacted too.
"""

from __future__ import annotations

import traceback
from typing import Callable, NoReturn

import typer

from ..errors import ConfiturError, Terminated
from ..redact import Redactor


def run(use_case: Callable[[], int | None], debug: bool, interrupted: str | None = None) -> NoReturn:
    """Runs `use_case` and exits with its code; `interrupted` is what to say on Ctrl-C or SIGTERM."""
    try:
        code = use_case()
    except typer.Exit:
        raise
    except KeyboardInterrupt as exc:
        said = getattr(exc, "message", None) or interrupted  # the use case may know better what was touched
        if said:
            from ..progress import stderr_console

            stderr_console().print(said, markup=False)
        raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None
    except BaseException as exc:  # noqa: BLE001 - every error leaves as one clean message
        raise _fail(exc, debug) from None
    raise typer.Exit(code or 0)


def _fail(exc: BaseException, debug: bool) -> typer.Exit:
    from ..progress import stderr_console

    console = stderr_console()
    if debug:
        console.print(Redactor.clean("".join(traceback.format_exception(exc))), markup=False)
    if isinstance(exc, ConfiturError):
        console.print(Redactor.clean("error: " + exc.render()), markup=False, soft_wrap=True)
        return typer.Exit(exc.exit_code)
    console.print(Redactor.clean(f"error: internal error: {type(exc).__name__}: {exc}"), markup=False)
    console.print("  fix: rerun with --debug and report the traceback", markup=False)
    return typer.Exit(1)
