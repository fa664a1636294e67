"""The parts of a request that several commands and layers share, each field named like its flag.

`Scope` is what sync, scan and verify read from (the source) and which of its tables. `LoadOptions`
is how a sync loads: built once by the command line (cli/options.py checks the values), then read
as it is by the planner, the coordinator, the workers and the pump; bench builds the same struct
for each configuration it measures.
"""

from __future__ import annotations

from pathlib import Path

import msgspec


class Selection(msgspec.Struct, frozen=True):
    """--tables, --include, --exclude: names, and patterns of names."""

    tables: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()


class SubsetRoot(msgspec.Struct, frozen=True):
    """A table given a condition by --where, --sample or --subset-config: its matching rows are seed rows."""

    table: str  # as written, resolved against the source's catalog by the planner (subset.py)
    origin: str  # where it was given, for messages: '--where', '--sample', 'subset.yaml'
    where: tuple[str, ...] = ()  # SQL conditions over the table, all of which must hold
    sample: float | None = None  # percent of the rows, 0 < sample <= 100, chosen by a keyed hash of the primary key


class Subset(msgspec.Struct, frozen=True):
    """--where, --sample and --subset-config, parsed (subset.parse); no roots: whole tables."""

    roots: tuple[SubsetRoot, ...] = ()


class Scope(msgspec.Struct, frozen=True, kw_only=True):
    """Where the rows come from and which tables: --from, --env-dir, --source-port, --tables,
    --include, --exclude, --anonymize-config, and the subset of their rows (--where, --sample, --subset-config)."""

    source: str
    env_dir: Path  # also where --to is looked up
    source_port: int | None = None
    selection: Selection = Selection()
    rules_path: Path | None = None
    subset: Subset = Subset()


class LoadOptions(msgspec.Struct, frozen=True, kw_only=True):
    """--parallel, --batch-size, --slice-size and --retries."""

    parallel: int = 1  # worker processes
    batch_size: int = 5000  # rows gathered before each write to the target (also capped at BATCH_BYTES)
    slice_size: int = 512  # MiB: a table larger than this is split into slices loaded in parallel
    retries: int = 2  # of a table or slice after a transient failure

    def flags(self) -> list[str]:
        """The command line that builds this struct again (bench runs the sync as a child process)."""
        return ["--parallel", str(self.parallel), "--batch-size", str(self.batch_size),
                "--slice-size", str(self.slice_size), "--retries", str(self.retries)]


# The pump also writes to the target once this many bytes are gathered, whatever --batch-size says.
BATCH_BYTES = 8 << 20
