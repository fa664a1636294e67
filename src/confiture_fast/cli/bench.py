"""`confiture-fast bench`: its flags, checked and parsed into bench.Options, and the report's rendering."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Optional

import msgspec
import typer

from ..bench import (DEFAULT_ROWS, PRODUCTION_SETTINGS, BenchFormat, Options, _parse_shape, markdown,
                     parse_server_settings, render, run_bench, svg_chart)
from ..errors import ConfigError
from ..redact import Redactor
from ..request import LoadOptions
from . import guard
from .options import DEFAULT_ENV_DIR, BatchSizeOpt, DebugOpt, EnvDirOpt, ParallelOpt, load_options

HELP = """Measure this tool against a raw COPY pipe on the same machine, and find the best settings.

\b
  confiture-fast bench                                   # two throwaway servers, users table
  confiture-fast bench --sweep --plot bench.svg          # also --parallel 1,2,4 x --batch-size 1000,5000,20000
  confiture-fast bench --rows 1000000 --shape users,orders,events
  confiture-fast bench --from scratch --to staging       # your servers, in a scratch schema

With --from/--to the bench creates, fills and drops a scratch schema confiture_fast_bench in BOTH
databases: it writes into --from as well as --to, so neither may be a protected environment.

Every run loads the same rows into the same target tables (emptied before each run, indexes
present); repetitions are interleaved; ratios are to the raw libpq pipe measured in the same run.

The throwaway servers run with production-like settings by default: {production}
(fsync and full_page_writes off, as on every throwaway server); --server-settings default gives the
server's own defaults (shared_buffers 128MB) as earlier benches had. The report shows the settings
each server runs with, read back from it, also for --from/--to.
""".format(production=", ".join(f"{k} = {v}" for k, v in PRODUCTION_SETTINGS.items()))


def command(
    source: Annotated[Optional[str], typer.Option("--from", help="Source server (environment name or URI), into which the bench WRITES its scratch schema; never a protected one; default: a throwaway one.")] = None,
    target: Annotated[Optional[str], typer.Option("--to", help="Target server (environment name or URI), into which it writes too; never a protected one.")] = None,
    env_dir: EnvDirOpt = DEFAULT_ENV_DIR,
    rows: Annotated[int, typer.Option("--rows", min=100, help="Rows of users, wide and plain; orders get 2x, events 5x.")] = DEFAULT_ROWS,
    shape: Annotated[str, typer.Option("--shape", help="users, wide, plain, all (users+wide+plain), or a list of tables: users,orders,events.")] = "users",
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="Interleaved rounds; medians and spreads over them.")] = 3,
    sweep: Annotated[bool, typer.Option("--sweep", help="Run the sync (anonymized when the tables have rules) with --parallel 1,2,4 x --batch-size 1000,5000,20000, and recommend one.")] = False,
    parallel: ParallelOpt = None,
    batch_size: BatchSizeOpt = str(LoadOptions().batch_size),
    pg_bin: Annotated[Optional[Path], typer.Option("--pg-bin", help="PostgreSQL bin folder of the throwaway servers (default: the embedded PostgreSQL 18).")] = None,
    pgcopydb: Annotated[bool, typer.Option("--pgcopydb", help="Also time `pgcopydb clone` of the same tables (its pg_dump must handle the servers' version).")] = False,
    server_settings: Annotated[Optional[str], typer.Option("--server-settings", metavar="PROFILE", help="Settings of the throwaway servers: production (the default: shared_buffers 1GB, max_wal_size 8GB, checkpoint_timeout 30min, synchronous_commit off) or default (the server's own, as earlier benches ran).")] = None,
    server_setting: Annotated[Optional[list[str]], typer.Option("--server-setting", metavar="NAME=VALUE", help="One more setting of both throwaway servers, on top of --server-settings; repeatable, e.g. --server-setting fsync=on.")] = None,
    floor: Annotated[bool, typer.Option("--floor", help="Also measure the physical floor each round: COPY TO, COPY FROM without indexes and the index builds, timed one by one, summed, divided by the cores; every run's time is shown as a multiple of it.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also say where each sync's seconds go: start-up until the first row, load, finish (index builds, ANALYZE).")] = False,
    incremental: Annotated[bool, typer.Option("--incremental", help="Instead: a full anonymized sync of users (--rows), orders (2x) and events (5x), then about 1% of each changed, then sync --incremental, then --incremental again with nothing changed: the three times.")] = False,
    subset: Annotated[Optional[float], typer.Option("--subset", metavar="P", min=0.001, max=100, help="Instead: time a --sample of P% of users with its foreign-key closure against the full sync of users (--rows), orders (2x) and order_lines (4x), foreign keys indexed.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write an SVG chart of throughput per configuration here.")] = None,
    fmt: Annotated[BenchFormat, typer.Option("--format", help="text; json: one JSON object on stdout; markdown: the table for a doc.")] = BenchFormat.text,
    debug: DebugOpt = False,
) -> None:
    guard.run(lambda: _bench(source, target, env_dir, rows, shape, repeat, sweep, parallel, batch_size, pg_bin,
                             pgcopydb, plot, fmt, server_settings, server_setting or [], floor, verbose, subset,
                             incremental), debug,
              interrupted="interrupted: the scratch schema was dropped")


def _bench(source, target, env_dir, rows, shape, repeat, sweep, parallel, batch_size, pg_bin, pgcopydb, plot,
           fmt, server_settings, server_setting, floor, verbose, subset=None, incremental=False) -> int:
    from ..progress import stderr_console

    console = stderr_console()
    if (source is None) != (target is None):
        raise ConfigError("--from and --to go together", "give both, or neither for the throwaway servers")
    if pg_bin is not None and source is not None:
        raise ConfigError("--pg-bin is for the throwaway servers", "leave it out with --from/--to")
    if pgcopydb and source is not None:
        raise ConfigError("--pgcopydb runs only on the throwaway servers",
                          "leave it out with --from/--to: pgcopydb clone would write outside the scratch schema")
    if (server_settings is not None or server_setting) and source is not None:
        raise ConfigError("--server-settings and --server-setting are for the throwaway servers",
                          "leave them out with --from/--to: the report shows your servers' settings as they are")
    settings = parse_server_settings(server_settings, list(server_setting))
    opts = Options(source=source, target=target, env_dir=str(env_dir), rows=rows, shape=_parse_shape(shape),
                   repeat=repeat, sweep=sweep, load=load_options(parallel, batch_size=batch_size),
                   pg_bin=str(pg_bin) if pg_bin else None, pgcopydb=pgcopydb,
                   server_settings=settings, floor=floor, verbose=verbose,
                   command=shlex.join(["confiture-fast", *sys.argv[1:]]))
    log = lambda msg: print(Redactor.clean(msg), file=sys.stderr, flush=True)  # noqa: E731
    if incremental:
        if source is not None:
            raise ConfigError("--incremental runs only on the throwaway servers", "leave out --from/--to")
        from ..bench_incremental import render_incremental, run_incremental_bench

        report = run_incremental_bench(opts, log)
        if fmt is BenchFormat.json:
            sys.stdout.write(msgspec.json.encode({**msgspec.structs.asdict(report), "ratios": report.ratios}).decode()
                             + "\n")
        else:
            from rich.console import Console

            render_incremental(report, Console(stderr=fmt is not BenchFormat.text))
        return 0
    if subset is not None:
        if source is not None:
            raise ConfigError("--subset runs only on the throwaway servers", "leave out --from/--to")
        from ..bench import render_subset, run_subset_bench

        result = run_subset_bench(opts, subset, log)
        if fmt is BenchFormat.json:
            sys.stdout.write(msgspec.json.encode({**msgspec.structs.asdict(result), "ratio": result.ratio}).decode() + "\n")
        else:
            from rich.console import Console

            render_subset(result, Console(stderr=fmt is not BenchFormat.text))
        return 0
    report = run_bench(opts, log)
    report.command = Redactor.clean(report.command)
    if plot is not None:
        plot.parent.mkdir(parents=True, exist_ok=True)
        plot.write_text(svg_chart(report))
    if fmt is BenchFormat.json:
        sys.stdout.write(Redactor.clean(msgspec.json.encode(report).decode()) + "\n")
    elif fmt is BenchFormat.markdown:
        sys.stdout.write(Redactor.clean(markdown(report)))
    else:
        from rich.console import Console

        render(report, Console(width=max(Console().width, 150)))
        if plot is not None:
            console.print(f"chart: {plot}", markup=False, highlight=False)
    return 0
