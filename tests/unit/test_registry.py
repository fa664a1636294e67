"""The strategy registry (issue 13, point 1): each strategy module declares every part of its strategy,
and the compiled dispatch codes, verify's checks, scan's suggestions and the docs table derive from it."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import anon_ref
from confiture_fast import _anon, copytext, pii, strategies, verify
from confiture_fast.strategies import STRATEGIES, FieldRule, IncompleteStrategy, Rewriter, derive_key, parse_params
from confiture_fast.strategies.base import Params, Strategy

DOC = Path(__file__).resolve().parents[2] / "docs" / "strategies.md"
KEY = derive_key(b"registry-test-secret", "seed")
# Inputs each strategy reads (the typed ones read the text form of their types).
SAMPLES = {"date_shift": [b"2024-02-29", b"1999-12-31 23:59:59+02"], "noise": [b"1234.50", b"-7"],
           "ip": [b"192.168.10.20", b"2001:db8::1/64"]}
DEFAULT_SAMPLES = [b"alice@example.org", b"+33 6 12 34 56 78", b"x", "\u00e9t\u00e9 \u65e5\u672c".encode()]


def _default_params(name: str):
    params, problems = parse_params(name, {"value": "fixed"} if name == "constant" else
                                    {"relative": 0.1} if name == "noise" else
                                    {"paths": {"$.a": "hash"}} if name == "json" else {})
    assert not problems, problems
    return params


def test_every_registered_strategy_declares_every_part():
    for name, strategy in STRATEGIES.items():
        assert strategy.missing() == [], name
        assert strategy.params_type.__struct_config__.tag == name


def test_every_strategy_has_its_compiled_function_and_every_compiled_function_a_strategy():
    copied = {n for n, s in STRATEGIES.items() if s.identity}
    assert set(_anon.CODES) == set(STRATEGIES) - copied, "a compiled function without a strategy, or the reverse"
    assert sorted(_anon.CODES.values()) == list(range(1, len(_anon.CODES) + 1))
    assert strategies.COMPILED_CODES == {n: _anon.COPIED if n in copied else _anon.CODES[n] for n in STRATEGIES}


def _family(*declared):
    return types.SimpleNamespace(__name__="tests.fake_family", STRATEGIES=declared)


# The compiled functions the probes below have (name -> dispatch code).
_COMPILED = {"registry_probe": 1, "other": 2}


class _TaggedParams(Params, tag="registry_probe"):
    pass


class _OtherParams(Params, tag="other"):
    pass


def _probe(**parts):
    """A strategy with every part, minus or plus the given ones."""
    body = dict(name="registry_probe", params_type=_TaggedParams, summary="s", output="o",
                equal_by_design=None, scan_ranks={},
                reference=lambda self, p, v, d: v, output_format=lambda self, p: None)
    body.update(parts)
    for k in [k for k, v in parts.items() if v is _MISSING]:
        del body[k]
    return type("Probe", (Strategy,), body)()


_MISSING = object()


@pytest.mark.parametrize("part", ["name", "params_type", "summary", "output", "equal_by_design",
                                  "scan_ranks", "reference", "output_format"])
def test_a_strategy_lacking_a_part_is_refused_loudly(part):
    with pytest.raises(IncompleteStrategy, match=part):
        strategies._register([_family(_probe(**{part: _MISSING}))], {"registry_probe": 1})


def test_two_strategies_of_one_name_are_refused():
    with pytest.raises(IncompleteStrategy, match="already used"):
        strategies._register([_family(_probe()), _family(_probe())], {"registry_probe": 1})
    with pytest.raises(IncompleteStrategy, match="tagged"):
        strategies._register([_family(_probe(name="other"))], _COMPILED)


def test_a_strategy_and_its_compiled_function_must_find_each_other():
    with pytest.raises(IncompleteStrategy, match="lacks a compiled function"):
        strategies._register([_family(_probe())], {})
    with pytest.raises(IncompleteStrategy, match="compiled functions without a strategy: other"):
        strategies._register([_family(_probe())], _COMPILED)
    with pytest.raises(IncompleteStrategy, match="needs no compiled function"):
        strategies._register([_family(_probe(identity=True))], {"registry_probe": 1})
    assert list(strategies._register([_family(_probe(identity=True))], {})) == ["registry_probe"]


def test_a_complete_strategy_registers():
    assert list(strategies._register([_family(_probe())], {"registry_probe": 1})) == ["registry_probe"]


def test_the_compiled_flags_agree_with_the_registry():
    """What the row machinery does around a strategy (a NULL for a whole array or JSON container, a
    number inside JSON) is flagged by its compiled file; the registry says the same of it."""
    flags = _anon.compiled_flags()
    assert {n for n, f in flags.items() if "null_all" in f} == set(strategies.NULLING)
    assert {n for n, f in flags.items() if "number" in f} == set(strategies.NUMERIC_OUT)


@pytest.mark.parametrize("name", [n for n, s in STRATEGIES.items() if not s.documents])
def test_reference_output_has_the_format_verify_checks(name):
    """The shape verify demands of an output is the shape the strategy writes, for every strategy that
    declares one (and the compiled function writes the same bytes)."""
    params = _default_params(name)
    pattern = verify.output_format(name, params)
    for value in SAMPLES.get(name, DEFAULT_SAMPLES):
        rule = FieldRule(index=0, column="v", strategy=name, key=KEY, params=params)
        data = copytext.escape(value) + b"\n"
        out = Rewriter("t", ["v"], [rule]).rewrite(data)
        assert out == anon_ref.ReferenceRewriter("t", ["v"], [rule]).rewrite(data)
        if pattern is not None:
            assert pattern.fullmatch(out[:-1].decode()), (name, value, out)


def test_verify_exemptions_come_from_the_strategy_modules():
    assert verify._NO_SET_CHECK == {n: s.equal_by_design for n, s in STRATEGIES.items() if s.equal_by_design}
    assert verify._NO_ROW_CHECK <= set(verify._NO_SET_CHECK)
    assert verify._UNCHANGED == {n for n, s in STRATEGIES.items() if s.identity}


def test_scan_suggestions_come_from_the_strategy_modules():
    for kind, names in pii._PREFERENCES.items():
        ranks = [STRATEGIES[n].scan_ranks[kind] for n in names]
        assert ranks == sorted(ranks), kind
    ranked = {(k, n) for n, s in STRATEGIES.items() for k in s.scan_ranks}
    assert ranked == {(k, n) for k, names in pii._PREFERENCES.items() for n in names}
    # every PII kind scan reports gets a suggestion, ranked or the fallback
    for kind in pii.KIND_LABELS:
        assert pii._PREFERENCES.get(kind, pii._FALLBACK)


def test_docs_strategies_table_matches_the_registry():
    text = DOC.read_text()
    start, end = text.find(strategies.DOC_BEGIN), text.find(strategies.DOC_END)
    assert start >= 0 and end > start, f"{DOC} lacks the generated table markers"
    found = text[start:end + len(strategies.DOC_END)]
    assert found == strategies.doc_table(), ("docs/strategies.md disagrees with the registry; paste this:\n"
                                             + strategies.doc_table())
    for name in STRATEGIES:
        assert f"| `{name}` |" in found


def test_the_compiled_layer_imports_no_application_module():
    """_anon (and every file it includes from _compiled/) learns the rules from the registry object it
    is given, never by importing an application module."""
    here = Path(_anon.__file__).parent
    sources = [here / "_anon.pyx", *sorted((here / "_compiled").glob("*.pxi"))]
    assert len(sources) > 1
    imports = [line for f in sources for line in f.read_text().splitlines()
               if line.lstrip().startswith(("import ", "from ", "cimport "))]
    assert not [line for line in imports if "confiture_fast" in line], imports
    with pytest.raises(TypeError):
        _anon.Rewriter("t", ["v"], [])  # no registry, no rewriter
