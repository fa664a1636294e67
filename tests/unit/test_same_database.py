"""Which server and database a connection reaches (issue 12, point 3), decided without a server."""

from __future__ import annotations


def test_identity_tells_a_standby_from_a_restored_clone():
    """Same system identifier: a standby is its primary's database; a staging restored from its
    backup (two primaries) is another database. The same running server is the same whatever the name."""
    from confiture_fast.pg import Identity

    primary = Identity("app", "100.5:5432", "42", False)
    assert primary.same_database(Identity("app", "100.5:5432", None, False))
    assert primary.same_database(Identity("app", "200.1:5432", "42", True))
    assert not primary.same_database(Identity("app", "300.9:5432", "42", False))
    assert not primary.same_database(Identity("other", "100.5:5432", "42", False))
    assert not primary.same_database(Identity("app", "200.1:5433", "43", True))
