"""Red-team pass on `sync --incremental`: what the target can plant between runs. Each test failed
before its fix."""

from __future__ import annotations

from test_incremental import RULES, fill, incremental


def test_a_rule_planted_on_a_target_table_never_fires_the_table_is_reloaded(pair):
    """COPY and TRUNCATE fire no rule, but the incremental DELETE and INSERT would: a rule written by
    another role (here DO ALSO, writing elsewhere) would run inside the sync's transaction."""
    fill(pair)
    assert pair.sync(rules=RULES).returncode == 0
    pair.target("CREATE TABLE public.loot (email text); "
                "CREATE RULE steal AS ON INSERT TO public.users DO ALSO INSERT INTO public.loot VALUES (NEW.email); "
                "CREATE RULE keep AS ON DELETE TO public.users DO INSTEAD NOTHING")
    pair.source("UPDATE users SET score = -1 WHERE id <= 5; DELETE FROM orders WHERE user_id = 7; "
                "DELETE FROM users WHERE id = 7")
    tables = incremental(pair)
    assert tables["users"]["mode"] == "full" and "rule" in tables["users"]["reason"]
    assert pair.qt("SELECT count(*) FROM loot") == [(0,)]
    assert pair.qt("SELECT count(*) FROM users WHERE score = -1") == [(5,)]
    assert pair.qt("SELECT count(*) FROM users WHERE id = 7") == [(0,)]
