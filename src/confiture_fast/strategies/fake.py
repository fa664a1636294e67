"""Realistic values drawn from Faker's locale data by the keyed PRF: the fake_* strategies.

Each strategy names the pools it draws from (`pool_kind`); the compiled rewriter gets the same
pools from `fake_pools`, so both pick the same value for the same digest.
"""

from __future__ import annotations

import functools
import re
import unicodedata

from confiture_fast.strategies.base import Params, Strategy, check_domain, check_hex_length, UNIQUE_HEX_FLOOR, u64


FAKE_POOL_DRAWS = 1000  # generated values per pool (streets, cities, companies), before dedup


def _check_locale(p, problems):
    import faker.config

    if p.locale not in faker.config.AVAILABLE_LOCALES:
        problems.append(f"unknown locale {p.locale!r} (Faker knows e.g. en_US, fr_FR, de_DE, ja_JP)")


def _ascii_word(s: str) -> str:
    """Lowercase ASCII letters of s (accents dropped), for the local part of fake emails."""
    plain = unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode().lower()
    return "".join(ch for ch in plain if ch.isalnum())


@functools.lru_cache(maxsize=None)
def locale_pools(kind: str, locale: str) -> tuple[tuple[str, ...], ...]:
    """The value lists a fake_* strategy picks from, built once per process from Faker's providers.

    Names come straight from the locale's provider lists; streets, cities and companies are drawn
    from a Faker instance with a fixed seed. Sorted and deduplicated, so the same Faker version
    gives the same pools (and pseudonyms) everywhere.
    """
    from faker import Faker

    fake = Faker(locale)
    fake.seed_instance(20240601)

    def attr(name):
        for provider in fake.get_providers():
            if hasattr(provider, name):
                return sorted(set(getattr(provider, name)))
        raise ValueError(f"Faker locale {locale} has no {name}")

    def drawn(method):
        return sorted({getattr(fake, method)() for _ in range(FAKE_POOL_DRAWS)})

    if kind == "people":
        return tuple(attr("first_names")), tuple(attr("last_names"))
    if kind == "ascii_people":
        firsts = sorted({w for w in map(_ascii_word, attr("first_names")) if w} or {"user"})
        lasts = sorted({w for w in map(_ascii_word, attr("last_names")) if w} or {"user"})
        return tuple(firsts), tuple(lasts)
    if kind == "addresses":
        return tuple(drawn("street_name")), tuple(drawn("city"))
    if kind == "companies":
        return (tuple(drawn("company")),)
    raise ValueError(f"no pools for {kind}")




def _check_locale(p, problems):
    import faker.config

    if p.locale not in faker.config.AVAILABLE_LOCALES:
        problems.append(f"unknown locale {p.locale!r} (Faker knows e.g. en_US, fr_FR, de_DE, ja_JP)")


class FakeStrategy(Strategy):
    """Realistic values picked from locale pools by the keyed PRF."""

    equal_by_design = "drawn from a pool of real names"
    same_row_by_design = True
    pool_kind = "people"

    def pools(self, p):
        return locale_pools(self.pool_kind, p.locale)

    def validate(self, p, problems):
        _check_locale(p, problems)

    def output_format(self, p):
        return None


def _pick(pool, n: int) -> str:
    return pool[n % len(pool)]


class FakeNameParams(Params, tag="fake_name"):
    locale: str = "en_US"


class FakeFirstNameParams(Params, tag="fake_first_name"):
    locale: str = "en_US"


class FakeLastNameParams(Params, tag="fake_last_name"):
    locale: str = "en_US"


class FakeAddressParams(Params, tag="fake_address"):
    locale: str = "en_US"


class FakeCompanyParams(Params, tag="fake_company"):
    locale: str = "en_US"


class FakeEmailParams(Params, tag="fake_email"):
    locale: str = "en_US"
    length: int = 16
    domain: str = "example.com"


class FakeNameStrategy(FakeStrategy):
    name, params_type = "fake_name", FakeNameParams
    summary = "a first and a last name of the locale"
    output = "`First Last`"
    scan_ranks = {"full_name": 1}

    def max_chars(self, p) -> int:
        firsts, lasts = self.pools(p)
        return max(map(len, firsts)) + 1 + max(map(len, lasts))

    def reference(self, p, value, digest):
        firsts, lasts = self.pools(p)
        return f"{_pick(firsts, u64(digest))} {_pick(lasts, u64(digest[8:]))}".encode()


class FakeFirstNameStrategy(FakeStrategy):
    name, params_type = "fake_first_name", FakeFirstNameParams
    summary = "a first name of the locale"
    output = "one pool value"
    scan_ranks = {"first_name": 0}

    def max_chars(self, p) -> int:
        return max(map(len, self.pools(p)[0]))

    def reference(self, p, value, digest):
        return _pick(self.pools(p)[0], u64(digest)).encode()


class FakeLastNameStrategy(FakeStrategy):
    name, params_type = "fake_last_name", FakeLastNameParams
    summary = "a last name of the locale"
    output = "one pool value"
    scan_ranks = {"last_name": 0}

    def max_chars(self, p) -> int:
        return max(map(len, self.pools(p)[1]))

    def reference(self, p, value, digest):
        return _pick(self.pools(p)[1], u64(digest[8:])).encode()


class FakeEmailStrategy(FakeStrategy):
    """first.last.<hex>@domain: the hex part keeps distinct inputs distinct."""

    name, params_type, unique = "fake_email", FakeEmailParams, True
    pool_kind = "ascii_people"
    summary = "a realistic address whose hex part keeps distinct inputs distinct"
    output = "`first.last.<length hex>@<domain>`"
    equal_by_design = None
    same_row_by_design = False
    scan_ranks = {"email": 1}

    def validate(self, p: FakeEmailParams, problems):
        _check_locale(p, problems)
        check_hex_length(p, problems)
        check_domain(p.domain, problems)

    def is_unique(self, p: FakeEmailParams) -> bool:
        return p.length >= UNIQUE_HEX_FLOOR

    def max_chars(self, p: FakeEmailParams) -> int:
        firsts, lasts = self.pools(p)
        return max(map(len, firsts)) + 1 + max(map(len, lasts)) + 1 + p.length + 1 + len(p.domain)

    def reference(self, p: FakeEmailParams, value, digest):
        firsts, lasts = self.pools(p)
        first, last = _pick(firsts, u64(digest)), _pick(lasts, u64(digest[8:]))
        return f"{first}.{last}.{digest.hex()[:p.length]}@{p.domain}".encode()

    def output_format(self, p: FakeEmailParams):
        return re.compile(rf"[A-Za-z0-9]*\.[A-Za-z0-9]*\.[0-9a-f]{{{p.length}}}@{re.escape(p.domain)}")


class FakeAddressStrategy(FakeStrategy):
    name, params_type = "fake_address", FakeAddressParams
    pool_kind = "addresses"
    summary = "a house number, a street and a city of the locale"
    output = "`1234 Street Name, City`"
    equal_by_design = "drawn from pools of real streets and cities"
    scan_ranks = {"address": 0}

    def max_chars(self, p) -> int:
        streets, cities = self.pools(p)
        return 4 + 1 + max(map(len, streets)) + 2 + max(map(len, cities))

    def reference(self, p, value, digest):
        streets, cities = self.pools(p)
        u0, u1 = u64(digest), u64(digest[8:])
        return f"{1 + u0 % 9999} {_pick(streets, u1)}, {_pick(cities, u1 >> 32)}".encode()


class FakeCompanyStrategy(FakeStrategy):
    name, params_type = "fake_company", FakeCompanyParams
    pool_kind = "companies"
    summary = "a company name of the locale"
    output = "one pool value"
    scan_ranks = {}

    def max_chars(self, p) -> int:
        return max(map(len, self.pools(p)[0]))

    def reference(self, p, value, digest):
        return _pick(self.pools(p)[0], u64(digest)).encode()


STRATEGIES = (FakeNameStrategy(), FakeFirstNameStrategy(), FakeLastNameStrategy(), FakeEmailStrategy(),
              FakeAddressStrategy(), FakeCompanyStrategy())
