"""Red-team review of issue 12 ("the target is not trusted"): variations of its cases and interactions
between points built separately, against real servers."""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path

from conftest import run_cli


def new_role(pair, prefix: str) -> str:
    """A role of the target server (roles are shared by the whole server: a unique name)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    pair.target(f"CREATE ROLE {name} LOGIN")
    return name


def test_a_cast_planted_on_the_target_never_runs_in_verify(pair):
    """A role that owns a type on the target can give it a cast to text. verify must never call it:
    it would run with verify's rights (here a superuser, who may write files or run programs)."""
    proof = Path(tempfile.gettempdir()) / f"cf-pwned-{uuid.uuid4().hex}"  # where the server may write
    dev = new_role(pair, "dev")
    pair.source("CREATE TYPE public.addr AS (street text, city text);"
                "CREATE TABLE public.homes (a public.addr, note text);"
                "INSERT INTO public.homes VALUES (ROW('1 Main St','Paris'), 'x'), (ROW('2 High St','Rome'), 'y')")
    pair.target(f"GRANT CREATE ON SCHEMA public TO {dev}")
    pair.target(f"SET ROLE {dev}; CREATE TYPE public.addr AS (street text, city text);"
                "CREATE TABLE public.homes (a public.addr, note text);"
                "CREATE FUNCTION public.addr_text(public.addr) RETURNS text LANGUAGE plpgsql AS $$ BEGIN "
                f"EXECUTE pg_catalog.format('COPY (SELECT 1) TO %L', '{proof}'); "
                "RETURN ($1).street; END $$;"
                "CREATE CAST (public.addr AS text) WITH FUNCTION public.addr_text(public.addr)")
    assert pair.sync().returncode == 0
    assert pair.qt("SELECT count(*) FROM public.homes") == [(2,)]
    res = run_cli("verify", "--from", pair.src, "--to", pair.dst, "--no-pii-patterns", "--format", "json", cwd=pair.tmp)
    ran = proof.exists()
    proof.unlink(missing_ok=True)
    assert not ran, "verify ran a cast written by another role on the target, as a superuser"
    assert res.returncode == 0, res.stderr


PARTITIONED = ("CREATE TABLE public.events (id int NOT NULL, at date NOT NULL, email text) PARTITION BY RANGE (at);"
               "CREATE TABLE public.events_{a} PARTITION OF public.events FOR VALUES FROM ('2020-01-01') TO ('{mid}');"
               "CREATE TABLE public.events_{b} PARTITION OF public.events FOR VALUES FROM ('{mid}') TO ('2030-01-01');")


def test_partitioned_target_with_other_leaves_is_loaded_through_its_parent(pair):
    """The target's partitions differ from the source's (other names, other bounds): rows go through the
    target's parent, which is emptied whole (a partitioned table has no rows of its own to TRUNCATE ONLY,
    and takes no FREEZE), and a trigger declared on one target leaf only does not fire either."""
    pair.source(PARTITIONED.format(a="2020", b="2025", mid="2025-01-01")
                + "INSERT INTO public.events SELECT g, date '2020-01-01' + g, 'u' || g || '@x.com' "
                  "FROM generate_series(1, 2000) g")
    pair.target(PARTITIONED.format(a="old", b="new", mid="2023-06-01")
                + "INSERT INTO public.events VALUES (-1, '2021-01-01', 'stale'), (-2, '2029-01-01', 'stale');"
                  "CREATE TABLE public.fired (n int);"
                  "CREATE FUNCTION public.boom() RETURNS trigger LANGUAGE plpgsql AS "
                  "$$ BEGIN INSERT INTO public.fired VALUES (1); RETURN NEW; END $$;"
                  "CREATE TRIGGER boom BEFORE INSERT ON public.events_new FOR EACH ROW EXECUTE FUNCTION public.boom();"
                  "ALTER TABLE public.events_new ENABLE ALWAYS TRIGGER boom")
    res = pair.sync()
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*), min(id), max(id) FROM public.events") == [(2000, 1, 2000)]
    assert pair.qt("SELECT count(*) FROM public.events_new") == pair.qs(
        "SELECT count(*) FROM public.events WHERE at >= '2023-06-01'")
    assert pair.qt("SELECT count(*) FROM public.fired") == [(0,)]
    assert pair.qt("SELECT tgenabled FROM pg_trigger WHERE tgname = 'boom'") == [("A",)]


def test_plain_source_table_into_a_partitioned_target(pair):
    """A table partitioned on the target only: loaded through the target's parent, emptied whole."""
    pair.source("CREATE TABLE public.events (id int NOT NULL, at date NOT NULL, email text);"
                "INSERT INTO public.events SELECT g, date '2020-01-01' + g, 'u' || g || '@x.com' "
                "FROM generate_series(1, 500) g")
    pair.target(PARTITIONED.format(a="old", b="new", mid="2023-06-01")
                + "INSERT INTO public.events VALUES (-1, '2021-01-01', 'stale')")
    res = pair.sync()
    assert res.returncode == 0, res.stderr
    assert pair.qt("SELECT count(*), min(id) FROM public.events") == [(500, 1)]


def test_a_server_error_in_verify_is_one_line_with_a_fix(pair):
    """Point 21's "server errors as one line" holds for verify too, not only for sync's load: an
    anonymized key unique on the source but json on the target (no equality operator to count its
    duplicates with) stops verify with one line naming the table, never an internal error quoting
    the query."""
    pair.source("CREATE TABLE public.docs (email text UNIQUE); INSERT INTO public.docs VALUES ('a@b.com')")
    pair.target("CREATE TABLE public.docs (email json); INSERT INTO public.docs VALUES ('\"x@y.com\"')")
    rules = pair.rules("docs:\n  - column: email\n    strategy: email\n")
    res = run_cli("verify", "--from", pair.src, "--to", pair.dst, "--no-pii-patterns", "--anonymize-config",
                  str(rules), cwd=pair.tmp)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 1, res.stderr
    assert lines[-2].startswith("error: verify stopped at docs: could not identify an equality operator"), res.stderr
    assert lines[-1].startswith("  fix: ") and "internal error" not in res.stderr and "LINE 1" not in res.stderr


def test_a_partition_owned_by_another_role_is_refused_when_rows_go_through_its_parent(pair):
    """Point 1 (a superuser loads as the table's owner) with a partitioned target loaded through its
    parent: rows are routed to the partitions as the parent's owner, so a partition another role owns,
    whose CHECK calls that role's function, would run it with those rights. Refused up front."""
    proof = Path(tempfile.gettempdir()) / f"cf-pwned-{uuid.uuid4().hex}"
    dev = new_role(pair, "dev")
    pair.source(PARTITIONED.format(a="2020", b="2025", mid="2025-01-01")
                + "INSERT INTO public.events VALUES (1, '2021-01-01', 'a@x.com'), (2, '2026-01-01', 'b@x.com')")
    pair.target(PARTITIONED.format(a="old", b="new", mid="2023-06-01") + f"GRANT CREATE ON SCHEMA public TO {dev};"
                f"ALTER TABLE public.events_new OWNER TO {dev}")
    pair.target(f"SET ROLE {dev}; CREATE FUNCTION public.ok(text) RETURNS bool LANGUAGE plpgsql AS $$ BEGIN "
                f"EXECUTE pg_catalog.format('COPY (SELECT 1) TO %L', '{proof}'); RETURN true; "
                "EXCEPTION WHEN insufficient_privilege THEN RETURN true; END $$;"
                "ALTER TABLE public.events_new ADD CONSTRAINT ok CHECK (public.ok(email))")
    res = pair.sync()
    ran = proof.exists()
    proof.unlink(missing_ok=True)
    assert not ran, "a partition owner's CHECK ran with the rights of the sync's superuser"
    assert res.returncode == 2 and "events_new" in res.stderr and dev in res.stderr, res.stderr
    assert pair.qt("SELECT count(*) FROM public.events") == [(0,)]


def test_a_table_whose_owner_cannot_reach_its_schema_is_refused_before_the_load(pair):
    """Point 1's SET LOCAL ROLE meets point 19: a superuser loads dev's table as dev, who has no USAGE on
    the table's schema. That is found while planning, with the GRANT, not as a permission error in the
    load telling the (superuser) target role to get a privilege."""
    dev = new_role(pair, "dev")
    pair.source("CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY); INSERT INTO app.t VALUES (1)")
    pair.target(f"CREATE SCHEMA app; CREATE TABLE app.t (id int PRIMARY KEY); ALTER TABLE app.t OWNER TO {dev};"
                "INSERT INTO app.t VALUES (7)")
    res = pair.sync()
    assert res.returncode == 2, res.stderr
    assert f'GRANT USAGE ON SCHEMA "app" TO "{dev}"' in res.stderr, res.stderr
    assert pair.qt("SELECT id FROM app.t") == [(7,)]
    assert pair.qt("SELECT count(*) FROM pg_indexes WHERE tablename = 't'") == [(1,)]


def test_a_cast_planted_on_the_source_never_runs_in_scan(pair):
    """A role that owns a type on the source can give it a cast to json; to_jsonb() of a composite that
    holds that type would call it with scan's rights (here a superuser). scan leaves such values
    unread and says the column needs a review instead."""
    proof = Path(tempfile.gettempdir()) / f"cf-pwned-{uuid.uuid4().hex}"  # where the server may write
    dev = f"dev_{uuid.uuid4().hex[:8]}"
    pair.source(f"CREATE ROLE {dev} LOGIN; GRANT CREATE ON SCHEMA public TO {dev}")
    pair.source(f"SET ROLE {dev}; CREATE TYPE public.mood AS ENUM ('ok', 'sad');"
                "CREATE TYPE public.entry AS (mood public.mood, who text);"
                "CREATE FUNCTION public.mood_json(public.mood) RETURNS json LANGUAGE plpgsql AS $$ BEGIN "
                f"EXECUTE pg_catalog.format('COPY (SELECT 1) TO %L', '{proof}'); "
                "RETURN to_json($1::text); END $$;"
                "CREATE CAST (public.mood AS json) WITH FUNCTION public.mood_json(public.mood);"
                "CREATE TABLE public.diary (id int PRIMARY KEY, e public.entry);"
                "INSERT INTO public.diary VALUES (1, ROW('ok', 'ann@corp.example'))")
    res = run_cli("scan", "--from", pair.src, "--format", "json", cwd=pair.tmp)
    ran = proof.exists()
    proof.unlink(missing_ok=True)
    assert not ran, "scan ran a cast written by another role on the source, as a superuser"
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    found = {f["column"]: f for t in out["tables"] for f in t["findings"] if t["table"] == "diary"}
    assert "not read, so that no function another role wrote runs" in (found["e"].get("review") or ""), found
