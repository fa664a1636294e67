"""Issue 12, point 21 without a server: what a rules file that YAML reads as another type says, which fix a
failed unit suggests by SQLSTATE and side (the real cause, "rerun" only for what may pass next time), and
server errors told in one line without the values."""

from __future__ import annotations

import pytest

from confiture_fast import config, pg
from confiture_fast.errors import ConfigError, UnitFailed


@pytest.mark.parametrize("written, hint", [
    ("null", 'strategy: "null"'), ("~", 'strategy: "null"'), ("Null", 'strategy: "null"'),
    ("no", 'strategy: "no"'), ("yes", 'strategy: "yes"'), ("off", 'strategy: "off"'), ("true", 'strategy: "true"'),
    ("1", 'strategy: "1"'),
])
def test_strategy_that_yaml_reads_as_another_type_suggests_quoting(tmp_path, written, hint):
    path = tmp_path / "rules.yaml"
    path.write_text(f"users:\n  - column: email\n    strategy: {written}\n")
    with pytest.raises(ConfigError) as err:
        config.load_rules(path)
    assert hint in err.value.render() and "quote" in err.value.render()
    assert f"{path}:3" in err.value.render()


def test_quoted_null_strategy_is_the_null_strategy(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text('users:\n  - column: note\n    strategy: "null"\n')
    assert config.load_rules(path).tables["users"][0].strategy == "null"


@pytest.mark.parametrize("sqlstate, needles", [
    ("22001", ("rule", "drift", "widen")), ("22P02", ("rule", "drift")), ("23502", ("NOT NULL",)),
    ("22021", ("encoding",)), ("42601", ("schema",)), ("23514", ("CHECK", "drift")),
])
def test_errors_that_would_repeat_name_their_cause(sqlstate, needles):
    fix = UnitFailed("users", "target: value too long", "target", sqlstate, "email").fix_for(None)
    assert "rerun" not in fix and all(n in fix for n in needles), fix


@pytest.mark.parametrize("sqlstate, side", [("08006", "source"), ("57P01", "target"), ("40001", "source"),
                                            (None, "target")])
def test_transient_errors_say_rerun(sqlstate, side):
    failed = UnitFailed("users", f"{side}: server closed the connection", side, sqlstate)
    assert failed.fix_for(None).startswith("rerun the same command")
    assert failed.fix_for("cp.json") == "resume with the same command plus --resume --checkpoint cp.json"


def test_server_error_is_one_line_without_values():
    text = ('ERROR:  invalid input syntax for type integer: "4111 1111\n1111 1111"\n'
            'DETAIL:  Failing row contains (4111).\nCONTEXT:  COPY cards, line 5, column pan: "4111 1111"')
    assert pg.server_error(text) == ('invalid input syntax for type integer: "..." (COPY cards, line 5, column pan)',
                                  "pan")
    assert pg.server_error('ERROR:  value "99999999999" is out of range for type integer\n'
                        'CONTEXT:  COPY t, line 7, column n: "99999999999"')[0] == \
        'value "..." is out of range for type integer (COPY t, line 7, column n)'
