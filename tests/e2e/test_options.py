"""The load options the command line builds are the ones the pump obeys (issue 13, point 9): the target
server itself sees the batches. A CHECK on the target records, for every row it checks, how many bytes of
the COPY the server has taken so far (pg_stat_progress_copy); the server takes one CopyData message at a
time, so the rows of one write share one value, and --batch-size N makes writes of N rows."""

from __future__ import annotations

import collections

import pytest

ROWS = 100

SCHEMA = """
CREATE TABLE fixed (id int PRIMARY KEY, v text);
"""

SEEN = """
CREATE TABLE seen (n serial PRIMARY KEY, taken bigint);
CREATE FUNCTION public.taken() RETURNS boolean LANGUAGE sql VOLATILE AS $$
  SELECT pg_catalog.pg_stat_clear_snapshot();
  INSERT INTO public.seen (taken) SELECT bytes_processed FROM pg_catalog.pg_stat_progress_copy
   WHERE pid = pg_catalog.pg_backend_pid() RETURNING true $$;
ALTER TABLE fixed ADD CONSTRAINT fixed_taken CHECK (public.taken());
"""


def batches(pair) -> list[int]:
    """Rows per write, in order: the rows that saw the same byte count came in one message."""
    taken = [t for (t,) in pair.qt("SELECT taken FROM seen ORDER BY n")]
    return list(collections.Counter(taken).values())


RULES = "fixed:\n  - column: v\n    strategy: redact\n"


# verbatim: binary COPY straight through; with a rule (on text): COPY binary through the binary rewriter
@pytest.mark.parametrize("batch, rules", [(7, None), (33, RULES)], ids=["verbatim", "anonymized"])
def test_the_batch_size_of_the_command_line_is_the_pumps(pair, batch, rules):
    pair.both(SCHEMA)
    pair.target(SEEN)
    # every row the same length, so that a write of N rows is N lines whatever the values
    pair.source(f"INSERT INTO fixed SELECT i, 'v' FROM generate_series(1000, {999 + ROWS}) i")
    res = pair.sync("--tables", "fixed", "--batch-size", str(batch), rules=rules)
    assert res.returncode == 0, res.stderr
    full, rest = divmod(ROWS, batch)
    assert batches(pair) == [batch] * full + [rest] * bool(rest)
