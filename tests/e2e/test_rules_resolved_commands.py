"""The one rule resolution seen from the commands (issue 13, point 5): sync and verify refuse the same
conflict with the same problem, once; scan says where a spread rule that covers a column comes from."""

from __future__ import annotations

from test_scan import findings, scan
from test_verify import verify

PEOPLE = ("CREATE TABLE people (email text PRIMARY KEY); "
          "CREATE TABLE msgs (id int PRIMARY KEY, sender text REFERENCES people);")


def test_sync_and_verify_refuse_a_conflict_with_the_same_problem_once(pair):
    pair.both(PEOPLE)
    rules = "people:\n  - column: email\n    strategy: email\nmsgs:\n  - column: sender\n    strategy: hash\n"
    problem = ("msgs.sender: its rule differs from the rule on people.email, which it references (msgs_sender_fkey): "
               "use the same strategy and seed, or remove it")
    for res in (pair.sync("--dry-run", rules=rules), verify(pair, rules=rules)):
        assert res.returncode == 2 and res.stderr.count(problem) == 1, res.stderr


def test_scan_says_where_a_propagated_rule_covering_a_column_comes_from(pair):
    pair.source(PEOPLE + "INSERT INTO people VALUES ('a@corp.example'); INSERT INTO msgs VALUES (1, 'a@corp.example')")
    rules = pair.rules("people:\n  - column: email\n    strategy: email\n")
    res = scan(pair, "--anonymize-config", str(rules), "--format", "json")
    assert res.returncode == 0, res.stderr
    f = findings(res)
    assert f["people.email"]["covered"] == f"{rules}:2 (email)"
    assert f["msgs.sender"]["covered"] == "propagated from people.email (email)"
