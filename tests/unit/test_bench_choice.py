"""bench.py without a server: which settings it recommends, how ratios pair up by round, shape names."""

from __future__ import annotations

import pytest

from confiture_fast import bench


def _run(name, ratio, ratio_spread=0.0, parallel=2, batch=5000, anonymized=True):
    r = bench.Run(name=name, kind="sync", anonymized=anonymized, parallel=parallel, batch_size=batch)
    r.ratio, r.ratio_spread = ratio, ratio_spread
    return r


def test_recommendation_prefers_fewer_workers_within_noise():
    runs = [_run("p4", 1.00, ratio_spread=0.10, parallel=4), _run("p2", 0.96, parallel=2),
            _run("p1", 0.6, parallel=1), _run("verbatim", 2.0, anonymized=False)]
    rec = bench._recommend(runs)
    assert (rec.parallel, rec.batch_size) == (2, 5000)
    assert set(rec.ties) == {"p4", "p2"}


def test_recommendation_takes_the_fastest_outside_noise():
    runs = [_run("b20k", 1.0, batch=20000), _run("b5k", 0.8, batch=5000), _run("b1k", 0.6, batch=1000)]
    rec = bench._recommend(runs)
    assert rec.batch_size == 20000 and rec.ties == ["b20k"]


def test_ratios_are_paired_by_round():
    def run(name, walls):
        return bench.Run(name=name, kind="sync", rows=100, bytes=1000,
                         samples=[bench.Sample(w, 0.1, 10.0, 100) for w in walls])

    floor, pipe, mine = run("floor", [1.0, 4.0, 2.0]), run("psql", [2.0, 8.0, 4.0]), run("mine", [0.5, 2.0, 1.0])
    for r in (floor, pipe, mine):
        bench._summarize(r, floor, pipe, cores=2)
    assert mine.ratio == 2.0 and mine.ratio_spread == 0.0 and mine.wall_vs_psql == 0.25
    assert floor.ratio == 1.0 and pipe.wall_vs_psql == 1.0
    assert mine.wall_s == 1.0 and mine.spread == 1.5


@pytest.mark.parametrize("value,tables", [("users", ("users",)), ("all", ("users", "wide", "plain")),
                                          ("users,orders,events", ("users", "orders", "events"))])
def test_shapes(value, tables):
    assert bench._parse_shape(value) == tables
