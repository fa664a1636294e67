"""The compiled rewriter through the pump's real batching (issue 13, point 11): random --batch-size, fields
around the scanner's 16-byte blocks and far beyond, escapes and backslash-N inside fields, through a real
sync; the target's COPY text must equal the reference rewriter applied to the source's COPY text."""

from __future__ import annotations

import itertools
import json

import psycopg
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from anon_ref import ReferenceRewriter
from confiture_fast.strategies import FieldRule, derive_key, parse_params

SECRET = b"test-secret-0123456789abcdef"  # what conftest.run_cli gives every run


def rule(index, column, strategy, raw=None, seed="") -> FieldRule:
    params, problems = parse_params(strategy, raw)
    assert not problems
    return FieldRule(index=index, column=column, strategy=strategy, key=derive_key(SECRET, seed), params=params)


TEXT_RULES = [("email", {}), ("hash", {"length": 32}), ("partial", {"keep_first": 2, "keep_last": 3}),
              ("preserve_format", {"keep_prefix": 1}), ("name", {}), ("redact", {}), ("keep", {}), ("null", {}),
              ("constant", {"value": "c\t\\N\n€"}), ("uuid", {}), ("phone", {}), ("fake_name", {})]
PIECES = ["\\N", "\\", "\t", "\n", "\r", "N", ".", "\\.", "é", "€", "𝄞", "a", "7", " ", "\x01", "\x7f"]
# around the 16-byte blocks the scanner reads, and far beyond them
LENGTHS = [0, 1, 15, 16, 17, 31, 32, 33, 47, 48, 49, 255, 4097]


@st.composite
def field_value(draw):
    if draw(st.integers(0, 9)) == 0:
        return None
    n = draw(st.sampled_from(LENGTHS))
    pieces = draw(st.lists(st.sampled_from(PIECES), min_size=1, max_size=8))
    text = "".join(itertools.islice(itertools.cycle(pieces), n))  # n characters, escapes anywhere
    return text


_tables = itertools.count()


# Each example is a real sync: no shrinking (minutes of syncs); the failing example is printed as drawn.
@settings(max_examples=15, deadline=None, phases=(Phase.explicit, Phase.reuse, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rules=st.lists(st.sampled_from(TEXT_RULES), min_size=3, max_size=3),
       rows=st.lists(st.tuples(field_value(), field_value(), field_value()), min_size=1, max_size=30),
       batch=st.integers(1, 40))
def test_rewriter_through_a_real_sync_matches_the_reference(pair, rules, rows, batch):
    """Target COPY text == the reference rewriter applied to the source's COPY text, for any --batch-size."""
    t = f"p{next(_tables)}"
    pair.both(f"CREATE TABLE {t} (id int PRIMARY KEY, c1 text, c2 text, c3 text)")
    with psycopg.connect(pair.src, autocommit=True) as c:
        with c.cursor() as cur:
            cur.executemany(f"INSERT INTO {t} VALUES (%s, %s, %s, %s)", [(i, *r) for i, r in enumerate(rows)])
    yaml = f"{t}:\n" + "".join(
        f"  - column: c{i + 1}\n    strategy: \"{s}\"\n" + "".join(f"    {k}: {json.dumps(v)}\n" for k, v in p.items())
        for i, (s, p) in enumerate(rules))
    res = pair.sync("--tables", t, "--batch-size", str(batch), rules=yaml)
    assert res.returncode == 0, res.stderr

    def copy_text(uri):
        with psycopg.connect(uri) as c, c.cursor() as cur:
            with cur.copy(f"COPY (SELECT id, c1, c2, c3 FROM {t} ORDER BY id) TO STDOUT") as copy:
                return b"".join(bytes(b) for b in copy)

    ref = ReferenceRewriter(t, ["id", "c1", "c2", "c3"],
                            [rule(i + 1, f"c{i + 1}", s, p) for i, (s, p) in enumerate(rules)])
    expected = ref.rewrite(copy_text(pair.src))
    ref.finish()
    assert copy_text(pair.dst) == expected
