"""Each strategy is named in at most two source files: its module in strategies/ and its compiled file,
the twin of that module in _compiled/ (issue 13, "Done when"). Adding a strategy to a family then
touches those two files and its tests.

What "names it" means here, for a strategy called X, in a source file under src/ (.py .pyx .pxd
.pxi .h), reading its code only (comments are prose; C embedded in a Cython file as verbatim code,
`cdef extern from *: \"\"\"...\"\"\"`, is read as C code):

- a text string literal whose whole value is X ("date_shift", 'noise'): the config word, a registry
  key, a params tag, a compiled function's registration. Bytes literals are data the rewriters read
  and write (b"null" is JSON's null), and X inside a longer text (a message, a sample YAML config)
  uses the strategy the way a user or a test does, without implementing it;
- an identifier spelling X: for a name of two words or more (date_shift, fake_email), which reads as
  nothing else, any identifier in which its words appear in a row (S_DATE_SHIFT, cf_date_shift,
  DateShiftStrategy, date_shift_apply); for a one-word name, which is also an English or SQL word
  (null, hash, name, json, keep...), the word with the affixes our code gives a strategy's parts:
  S_X (a dispatch code), cf_X... (its C functions), XStrategy, XParams, X_apply, X_setup.

A one-word literal is read as that other meaning, and not counted, only in the files listed in
OTHER_MEANINGS, where the word is a PII kind, a column of the sample schema, a PostgreSQL type, an
output format or a YAML word ("name", a key everywhere, is never counted as a literal): there a
literal of the strategy itself would go unseen, the price of not guessing meanings; everywhere
else, and for identifiers everywhere, it counts.
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

import pytest

from confiture_fast.strategies import STRATEGIES

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "confiture_fast"
SUFFIXES = (".py", ".pyx", ".pxd", ".pxi", ".h")

_PII_KIND = "a PII kind scan reports (or ranks a strategy for)"
_SAMPLE_COLUMN = "a column of the sample schema"
_PG_TYPE = "a PostgreSQL type name"
OTHER_MEANINGS: dict[str, dict[str, str]] = {
    "email": {"pii.py": _PII_KIND, "verify.py": _PII_KIND, "strategies/fake.py": _PII_KIND,
              "sample.py": _SAMPLE_COLUMN, "demo.py": _SAMPLE_COLUMN},
    "phone": {"pii.py": _PII_KIND, "verify.py": _PII_KIND, "strategies/masks.py": _PII_KIND,
              "sample.py": _SAMPLE_COLUMN, "demo.py": _SAMPLE_COLUMN},
    "ip": {"pii.py": _PII_KIND, "strategies/masks.py": _PII_KIND},
    "uuid": {"pii.py": _PG_TYPE, "strategies/base.py": _PG_TYPE, "strategies/masks.py": _PG_TYPE},
    "json": {"pii.py": _PG_TYPE + ", and how scan reads a column", "strategies/base.py": _PG_TYPE, "plan.py": _PG_TYPE,
             "strategies/masks.py": _PG_TYPE, "bench.py": "an output format", "bench_incremental.py": "an output format",
             "cli/options.py": "an output format"},
    # the commonest key and attribute of all (config keys, record fields, SQL parameters): everywhere
    "name": {"*": "a key, field or attribute called name"},
    "null": {"scan.py": "a YAML word", "verify.py": "the name of verify's NULL-positions check"},
}

_VERBATIM_C = re.compile(r'cdef\s+extern\s+from\s+\*\s*(?:nogil\s*)?:\s*\n\s*[rR]?("""|\'\'\')(.*?)\1', re.S)
_PY_TOKEN = re.compile(r"""(?P<comment>\#[^\n]*)
    |(?P<prefix>[rRbBuUfFcC]{0,2})(?P<string>\"\"\"(?:\\.|[^\\])*?\"\"\"|'''(?:\\.|[^\\])*?'''
                                   |"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*')
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)""", re.S | re.X)
_C_TOKEN = re.compile(r"""(?P<comment>/\*.*?\*/|//[^\n]*)|(?P<string>"(?:\\.|[^"\\\n])*")
    |(?P<char>'(?:\\.|[^'\\\n])*')|(?P<ident>[A-Za-z_][A-Za-z0-9_]*)""", re.S | re.X)
_ONE_WORD_FORMS = (("s", "{}"), ("{}", "strategy"), ("{}", "params"), ("{}", "apply"), ("{}", "setup"))


@functools.lru_cache(maxsize=None)
def code_tokens(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(identifiers, text literal values) of a source file's code."""
    text = path.read_text()
    idents: set[str] = set()
    literals: set[str] = set()

    def read_c(code: str) -> None:
        for m in _C_TOKEN.finditer(code):
            if m["ident"]:
                idents.add(m["ident"])
            elif m["string"]:
                literals.add(m["string"][1:-1])

    if path.suffix == ".h":
        read_c(text)
        return frozenset(idents), frozenset(literals)
    for m in _VERBATIM_C.finditer(text):
        read_c(m[2])
    text = _VERBATIM_C.sub(lambda m: " " * len(m[0]), text)
    for m in _PY_TOKEN.finditer(text):
        if m["ident"]:
            idents.add(m["ident"])
        elif m["string"] and not set(m["prefix"].lower()) & {"b", "c"}:  # bytes, and Cython's C chars
            quote = 3 if m["string"][:3] in ('"""', "'''") else 1
            literals.add(m["string"][quote:-quote])
    return frozenset(idents), frozenset(literals)


@functools.lru_cache(maxsize=None)
def words(identifier: str) -> tuple[str, ...]:
    """S_DATE_SHIFT, cf_date_shift, DateShiftStrategy -> (s, date, shift), (cf, date, shift), ..."""
    out: list[str] = []
    for part in identifier.split("_"):
        out += re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z0-9]+", part)
    return tuple(w.lower() for w in out)


def spells(identifier: str, name: str) -> bool:
    """Whether the identifier spells the strategy `name` (see the module docstring)."""
    have, want = words(identifier), tuple(name.split("_"))
    if len(want) > 1:
        return any(have[i:i + len(want)] == want for i in range(len(have)))
    return have[:2] == ("cf", name) or any(have == tuple(w.format(name) for w in form) for form in _ONE_WORD_FORMS)


def files_naming(name: str, root: Path = PACKAGE) -> dict[str, list[str]]:
    """Source file (relative to root) -> how it names the strategy."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.suffix in SUFFIXES):
        rel = path.relative_to(root).as_posix()
        idents, literals = code_tokens(path)
        how = sorted(i for i in idents if spells(i, name))
        if name in literals and not {rel, "*"} & set(OTHER_MEANINGS.get(name, {})):
            how.append(repr(name))
        if how:
            found[rel] = how
    return found


def _family(name: str) -> str:
    return type(STRATEGIES[name]).__module__.rsplit(".", 1)[1]


@pytest.mark.parametrize("name", list(STRATEGIES))
def test_a_strategy_is_named_only_in_its_module_and_its_compiled_file(name):
    found = files_naming(name)
    module, compiled = f"strategies/{_family(name)}.py", f"_compiled/{_family(name)}.pxi"
    assert module in found, (name, found)
    others = {f: how for f, how in found.items() if f not in (module, compiled)}
    assert not others, f"{name} is named outside {module} and {compiled}: {others}"


def test_the_row_machinery_names_no_strategy_and_each_compiled_one_is_in_its_family_file():
    """_anon.pyx and _anon.pxd name no strategy; each compiled strategy (all but the ones copied
    through) is in the _compiled/ twin of its module."""
    for name, strategy in STRATEGIES.items():
        found = files_naming(name)
        assert not {"_anon.pyx", "_anon.pxd"} & set(found), (name, found)
        assert strategy.identity or f"_compiled/{_family(name)}.pxi" in found, (name, found)


def test_the_definition_reads_code_not_prose(tmp_path):
    """C inside Cython counts, comments and bytes do not, and a one-word name needs its affixes."""
    (tmp_path / "a.pyx").write_text('cdef extern from *:\n    r"""\n    static int cf_noise(void);\n    """\n'
                                    '    int cf_noise()\n# noise, "noise"\nx = b"noise"\n')
    (tmp_path / "b.h").write_text('/* S_NOISE */\nstatic int statistical_noise;\n')
    (tmp_path / "c.py").write_text('MIN_NOISE = 0.05\nprint("within noise")\nwhich = "noise"\n')
    (tmp_path / "d.pxi").write_text("cdef int noise_apply(): pass\nS_DATE_SHIFT = 1\nshift_date = 2\n")
    assert files_naming("noise", tmp_path) == {"a.pyx": ["cf_noise"], "c.py": ["'noise'"], "d.pxi": ["noise_apply"]}
    assert files_naming("date_shift", tmp_path) == {"d.pxi": ["S_DATE_SHIFT"]}
