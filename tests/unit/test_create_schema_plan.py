"""--create-schema's planning on synthetic source facts: what is created, in which order, with which
statements, and what is refused or left out (schema.plan_schema; no server)."""

from __future__ import annotations

import pytest

from confiture_fast.errors import ValidationError
from confiture_fast.plan import Selection, build_plan
from confiture_fast.schema import (ColumnFact, ConFact, Existing, FuncFact, IndexFact, SeqFact, Source, TableFact,
                                   TriggerFact, TypeFact, ViewFact, as_planned, plan_schema)

from .catalog_builder import catalog, col, pk_index, rules
from .catalog_builder import table as catalog_table


def table(oid, name, *columns, schema="public", root=None, **kw) -> TableFact:
    return TableFact(oid, schema, name, kw.pop("kind", "r"), root or oid,
                     tuple(columns) or (ColumnFact("id", "integer", True),), **kw)


def source(*tables, roots=None, **kw) -> Source:
    return Source(tuple(roots or [t.oid for t in tables if t.root == t.oid]), {t.oid: t for t in tables}, **kw)


def steps(plan) -> list[tuple[str, str]]:
    return [(s.kind, s.name) for s in plan.pre]


def test_types_functions_and_sequences_come_before_the_tables_that_use_them_and_parents_before_partitions():
    mood = TypeFact(100, "public", "mood", "e", labels=("sad", "ok"))
    dom = TypeFact(101, "public", "posint", "d", base="integer", checks=(("pos", "CHECK ((VALUE > 0))"),))
    fn = FuncFact(200, "util", "gen", "", "CREATE OR REPLACE FUNCTION util.gen()\n RETURNS integer ...")
    seq = SeqFact("public", "t_id_seq", "integer", 1, 1, 1, 2147483647, 1, False, owned_by=("public", "t", "id"))
    t = table(1, "t", ColumnFact("id", "integer", True, "nextval('public.t_id_seq'::regclass)"),
              ColumnFact("m", "public.mood"), ColumnFact("q", "public.posint"), ColumnFact("g", "integer",
                                                                                             default="util.gen()"))
    p = table(2, "p_2024", ColumnFact("id", "integer", inherited=True), schema="archive", root=1,
              parents=(("public", "t"),), bound="FOR VALUES IN (1)")
    src = source(p, t, types={100: mood, 101: dom}, funcs={200: fn}, seqs={300: seq},
                 deps={("rel", 1): (("seq", 300), ("type", 100), ("type", 101), ("func", 200)),
                       ("type", 101): (("func", 200),)})
    plan = plan_schema(src, Existing(schemas=frozenset({"public"})))
    order = steps(plan)
    assert order[:2] == [("schema", '"archive"'), ("schema", '"util"')]
    pos = {name: i for i, (_, name) in enumerate(order)}
    assert pos["util.gen()"] < pos["posint"] < pos["t"] < pos["archive.p_2024"]
    assert pos["mood"] < pos["t"] and pos["t_id_seq"] < pos["t"]
    assert order[-1] == ("sequence ownership", "1 sequence(s)")
    stmts = {s.name: s.statements for s in plan.pre}
    assert stmts["util.gen()"][0].startswith("CREATE FUNCTION util.gen()")  # never CREATE OR REPLACE
    assert stmts["posint"] == ('CREATE DOMAIN "public"."posint" AS integer',
                               'ALTER DOMAIN "public"."posint" ADD CONSTRAINT "pos" CHECK ((VALUE > 0))')
    assert stmts["archive.p_2024"] == ('CREATE TABLE "archive"."p_2024" PARTITION OF "public"."t" FOR VALUES IN (1)',)
    assert stmts["1 sequence(s)"] == ('ALTER SEQUENCE "public"."t_id_seq" OWNED BY "public"."t"."id"',)
    assert plan.tables == (("public", "t"),)


def test_column_properties_are_written_out_and_names_quoted():
    ident = SeqFact("s", 'we"ird_id_seq', "integer", 10, 5, 1, 100, 1, False)
    t = table(1, 'we"ird', ColumnFact("id", "integer", True, identity="a", identity_seq=ident),
              ColumnFact("Name", "text", True, collation='pg_catalog."C"', storage="e", statistics=500,
                         comment="it's"),
              ColumnFact("twice", "integer", default="(id * 2)", generated="s"), schema="s", replident="f",
              comment="t", options=(("fillfactor", "70"),), partkey=None)
    (step,) = [s for s in plan_schema(source(t), Existing(schemas=frozenset({"s"}))).pre if s.kind == "table"]
    q = '"s"."we""ird"'
    assert step.statements == (
        f'CREATE TABLE {q} ("id" integer GENERATED ALWAYS AS IDENTITY (SEQUENCE NAME "s"."we""ird_id_seq" INCREMENT BY 5 '
        'MINVALUE 1 MAXVALUE 100 START WITH 10 CACHE 1 NO CYCLE) NOT NULL, "Name" text COLLATE pg_catalog."C" NOT NULL, '
        '"twice" integer GENERATED ALWAYS AS ((id * 2)) STORED) WITH ("fillfactor" = \'70\')',
        f'ALTER TABLE {q} ALTER COLUMN "Name" SET STORAGE EXTERNAL',
        f'ALTER TABLE {q} ALTER COLUMN "Name" SET STATISTICS 500',
        f"ALTER TABLE {q} REPLICA IDENTITY FULL",
        f"COMMENT ON TABLE {q} IS 't'",
        f"COMMENT ON COLUMN {q}.\"Name\" IS 'it''s'")


def test_an_inheritance_child_declares_its_own_columns_and_adjusts_the_inherited_ones():
    parent = table(1, "parent", ColumnFact("id", "integer", True), ColumnFact("note", "text", default="'p'::text"))
    child = table(2, "child", ColumnFact("id", "integer", True, inherited=True, parent_not_null=True),
                  ColumnFact("note", "text", True, "'c'::text", inherited=True, parent_default="'p'::text"),
                  ColumnFact("extra", "integer"), parents=(("public", "parent"),))
    stmts = {s.name: s.statements for s in plan_schema(source(parent, child), Existing()).pre}
    assert stmts["child"] == ('CREATE TABLE "public"."child" ("extra" integer) INHERITS ("public"."parent")',
                              'ALTER TABLE "public"."child" ALTER COLUMN "note" SET DEFAULT \'c\'::text',
                              'ALTER TABLE "public"."child" ALTER COLUMN "note" SET NOT NULL')


def test_what_the_target_has_is_neither_created_nor_recorded():
    mood = TypeFact(100, "public", "mood", "e", labels=("a",))
    t = table(1, "t", ColumnFact("m", "public.mood"))
    u = table(2, "u")
    pk = ConFact(10, 1, "t_pkey", "p", "PRIMARY KEY (m)", index="t_pkey")
    src = source(t, u, types={100: mood}, cons=(pk,), deps={("rel", 1): (("type", 100),)})
    plan = plan_schema(src, Existing(schemas=frozenset({"public"}), types=frozenset({("public", "mood")}),
                                     type_defs={("public", "mood"): mood}, relations=frozenset({("public", "u")})))
    assert steps(plan) == [("table", "t")]
    assert [(p.name, p.phase) for p in plan.post] == [("t_pkey", 1)]
    again = plan_schema(src, Existing(schemas=frozenset({"public"}), types=frozenset({("public", "mood")}),
                                      type_defs={("public", "mood"): mood}, relations=frozenset({("public", "u")}), pending=frozenset({("t", "t_pkey")})))
    assert again.post == ()  # an interrupted run recorded it: the finish phase builds it


def test_keys_and_indexes_follow_the_load_then_foreign_keys_then_triggers_then_views_by_depth():
    a = table(1, "a")
    b = table(2, "b")
    touch = FuncFact(200, "public", "touch", "", "CREATE OR REPLACE FUNCTION public.touch()\n RETURNS trigger ...")
    cons = (ConFact(10, 1, "a_pkey", "p", "PRIMARY KEY (id)", index="a_pkey", replident=True),
            ConFact(11, 2, "b_a_fk", "f", "FOREIGN KEY (id) REFERENCES public.a(id)", ref=("public", "a")),
            ConFact(12, 2, "b_gone_fk", "f", "FOREIGN KEY (id) REFERENCES public.gone(id)", ref=("public", "gone")),
            ConFact(13, 1, "a_check", "c", "CHECK ((id > 0))", comment="positive"))
    v1 = ViewFact(500, "public", "v1", "v", " SELECT id FROM public.a;")
    v2 = ViewFact(501, "public", "v2", "m", " SELECT id FROM public.v1;")
    v3 = ViewFact(502, "public", "v3", "v", " SELECT id FROM public.elsewhere;")
    src = source(a, b, funcs={200: touch}, cons=cons, views={500: v1, 501: v2, 502: v3},
                 indexes=(IndexFact(20, 1, "a_expr", "CREATE INDEX a_expr ON public.a USING btree (abs(id))"),),
                 triggers=(TriggerFact(30, 1, "a_touch", "CREATE TRIGGER a_touch BEFORE INSERT ON public.a FOR EACH "
                                                          "ROW EXECUTE FUNCTION public.touch()", "D"),),
                 deps={("trigger", 30): (("func", 200), ("rel", 1)), ("rel", 500): (("rel", 1),),
                       ("rel", 501): (("rel", 500),), ("rel", 502): (("rel", 900),)},
                 described={("rel", 900): "table public.elsewhere"})
    plan = plan_schema(src, Existing())
    post = {p.name: p for p in plan.post}
    assert post["a_pkey"].phase == 1 and post["a_pkey"].statements[-1] == \
        'ALTER TABLE "public"."a" REPLICA IDENTITY USING INDEX "a_pkey"'
    assert post["a_check"].statements == ('ALTER TABLE "public"."a" ADD CONSTRAINT "a_check" CHECK ((id > 0))',
                                          'COMMENT ON CONSTRAINT "a_check" ON "public"."a" IS \'positive\'')
    assert post["a_expr"].phase == 1 and post["a_expr"].table == "a"
    assert post["b_a_fk"].phase == 2
    assert post["b_a_fk"].fallback == ('ALTER TABLE "public"."b" ADD CONSTRAINT "b_a_fk" FOREIGN KEY (id) '
                                       'REFERENCES public.a(id) NOT VALID',)
    assert post["a_touch"].phase == 3 and post["a_touch"].statements[1] == \
        'ALTER TABLE "public"."a" DISABLE TRIGGER "a_touch"'
    assert ("function", "touch()") in steps(plan)
    assert post["v1"].phase == 4 and post["v2"].phase == 5
    assert post["v2"].statements[0] == 'CREATE MATERIALIZED VIEW "public"."v2" AS\n SELECT id FROM public.v1\n WITH DATA'
    assert "b_gone_fk" not in post and "v3" not in post
    assert any(n.startswith('foreign key "b_gone_fk" on b: it references gone') for n in plan.not_created)
    assert "view v3: it reads table public.elsewhere, which is not synced" in plan.not_created


def test_an_extension_members_use_brings_create_extension_if_not_exists_in_its_schema():
    t = table(1, "t", ColumnFact("e", "ext.citext"))
    src = source(t, deps={("rel", 1): (("type", 100),)}, members={("type", 100): "citext"},
                 ext_schemas={"citext": "ext"})
    plan = plan_schema(src, Existing(schemas=frozenset({"public"})))
    assert plan.pre[0].statements == ('CREATE SCHEMA "ext"',)
    assert plan.pre[1].statements == ('CREATE EXTENSION IF NOT EXISTS "citext" WITH SCHEMA "ext"',)
    assert plan_schema(src, Existing(schemas=frozenset({"public", "ext"}), extensions=frozenset({"citext"}))).pre \
        [0].kind == "table"


def test_a_table_needing_what_cannot_be_created_or_a_missing_parent_is_refused_before_anything():
    t = table(1, "t")
    child = table(2, "child", parents=(("public", "nowhere"),))
    src = source(t, child, deps={("rel", 1): (("other", 7),)}, described={("other", 7): "operator class public.myops"})
    with pytest.raises(ValidationError) as e:
        plan_schema(src, Existing())
    assert e.value.problems == [
        "t: it needs operator class public.myops, which --create-schema does not create: create it on the target "
        "first, or --exclude the table",
        "child: its parent table nowhere is neither selected nor on the target: select it too, or create it on "
        "the target first"]


def test_functions_of_the_synced_schemas_come_along_unless_they_need_what_cannot_come():
    t = table(1, "t")
    ok = FuncFact(200, "public", "ok", "x integer", "CREATE OR REPLACE FUNCTION public.ok(x integer) ...")
    agg = FuncFact(201, "public", "agg", "integer", None)
    bad = FuncFact(202, "public", "bad", "", "CREATE OR REPLACE FUNCTION public.bad() ...")
    other = FuncFact(203, "elsewhere", "f", "", "CREATE OR REPLACE FUNCTION elsewhere.f() ...")
    src = source(t, funcs={200: ok, 201: agg, 202: bad, 203: other}, deps={("func", 202): (("rel", 900),)},
                 described={("rel", 900): "table public.gone"})
    plan = plan_schema(src, Existing(schemas=frozenset({"public"})))
    assert [n for k, n in steps(plan) if k == "function"] == ["ok(x integer)"]
    assert plan.not_created == (
        "function agg(integer): an aggregate or window function (--create-schema creates functions and procedures)",
        "function bad(): it needs table public.gone, which --create-schema does not create")


def test_objects_that_reference_each_other_in_a_cycle_are_an_error():
    a = TypeFact(100, "public", "a", "c", attributes=(("b", "public.b", None),))
    b = TypeFact(101, "public", "b", "c", attributes=(("a", "public.a", None),))
    src = source(table(1, "t", ColumnFact("x", "public.a")), types={100: a, 101: b},
                 deps={("rel", 1): (("type", 100),), ("type", 100): (("type", 101),), ("type", 101): (("type", 100),)})
    with pytest.raises(ValidationError, match="cycle"):
        plan_schema(src, Existing())


def test_a_table_missing_on_the_target_points_at_create_schema_and_is_planned_against_the_sources_columns():
    users = catalog_table("users", col("id", "int4"), col("email"), indexes=(pk_index("users"),))
    src, empty = catalog(users), catalog()
    with pytest.raises(ValidationError) as e:
        build_plan(src, empty, Selection(), None, None)
    assert e.value.problems == ["users: missing on the target (pass --create-schema to create it from the source, "
                                "create it yourself, or --exclude it)"]
    created = plan_schema(source(table(1, "users")), Existing())
    plan = build_plan(src, as_planned(empty, src, created), Selection(), None, None)
    assert [t.columns for t in plan.tables] == [("id", "email")]
    assert plan.deferred == ()  # its keys come after the load, from create-schema's records
    with pytest.raises(ValidationError) as e:  # a rule that cannot fit the source's column: before any DDL
        build_plan(src, as_planned(empty, src, created), Selection(), rules({"users": {"id": "redact"}}), None)
    assert e.value.problems == ["anonymization.yaml:1: users.id: redact writes text, which column id of type integer "
                                "cannot hold"]
