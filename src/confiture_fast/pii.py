"""What PII looks like: a dictionary of column names and content patterns, the sampling that feeds
them, and the rule each finding calls for.

Shared by `scan` (which reports findings), `sync --strict` (which refuses unruled findings) and
`verify --pii-patterns` (which looks for leaks on the target), so that the three agree on what
counts as PII.
"""

from __future__ import annotations

import html
import ipaddress
import json
import re
from typing import Any, Iterator

import msgspec
import psycopg

from . import copytext, strategies
from .catalog import Column, Table, quote_ident
from .pg import server_error
from .rules import unique_conflict

# --------------------------------------------------------------------------- names

# kind -> words a column name may contain (compared to joins of its tokens, so `first_name`,
# `FirstName` and `firstname` all give `firstname`). English first, then fr, de, es spellings.
NAME_WORDS: dict[str, tuple[str, ...]] = {
    "email": ("email", "emailaddress", "mail", "mailaddress", "courriel", "correo", "correoelectronico"),
    "phone": ("phone", "phonenumber", "mobile", "mobilephone", "tel", "telephone", "telefon", "telefono",
              "cell", "cellphone", "fax", "msisdn", "handy", "portable", "movil", "celular"),
    "first_name": ("firstname", "givenname", "forename", "prenom", "vorname", "nombre"),
    "last_name": ("lastname", "surname", "familyname", "maidenname", "nom", "nomdefamille", "nachname",
                  "apellido", "apellidos", "geburtsname"),
    "full_name": ("fullname", "displayname", "contactname", "personname", "customername", "nomcomplet",
                  "vollername", "nombrecompleto", "realname", "legalname"),
    "username": ("username", "login", "userlogin", "handle", "nickname", "pseudo", "benutzername"),
    "address": ("address", "addr", "street", "streetaddress", "addressline", "adresse", "rue", "strasse",
                "anschrift", "direccion", "calle", "domicilio"),
    "city": ("city", "town", "ville", "stadt", "ort", "ciudad", "localidad"),
    "postcode": ("postcode", "postalcode", "zip", "zipcode", "codepostal", "plz", "postleitzahl",
                 "codigopostal", "cp"),
    "birth_date": ("birthdate", "dateofbirth", "dob", "birthday", "born", "datenaissance", "naissance",
                   "geburtsdatum", "geburtstag", "fechanacimiento", "fechadenacimiento"),
    "national_id": ("ssn", "socialsecurity", "socialsecuritynumber", "nationalid", "nationalidnumber", "nin",
                    "passport", "passportnumber", "driverlicence", "driverslicence", "driverlicense",
                    "driverslicense", "drivinglicence", "licensenumber", "taxid", "tin", "nir", "insee",
                    "numerosecu", "securitesociale", "personalausweis", "ausweisnummer", "steuerid",
                    "sozialversicherungsnummer", "dni", "nie", "nif", "pasaporte"),
    "bank": ("iban", "bic", "swift", "accountnumber", "bankaccount", "routingnumber", "sortcode", "rib",
             "kontonummer", "numerocuenta", "cuentabancaria"),
    "card": ("card", "cardnumber", "creditcard", "cc", "ccnumber", "pan", "cvv", "cvc", "cvv2", "cardcvv",
             "expiry", "carte", "cartebancaire", "kreditkarte", "tarjeta"),
    "ip": ("ip", "ipaddress", "ipaddr", "remoteaddr", "clientip", "lastip"),
    "mac": ("mac", "macaddress", "macaddr"),
    "secret": ("password", "passwd", "pwd", "passwordhash", "token", "secret", "apikey", "apisecret",
               "accesskey", "secretkey", "privatekey", "accesstoken", "refreshtoken", "sessiontoken",
               "motdepasse", "passwort", "kennwort", "contrasena", "clave"),
    "salary": ("salary", "wage", "wages", "income", "compensation", "salaire", "remuneration", "gehalt",
               "lohn", "einkommen", "salario", "sueldo"),
    "gender": ("gender", "sex", "genre", "sexe", "geschlecht", "sexo", "genero"),
    "contact": ("contact", "contactinfo", "contactdetails", "kontakt", "contacto"),
}

# Words that only say "PII" when the table holds people: `products.name` is not personal.
PERSON_TABLE_WORDS = frozenset({
    "user", "users", "customer", "customers", "client", "clients", "person", "persons", "people", "member",
    "members", "employee", "employees", "staff", "patient", "patients", "contact", "contacts", "account",
    "accounts", "author", "authors", "profile", "profiles", "student", "students", "guest", "guests",
    "subscriber", "subscribers", "applicant", "applicants", "candidate", "candidates", "lead", "leads",
    "owner", "owners", "driver", "drivers", "passenger", "passengers", "tenant", "tenants",
})

# Strong names give a high confidence; the rest a medium one.
_MEDIUM_KINDS = frozenset({"city", "postcode", "gender", "contact", "username", "salary", "full_name"})

# Which column categories a name-based kind can apply to (typcategory: S string, D datetime, N numeric,
# I network, E enum, U user-defined such as macaddr or json).
_KIND_CATEGORIES: dict[str, frozenset[str]] = {
    "birth_date": frozenset("DS"),
    "salary": frozenset("NS"),
    "ip": frozenset("IS"),
    "mac": frozenset("US"),
    "gender": frozenset("ES"),
    "card": frozenset("NS"),
    "bank": frozenset("NS"),
    "phone": frozenset("S"),
}

KIND_LABELS = {
    "email": "an email", "phone": "a phone number", "first_name": "a first name", "last_name": "a last name",
    "full_name": "a person's name", "username": "a user name", "address": "an address", "city": "a city",
    "postcode": "a postcode", "birth_date": "a birth date", "national_id": "a national ID or document number",
    "bank": "a bank account", "card": "payment card data", "ip": "an IP address", "mac": "a MAC address",
    "secret": "a password, token or key", "salary": "pay", "gender": "gender", "contact": "contact details",
}

_WORD_KIND = {w: kind for kind, words in NAME_WORDS.items() for w in words}


def name_tokens(name: str) -> list[str]:
    """`billingEMailAddress_2` -> ['billing', 'e', 'mail', 'address', '2']."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name)
    spaced = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1 \2", spaced)
    return [t for t in re.split(r"[^0-9a-zA-Z]+", spaced.lower()) if t]


def _joins(tokens: list[str]) -> Iterator[str]:
    for i in range(len(tokens)):
        for j in range(i + 1, min(len(tokens), i + 5) + 1):
            yield "".join(tokens[i:j])


def name_kind(table: str, column: Column | str) -> str | None:
    """The PII kind a column's name suggests, or None. A bare `name` counts only in a table of people;
    a name kind whose type cannot hold it (a boolean `email_verified`, an integer `account_id`) does not."""
    col_name = column if isinstance(column, str) else column.name
    tokens = name_tokens(col_name)
    if tokens and tokens[-1] == "id" and len(tokens) > 1:
        tokens_kind = None  # `card_id`, `account_id`: a reference, not the value
    else:
        # The longest word wins (`emailaddress` over `address`); `contact` only when nothing else says more.
        words = sorted((j for j in _joins(tokens) if j in _WORD_KIND),
                       key=lambda j: (_WORD_KIND[j] != "contact", len(j)), reverse=True)
        tokens_kind = _WORD_KIND[words[0]] if words else None
    kind = tokens_kind
    if kind is None and tokens == ["name"]:
        table_tokens = set(name_tokens(table.rsplit(".", 1)[-1]))
        kind = "full_name" if table_tokens & PERSON_TABLE_WORDS else None
    if kind is None or isinstance(column, str):
        return kind
    if column.category == "B":
        return None
    allowed = _KIND_CATEGORIES.get(kind, frozenset("S"))
    return kind if column.category in allowed else None


# --------------------------------------------------------------------------- content

EMAIL_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}")
PHONE_RE = re.compile(r"(?<![\w.:/-])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{1,4}\)[\s.-]?)?\d{1,4}(?:[\s.-]\d{1,5}){1,5}(?![\w.:/-])"
                      r"|(?<![\w.:/-])\+\d{8,15}(?![\w.:/-])")
CARD_RE = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
IBAN_RE = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b")
SSN_RE = re.compile(r"(?<![\d-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\d-])")
IPV4_RE = re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")
IPV6_RE = re.compile(r"(?<![0-9A-Fa-f:])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)[0-9A-Fa-f:]{2,39}(?![0-9A-Fa-f:])")
JWT_RE = re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*")
HEX_TOKEN_RE = re.compile(r"\b[0-9a-fA-F]{32,}\b")
B64_TOKEN_RE = re.compile(r"(?<![A-Za-z0-9+/_-])[A-Za-z0-9+/_-]{32,}={0,2}(?![A-Za-z0-9+/_-])")

# Content kinds the leak check of `verify --pii-patterns` looks for.
LEAK_KINDS = ("email", "phone", "card")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban_ok(text: str) -> bool:
    s = text.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(ch, 36)) for ch in moved)) % 97 == 1


def _phone_ok(m: str) -> bool:
    digits = sum(ch.isdigit() for ch in m)
    if not 9 <= digits <= 15:
        return False
    separators = sum(ch in " .-()" for ch in m)
    return m.startswith("+") or separators >= 2


def _is_token(s: str) -> bool:
    return any(c.isdigit() for c in s) and any(c.isupper() for c in s) and any(c.islower() for c in s)


def content_kinds(value: str) -> dict[str, bool]:
    """PII kinds found in one text value -> whether the match is the whole value (trimmed).

    `{'email': True}` for `bob@x.org`, `{'email': False}` for `write to bob@x.org`.
    """
    found: dict[str, bool] = {}
    text = value.strip()
    if not text or len(text) < 6:
        return found

    def add(kind: str, match: str) -> None:
        found[kind] = found.get(kind, False) or match.strip() == text

    if "@" in text:
        for m in EMAIL_RE.finditer(text):
            add("email", m.group())
    for m in JWT_RE.finditer(text):
        add("token", m.group())
    for m in IBAN_RE.finditer(text):
        if iban_ok(m.group()):
            add("iban", m.group())
    for m in SSN_RE.finditer(text):
        add("ssn", m.group())
    for m in CARD_RE.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1:
            add("card", m.group())
    if "." in text:
        for m in IPV4_RE.finditer(text):
            try:
                ipaddress.IPv4Address(m.group())
            except ipaddress.AddressValueError:
                continue
            add("ip", m.group())
    if ":" in text:
        for m in IPV6_RE.finditer(text):
            try:
                ipaddress.IPv6Address(m.group())
            except ipaddress.AddressValueError:
                continue
            add("ip", m.group())
    if "ssn" not in found and "card" not in found:
        for m in PHONE_RE.finditer(text):
            if _phone_ok(m.group()) and not IPV4_RE.fullmatch(m.group()):
                add("phone", m.group())
    if "token" not in found and "@" not in text:
        for m in HEX_TOKEN_RE.finditer(text):
            if re.search(r"\d", m.group()) and re.search(r"[a-fA-F]", m.group()):
                add("token", m.group())
        for m in B64_TOKEN_RE.finditer(text):
            if _is_token(m.group()) and not HEX_TOKEN_RE.fullmatch(m.group()):
                add("token", m.group())
    return found


def json_leaves(doc: Any, path: str = "$") -> Iterator[tuple[str, str, Any]]:
    """(path, last key, value) of every scalar in a JSON document; array items share the path `[*]`."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            key = str(k)
            sub = path + copytext.json_path_step(key)
            if isinstance(v, (dict, list)):
                yield from json_leaves(v, sub)
            else:
                yield sub, key, v
    elif isinstance(doc, list):
        for v in doc:
            if isinstance(v, (dict, list)):
                yield from json_leaves(v, path + copytext.json_path_step(None))
            else:
                yield path + copytext.json_path_step(None), "", v


# --------------------------------------------------------------------------- findings


class Finding(msgspec.Struct, kw_only=True):
    """One column (or one JSON path inside a column) that holds, or is named like, PII."""

    table: str
    column: str
    type: str
    kind: str  # email, phone, first_name, ..., or the content kind found
    reasons: list[str]
    confidence: str  # high, medium, low
    strategy: str | None = None  # the rule scan suggests; None when no available strategy fits
    params: dict[str, Any] = {}
    no_fit: str | None = None  # why no rule could be suggested
    wanted: str | None = None  # with no_fit: the strategy that would be right once it fits the column
    covered: str | None = None  # 'FILE:LINE strategy' when the rules already cover the column
    review: str | None = None  # 'needs review: ...' when a person must look whatever the sample shows
    json_paths: dict[str, str] = {}  # for json columns: path -> kind

    def rule_text(self) -> str:
        extra = "".join(f", {k}: {json.dumps(v)}" for k, v in self.params.items())
        if self.strategy is None:
            return f"none that fits ({self.no_fit}); intended: strategy: {self.wanted}{extra}"
        return f"strategy: {self.strategy}{extra}"


_CONF_RANK = {"low": 0, "medium": 1, "high": 2}

# kind -> strategies to try, best first, as each strategy's module ranks itself (scan_ranks). The
# first one that exists, fits the column and (on a unique column) keeps values unique is suggested.
_PREFERENCES = strategies.SCAN_PREFERENCES
_UNIQUE_FALLBACK = strategies.SCAN_UNIQUE_FALLBACK
_FALLBACK = (strategies.SCAN_FALLBACK,)
# Parameters a suggested strategy needs (it has no defaults for them).
_DEFAULT_PARAMS = strategies.SCAN_PARAMS


def _fits(name: str, params: dict[str, Any], column: Column) -> tuple[bool, str]:
    strategy = strategies.STRATEGIES.get(name)
    if strategy is None:
        return False, f"{name} is not available"
    try:
        parsed, problems = strategies.parse_params(name, params)
        if problems or parsed is None:
            return False, "; ".join(problems)
        why = strategy.check_column(parsed, column)
        if why:
            return False, why
        if (why := unique_conflict(name, parsed, column)) is not None:
            return False, why
    except Exception as exc:  # noqa: BLE001 - a strategy that cannot judge this column does not fit it
        return False, f"{name}: {exc}"
    return True, ""


def suggest(kind: str, column: Column, json_paths: dict[str, str] | None = None) -> tuple[str, dict, str | None]:
    """(strategy, params, why-it-does-not-fit) for a finding of `kind` on `column`: the first preferred
    strategy that fits, or the first preferred one with the reason it does not fit (yet). No strategy
    rewrites inside a container or an opaque type: only the whole value can go (null)."""
    if reader(column) in _CONTAINERS or opaque(column):
        ok, why = _fits(strategies.SCAN_WHOLE_VALUE, {}, column)
        return strategies.SCAN_WHOLE_VALUE, {}, None if ok else f"no strategy rewrites inside {column.described}, and {why}"
    if json_paths:
        inner = {}
        for path, k in sorted(json_paths.items()):
            inner[path] = next((s for s in _PREFERENCES.get(k, _FALLBACK) if s in strategies.STRATEGIES), _FALLBACK[0])
        params = {"paths": inner}
        ok, why = _fits(strategies.SCAN_DOCUMENTS, params, column)
        return strategies.SCAN_DOCUMENTS, params, None if ok else why
    reasons = []
    candidates = _PREFERENCES.get(kind, _FALLBACK)
    if column.unique or column.unique_indexes:  # as the planner refuses: in any unique index
        candidates = candidates + _UNIQUE_FALLBACK
    for name in candidates:
        ok, why = _fits(name, _DEFAULT_PARAMS.get(name, {}), column)
        if ok:
            return name, dict(_DEFAULT_PARAMS.get(name, {})), None
        reasons.append(why)
    return candidates[0], dict(_DEFAULT_PARAMS.get(candidates[0], {})), f"none of {', '.join(dict.fromkeys(candidates))} fits {column.type}: {reasons[0]}"


class _Tally:
    """Content hits for one column or JSON path over the sample."""

    __slots__ = ("values", "hits", "whole", "where")

    def __init__(self):
        self.values = 0
        self.hits: dict[str, int] = {}
        self.whole: dict[str, int] = {}
        self.where: set[str] = set()  # containers: the inner names whose text holds PII

    def add(self, text: str) -> None:
        self.values += 1
        for kind, whole in content_kinds(text).items():
            self.hits[kind] = self.hits.get(kind, 0) + 1
            self.whole[kind] = self.whole.get(kind, 0) + whole

    def add_all(self, leaves) -> None:
        """One container value: its (inner name, text) leaves together count once per kind."""
        self.values += 1
        kinds: dict[str, bool] = {}
        for where, text in leaves:
            found = content_kinds(text)
            if found and where:
                self.where.add(where)
            for kind, whole in found.items():
                kinds[kind] = kinds.get(kind, False) or whole
        for kind, whole in kinds.items():
            self.hits[kind] = self.hits.get(kind, 0) + 1
            self.whole[kind] = self.whole.get(kind, 0) + whole

    def best(self) -> tuple[str, int, bool] | None:
        """(kind, hits, mostly whole values) of the most frequent kind. Values that are wholly one kind
        or another (emails here, phone numbers there) are not "mostly whole": no single pseudonym fits."""
        if not self.hits:
            return None
        ranked = sorted(self.hits, key=lambda k: (self.hits[k], k == "email"), reverse=True)
        kind = ranked[0]
        mixed = len(ranked) > 1 and self.hits[ranked[1]] * 10 >= self.values
        return kind, self.hits[kind], not mixed and self.whole[kind] * 2 > self.hits[kind]

    def describe(self, where: str = "values") -> str:
        """`200/300 sampled values contain an email, 12 a phone number`."""
        items = sorted(self.hits.items(), key=lambda kv: -kv[1])
        text = f"{items[0][1]}/{self.values} sampled {where} contain {_article(items[0][0])}"
        return text + "".join(f", {n} {_article(k)}" for k, n in items[1:])


def _confidence(hits: int, values: int) -> str:
    share = hits / max(values, 1)
    return "high" if share >= 0.5 else "medium" if share >= 0.1 else "low"


def _flatten(items: list) -> Iterator[str]:
    """The non-NULL strings of an array, whatever its dimensions."""
    for item in items:
        if isinstance(item, list):
            yield from _flatten(item)
        elif item is not None:
            yield item


def _text_of(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    return value if isinstance(value, str) else str(value)


# Built-in types of the user-defined category that hold no text of their own (bytea holds bytes, which
# scan does not decode): never "needs review".
_PLAIN_USER_TYPES = frozenset({
    "bytea", "uuid", "macaddr", "macaddr8", "pg_lsn", "txid_snapshot", "pg_snapshot", "jsonpath", "aclitem",
    "refcursor", "gtsvector", "int2vector", "oidvector", "pg_brin_bloom_summary", "pg_brin_minmax_multi_summary",
})
# Readers of container values: their to_jsonb() form, a document whose keys are field names (composite
# types; hstore through its cast to json), whose strings are then read as the type's text form.
_CONTAINERS = frozenset({"document", "xml", "lexemes"})
DOC_BYTES = 65536  # a larger json, composite, hstore, xml or tsvector value is left out of the sample


def reader(column: Column) -> str | None:
    """How scan reads a column's values: 'text', 'json', 'document' (composite types and hstore, read
    exactly through to_jsonb: field names and keys as JSON keys), 'xml' (text, attribute values and
    element names), 'lexemes' (tsvector: its lexemes), or None (not sampled). Arrays of each are read
    element by element. Generated columns are never read: the target computes them again."""
    if column.generated:
        return None
    if column.category == "S":
        return "text"
    if column.base_type in ("json", "jsonb"):
        return "json"
    if column.category == "C" or (column.category == "U" and column.base_type == "hstore"):
        return "document"
    if column.base_type == "xml":
        return "xml"
    if column.base_type in ("tsvector", "tsquery"):
        return "lexemes"
    return None


def sampled(column: Column) -> bool:
    """Columns whose values are sampled: text-like, json, containers scan can read, and arrays of them."""
    return reader(column) is not None


def opaque(column: Column) -> bool:
    """A type scan cannot read inside (an extension's or a user's own base type): its values may hold
    PII that no pattern sees, so a person must look at it."""
    return (not column.generated and column.category == "U" and reader(column) is None
            and column.base_type not in _PLAIN_USER_TYPES)


def review_reason(table: Table, column: Column, pii_columns) -> str | None:
    """Why a column needs a person's review whatever its sampled values show, or None.

    `pii_columns` are the table's columns known to hold PII (ruled, or found by name or content). A
    text search vector is copied as it is, so one kept from PII columns (by a trigger, or by the
    application) carries their words to the target; a generated one is computed again there."""
    if column.generated:
        return None
    if opaque(column):
        return f"needs review: scan cannot read inside type {column.described}"
    if column.base_type == "tsvector":
        others = sorted(set(pii_columns) - {column.name})
        if others:
            return (f"needs review: may be derived from PII (a text search vector in a table whose "
                    f"{', '.join(others)} hold PII)")
        if table.user_triggers:
            return (f"needs review: may be derived from PII (a text search vector kept by trigger(s) "
                    f"{', '.join(table.user_triggers)})")
    return None


_XML_TOKEN_RE = re.compile(r"<!\[CDATA\[(.*?)\]\]>|<!--(.*?)-->|<([^>]*)>|([^<]+)", re.S)
_XML_START_RE = re.compile(r"([A-Za-z_][\w.:-]*)(.*?)(/?)\s*$", re.S)
_XML_ATTR_RE = re.compile(r"([A-Za-z_][\w.:-]*)\s*=\s*(?:\"([^\"]*)\"|'([^']*)')")
_LEXEME_RE = re.compile(r"'((?:[^'\\]|''|\\.)*)'")


def xml_leaves(text: str) -> Iterator[tuple[str, str]]:
    """(name of the element or attribute that holds it, text) for every text node, CDATA section,
    comment and attribute value of an XML value's text form, entities decoded."""
    stack: list[str] = []
    for m in _XML_TOKEN_RE.finditer(text):
        cdata, comment, tag, chars = m.groups()
        if tag is None:
            value = cdata if cdata is not None else comment if comment is not None else html.unescape(chars)
            if value.strip():
                yield (stack[-1] if stack else ""), value
        elif tag.startswith("/"):
            if stack:
                stack.pop()
        elif (start := _XML_START_RE.match(tag)) is not None:
            name = start.group(1).rsplit(":", 1)[-1]
            for a in _XML_ATTR_RE.finditer(start.group(2)):
                yield a.group(1).rsplit(":", 1)[-1], html.unescape(a.group(2) if a.group(2) is not None else a.group(3))
            if not start.group(3):
                stack.append(name)


def lexemes(text: str) -> list[str]:
    """The lexemes of a tsvector's (or tsquery's) text form: `'bob@x.org':3 'smith':2`."""
    return [m.group(1).replace("''", "'").replace("\\\\", "\\") for m in _LEXEME_RE.finditer(text)]


def container_leaves(how: str, doc: Any) -> Iterator[tuple[str, str, str]]:
    """(path, key, text) of every string inside a container value's to_jsonb() form. `key` is the
    field, hstore key, element or attribute name that holds the text ('' when none)."""
    for path, key, leaf in json_leaves(doc) if isinstance(doc, (dict, list)) else [("$", "", doc)]:
        text = _text_of(leaf)
        if text is None:
            continue
        if how == "xml":
            for name, inner in xml_leaves(text):
                yield (f"{path}<{name}>" if name else path), name or key, inner
        elif how == "lexemes":
            for lexeme in lexemes(text):
                yield path, key, lexeme
        else:
            yield path, key, text


def _sample_sql(table: Table, columns: list[Column], rows: int) -> str:
    exprs = []
    for c in columns:
        q = quote_ident(c.name)
        how = reader(c)
        if how in _CONTAINERS:
            exprs.append(f"CASE WHEN octet_length({q}::text) <= {DOC_BYTES} THEN to_jsonb({q})::text END")
        elif c.is_array:
            exprs.append(f"CASE WHEN cardinality({q}) <= 50 THEN {q}[1:50]::text[] END")
        elif how == "json":
            exprs.append(f"CASE WHEN octet_length({q}::text) <= {DOC_BYTES} THEN {q}::text END")
        else:
            exprs.append(f"left({q}::text, 4096)")
    # TABLESAMPLE SYSTEM picks whole pages: cheap on a big table, but it can miss everything on a
    # small one, where a plain LIMIT reads only the first pages anyway.
    sample = ""
    if table.est_rows > rows * 20:
        percent = min(100.0, max(0.0001, 100.0 * rows * 5 / table.est_rows))
        sample = f" TABLESAMPLE SYSTEM ({percent:.6f})"
    return f"SELECT {', '.join(exprs)} FROM {table.qualified}{sample} LIMIT {int(rows)}"


class TableScan(msgspec.Struct, kw_only=True):
    table: str
    sampled_rows: int
    findings: list[Finding]
    note: str | None = None  # sampling skipped or failed: name matches only


def pii_kind(table: str, col: Column) -> str | None:
    """The kind a column's name (or, for addresses, its type) suggests, before any value is read."""
    kind = name_kind(table, col)
    if kind is None and col.base_type in ("inet", "cidr"):
        return "ip"
    if kind is None and col.base_type in ("macaddr", "macaddr8"):
        return "mac"
    return kind


# Casts to text or json defined with a function by someone other than an extension: to_jsonb() of a
# composite or hstore value calls a field type's cast to json, so reading such values would run code
# that another role on the source wrote, with scan's rights.
_PLANTED_CASTS_SQL = """
SELECT pg_catalog.format('%s AS %s', c.castsource::pg_catalog.regtype, c.casttarget::pg_catalog.regtype)
FROM pg_catalog.pg_cast c
WHERE c.castfunc <> 0 AND c.castsource >= 16384
  AND c.casttarget IN ('pg_catalog.text'::pg_catalog.regtype, 'pg_catalog.varchar'::pg_catalog.regtype,
                       'pg_catalog.bpchar'::pg_catalog.regtype, 'pg_catalog.json'::pg_catalog.regtype,
                       'pg_catalog.jsonb'::pg_catalog.regtype)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_cast'::pg_catalog.regclass
                  AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1 LIMIT 3
"""


def planted_casts(conn: psycopg.Connection) -> list[str]:
    """The casts (at most three, for the message) that make reading composite and hstore values unsafe."""
    return [r[0] for r in conn.execute(_PLANTED_CASTS_SQL).fetchall()]


def scan_table(conn: psycopg.Connection, table: Table, rows: int, ruled: dict[str, str] | None = None) -> TableScan:
    """Findings for one table: column names, then a bounded sample of its text-like and container
    values, then the columns that need a review whatever they hold (see review_reason). `ruled` maps
    the columns the rules cover to their strategy: a ruled column holds PII unless it is kept.

    Runs in a savepoint when `conn` is in a transaction, so a failed sample (timeout, permission)
    leaves the caller's transaction usable."""
    findings: dict[str, Finding] = {}
    for col in table.columns:
        if col.generated:
            continue
        kind = pii_kind(table.display, col)
        if kind is not None:
            conf = "medium" if kind in _MEDIUM_KINDS else "high"
            why = (f"type {col.base_type}" if kind in ("ip", "mac") and name_kind(table.display, col) is None
                   else f"name {col.name!r} suggests {KIND_LABELS[kind]}")
            findings[col.name] = Finding(table=table.display, column=col.name, type=col.type, kind=kind,
                                         reasons=[why], confidence=conf)

    planted = planted_casts(conn) if any(reader(c) == "document" for c in table.columns) else []
    cols = [c for c in table.columns if sampled(c) and not (planted and reader(c) == "document")]
    note = None
    got = 0
    if cols and rows > 0:
        tallies = {c.name: _Tally() for c in cols}
        paths: dict[str, dict[str, _Tally]] = {c.name: {} for c in cols}
        path_names: dict[str, dict[str, str]] = {c.name: {} for c in cols}
        readers = {c.name: reader(c) for c in cols}
        try:
            with conn.transaction():
                records = conn.execute(_sample_sql(table, cols, rows)).fetchall()
        except psycopg.errors.QueryCanceled:
            records, note = [], "sampling stopped by the statement timeout: names only"
        except psycopg.Error as exc:
            first, _ = server_error(str(exc), exc.diag.message_primary, exc.diag.context)  # one line, no value
            records, note = [], f"cannot sample ({first}): names only"
        got = len(records)
        for record in records:
            for col, value in zip(cols, record):
                if value is None:
                    continue
                how = readers[col.name]
                if how in _CONTAINERS:
                    try:
                        doc = json.loads(value)
                    except json.JSONDecodeError:
                        continue
                    leaves = list(container_leaves(how, doc))
                    tallies[col.name].add_all((key, text) for _, key, text in leaves)
                    for _, key, _ in leaves:
                        if key and (k := name_kind(table.display, key)) is not None:
                            path_names[col.name].setdefault(key, k)
                elif how == "json":
                    try:
                        doc = json.loads(value)
                    except json.JSONDecodeError:
                        continue
                    tallies[col.name].values += 1
                    for path, key, leaf in json_leaves(doc):
                        text = _text_of(leaf)
                        if text is None:
                            continue
                        paths[col.name].setdefault(path, _Tally()).add(text)
                        if key and (k := name_kind(table.display, key)) is not None:
                            path_names[col.name].setdefault(path, k)
                elif col.is_array:
                    for item in _flatten(value):
                        tallies[col.name].add(item)
                else:
                    tallies[col.name].add(value)
        for col in cols:
            if readers[col.name] in _CONTAINERS:
                _container_finding(table, col, tallies[col.name], path_names[col.name], findings)
            else:
                _content_finding(table, col, tallies[col.name], paths[col.name], path_names[col.name], findings)
    elif cols:
        note = "not sampled: names only"

    ruled = ruled or {}
    pii_columns = ({c for c in findings if ruled.get(c) not in strategies.IDENTITY}
                   | {c for c, s in ruled.items() if s not in strategies.IDENTITY})
    for col in table.columns:
        why = review_reason(table, col, pii_columns)
        unread = why is None and planted and not col.generated and reader(col) == "document"
        if unread:
            why = (f"needs review: not read, so that no function another role wrote runs (the source "
                   f"defines casts {', '.join(planted)})")
        if why is None:
            continue
        f = findings.get(col.name)
        if f is None:
            f = findings[col.name] = Finding(table=table.display, column=col.name, type=col.type,
                                             kind="review" if opaque(col) or unread else "derived", reasons=[],
                                             confidence="medium")
        f.review = why
        f.reasons.append(why)

    by_name = {c.name: c for c in table.columns}
    for f in findings.values():
        col = by_name[f.column]
        name, f.params, f.no_fit = suggest(f.kind, col, f.json_paths or None)
        if f.no_fit is None:
            f.strategy = name
        else:
            f.wanted = name
    ordered = [findings[c.name] for c in table.columns if c.name in findings]
    return TableScan(table=table.display, sampled_rows=got, findings=ordered, note=note)


def _container_finding(table: Table, col: Column, tally: _Tally, names: dict[str, str],
                       findings: dict[str, Finding]) -> None:
    """A finding for a container column: the kinds found in its strings, and the inner names (fields,
    keys, elements) that read as PII. No strategy rewrites inside these types: see suggest()."""
    reasons, conf, kind = [], "low", None
    if (best := tally.best()) is not None:
        kind, hits, _ = best
        where = sorted(tally.where)
        reasons.append(tally.describe() + (f" (in {', '.join(where[:5])}{', ...' if len(where) > 5 else ''})"
                                           if where else ""))
        conf = _confidence(hits, tally.values)
    for key, k in sorted(names.items())[:5]:
        reasons.append(f"inner name {key!r} suggests {KIND_LABELS[k]}")
        kind = kind or k
        conf = max(conf, "medium", key=_CONF_RANK.get)
    if kind is None:
        return
    existing = findings.get(col.name)
    if existing is None:
        findings[col.name] = Finding(table=table.display, column=col.name, type=col.type, kind=kind,
                                     reasons=reasons, confidence=conf)
        return
    existing.reasons += reasons
    existing.confidence = max(existing.confidence, conf, key=_CONF_RANK.get)


def _content_finding(table: Table, col: Column, tally: _Tally, paths: dict[str, _Tally],
                     path_names: dict[str, str], findings: dict[str, Finding]) -> None:
    existing = findings.get(col.name)
    if paths or path_names:
        kinds: dict[str, str] = {}
        reasons, conf = [], "low"
        for path in sorted(set(paths) | set(path_names)):
            t = paths.get(path, _Tally())
            best = t.best()
            if best is not None:
                kind, hits, whole = best
                kinds[path] = kind if whole else "text"
                reasons.append(f"{path}: {t.describe()}")
                conf = max(conf, _confidence(hits, t.values), key=_CONF_RANK.get)
            elif path in path_names:
                kinds[path] = path_names[path]
                reasons.append(f"{path}: key suggests {KIND_LABELS[path_names[path]]}")
                conf = max(conf, "medium", key=_CONF_RANK.get)
        if not kinds:
            return
        if existing is None:
            existing = findings[col.name] = Finding(table=table.display, column=col.name, type=col.type,
                                                    kind=next(iter(kinds.values())), reasons=[], confidence=conf)
        existing.json_paths = kinds
        existing.reasons += reasons
        existing.confidence = max(existing.confidence, conf, key=_CONF_RANK.get)
        return
    best = tally.best()
    if best is None:
        return
    kind, hits, whole = best
    reason = tally.describe("elements" if col.is_array else "values")
    conf = _confidence(hits, tally.values)
    if existing is None:
        content_kind = kind if whole or col.is_array else "text"
        findings[col.name] = Finding(table=table.display, column=col.name, type=col.type, kind=content_kind,
                                     reasons=[reason], confidence=conf)
        return
    existing.reasons.append(reason)
    existing.confidence = max(existing.confidence, conf, key=_CONF_RANK.get)
    if existing.kind == "contact" or (existing.kind != kind and not whole):
        existing.kind = kind if whole else "text"


def _article(kind: str) -> str:
    label = {"ip": "an IP address", "ssn": "a US SSN", "iban": "an IBAN", "card": "a card number (Luhn)",
             "token": "a token", "email": "an email", "phone": "a phone number"}
    return label.get(kind, kind)


def set_statement_timeout(conn: psycopg.Connection, ms: int) -> str:
    """Sets the session's statement_timeout (transaction-local inside a transaction); returns the old one."""
    old = conn.execute("SELECT current_setting('statement_timeout')").fetchone()[0]
    in_tx = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    conn.execute("SELECT set_config('statement_timeout', %s, %s)", (f"{int(ms)}ms", in_tx))
    return old


def restore_statement_timeout(conn: psycopg.Connection, old: str) -> None:
    in_tx = conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE
    conn.execute("SELECT set_config('statement_timeout', %s, %s)", (old, in_tx))
