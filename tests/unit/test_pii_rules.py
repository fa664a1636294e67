"""pii.py without a server: the column-name dictionary, the content patterns and the strategy scan suggests
for a column's type, and which columns need a review whatever their values."""

from __future__ import annotations

import pytest

from confiture_fast import pii


def test_name_dictionary():
    kinds = {n: pii.name_kind("users", n) for n in (
        "email", "eMail", "contact_email", "billingEmailAddress", "phone_number", "mobile", "tel",
        "first_name", "FirstName", "prenom", "Vorname", "apellido", "surname", "maiden_name", "dob",
        "date_of_birth", "ssn", "passport_number", "driver_licence", "iban", "credit_card", "cvv",
        "ip_address", "mac", "password_hash", "api_key", "access_token", "salary", "gehalt", "gender",
        "code_postal", "zip", "street", "city", "name", "hotel_name", "account_id", "status", "mailing_list",
        "created_at", "zipper")}
    assert kinds["email"] == kinds["eMail"] == kinds["contact_email"] == kinds["billingEmailAddress"] == "email"
    assert kinds["phone_number"] == kinds["mobile"] == kinds["tel"] == "phone"
    assert kinds["first_name"] == kinds["FirstName"] == kinds["prenom"] == kinds["Vorname"] == "first_name"
    assert kinds["apellido"] == kinds["surname"] == kinds["maiden_name"] == "last_name"
    assert kinds["dob"] == kinds["date_of_birth"] == "birth_date"
    assert kinds["ssn"] == kinds["passport_number"] == kinds["driver_licence"] == "national_id"
    assert kinds["iban"] == "bank" and kinds["credit_card"] == kinds["cvv"] == "card"
    assert kinds["ip_address"] == "ip" and kinds["mac"] == "mac"
    assert kinds["password_hash"] == kinds["api_key"] == kinds["access_token"] == "secret"
    assert kinds["salary"] == kinds["gehalt"] == "salary" and kinds["gender"] == "gender"
    assert kinds["code_postal"] == kinds["zip"] == "postcode" and kinds["street"] == "address"
    assert kinds["city"] == "city" and kinds["name"] == "full_name"
    for n in ("hotel_name", "account_id", "status", "mailing_list", "created_at", "zipper"):
        assert kinds[n] is None, n
    assert pii.name_kind("products", "name") is None  # a product's name is not personal


@pytest.mark.parametrize("text, kind, whole", [
    ("bob.smith+x@corp.example.com", "email", True),
    ("mail me at bob@corp.com please", "email", False),
    ("+33 6 12 34 56 78", "phone", True),
    ("(415) 555-0123", "phone", True),
    ("4111 1111 1111 1111", "card", True),
    ("DE89 3704 0044 0532 0130 00", "iban", True),
    ("GB82WEST12345698765432", "iban", True),
    ("123-45-6789", "ssn", True),
    ("from 192.168.10.4 at noon", "ip", False),
    ("2001:db8::8a2e:370:7334", "ip", True),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U", "token", True),
    ("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "token", True),
])
def test_content_patterns(text, kind, whole):
    assert pii.content_kinds(text).get(kind) is whole, pii.content_kinds(text)


@pytest.mark.parametrize("text", [
    "4111 1111 1111 1112",  # fails Luhn
    "DE89 3704 0044 0532 0130 01",  # fails the IBAN checksum
    "2024-01-15", "2024-01-15 10:30:00", "version 1.2.3", "order 12345", "hello world", "SKU-42",
    "999.999.999.999", "12:30:45",
])
def test_content_patterns_leave_ordinary_values_alone(text):
    assert pii.content_kinds(text) == {}, text


def _col(name, type_, base, category, unique=False, is_array=False):
    from confiture_fast.catalog import Column

    return Column(name, type_, base, category, None, is_array, False, False, False, False, unique)


def test_suggestions_fit_the_column():
    assert pii.suggest("phone", _col("phone", "text", "text", "S"))[0] == "phone"
    assert pii.suggest("phone", _col("phone", "text", "text", "S", unique=True))[0] == "hash"
    assert pii.suggest("email", _col("email", "text", "text", "S", unique=True))[0] == "email"
    assert pii.suggest("birth_date", _col("dob", "date", "date", "D"))[0] == "date_shift"
    assert pii.suggest("salary", _col("salary", "numeric", "numeric", "N")) == ("noise", {"relative": 0.1}, None)
    assert pii.suggest("ip", _col("ip", "inet", "inet", "I"))[0] == "ip"
    strategy, params, why = pii.suggest("phone", _col("p", "jsonb", "jsonb", "U"), {"$.phone": "phone"})
    assert (strategy, params, why) == ("json", {"paths": {"$.phone": "phone"}}, None)


def test_review_rules_on_synthetic_columns():
    """Pure logic: which columns need a review whatever their values."""
    from confiture_fast.catalog import Column

    def col(name, base, category, generated=False):
        return Column(name, base, base, category, None, False, False, False, generated, False, False)

    from confiture_fast.catalog import Table

    def table(*cols, triggers=()):
        return Table("public", "t", "r", tuple(cols), (), (), (), (), True, True, True, tuple(triggers))

    tsv = col("tsv", "tsvector", "U")
    assert pii.review_reason(table(tsv), tsv, set()) is None
    assert "derived from PII" in pii.review_reason(table(tsv), tsv, {"email"})
    assert "trigger(s) t_tsv" in pii.review_reason(table(tsv, triggers=["t_tsv"]), tsv, set())
    gen = col("tsv", "tsvector", "U", generated=True)
    assert pii.review_reason(table(gen), gen, {"email"}) is None
    for base in ("geometry", "ltree", "vector"):
        c = col("c", base, "U")
        assert pii.review_reason(table(c), c, set()) == f"needs review: scan cannot read inside type {base}"
    for base, category in (("bytea", "U"), ("uuid", "U"), ("int4", "N"), ("hstore", "U"), ("xml", "U")):
        c = col("c", base, category)
        assert pii.review_reason(table(c), c, set()) is None, base
    assert pii.reader(col("c", "hstore", "U")) == "document" and pii.reader(col("c", "addr", "C")) == "document"
    assert pii.lexemes("'bob@x.org':3 'it''s':1 'a\\\\b'") == ["bob@x.org", "it's", "a\\b"]
    assert list(pii.xml_leaves('<a href="m&amp;e@x.org">x<b/>y<![CDATA[<c@d.org>]]></a>')) == [
        ("href", "m&e@x.org"), ("a", "x"), ("a", "y"), ("a", "<c@d.org>")]
