import json

import numpy as np
import pytest

from yt8m import ensemble, planner, predictions

MB = 1_000_000


def _table(tmp_path, members: dict[str, np.ndarray], labels: list[list[int]]):
    ids = [f"v{i}" for i in range(len(labels))]
    paths = []
    for name, scores in members.items():
        paths.append(str(tmp_path / f"{name}.npz"))
        predictions.save_topk(paths[-1], ids, scores, 20)
    return ensemble.topk_table(paths, dict(zip(ids, labels))), list(members)


def _constructed(tmp_path, n=400, c=60, seed=0):
    """a and b each see half the classes well (complementary), c_ is a blurred copy of a (redundant)."""
    rng = np.random.default_rng(seed)
    labels = [sorted(rng.choice(c, 2, replace=False).tolist()) for _ in range(n)]
    truth = np.zeros((n, c), np.float32)
    for i, l in enumerate(labels):
        truth[i, l] = 1
    noise = lambda: rng.uniform(0, 1, (n, c)).astype(np.float32)  # noqa: E731
    half = np.arange(c) < c // 2
    a = np.where(half, 0.7 * truth + 0.3 * noise(), noise())
    b = np.where(~half, 0.7 * truth + 0.3 * noise(), noise())
    redundant = 0.9 * a + 0.1 * noise()
    return _table(tmp_path, {"a": a, "b": b, "c": redundant}, labels)


SIZES = {"a": {"none": 600 * MB, "float16": 300 * MB, "uint8": 150 * MB, "codebook": 150 * MB},
         "b": {"none": 500 * MB, "float16": 250 * MB, "uint8": 125 * MB, "codebook": 125 * MB},
         "c": {"none": 100 * MB, "float16": 50 * MB, "uint8": 25 * MB, "codebook": 25 * MB}}


def test_greedy_plan_picks_the_complementary_pair_and_steps_down_precision_to_fit(tmp_path):
    table, names = _constructed(tmp_path)
    gap = {s: table.subset([names.index(m) for m in s]).gap(np.full(len(s), 1 / len(s)))
           for s in (("a", "b"), ("a", "c"), ("b", "c"))}
    assert gap[("a", "b")] > max(gap[("a", "c")], gap[("b", "c")])  # the construction does what it says
    p = planner.plan(table, names, SIZES, budget_bytes=1000 * MB, combiner="average", preferred="none",
                     reserve_bytes=0)
    assert set(p.chosen.members[:2]) == {"a", "b"}
    assert p.chosen.size_bytes <= 1000 * MB
    # a + b at fp32 is 1,100 MB: the larger one (a) goes to float16 first, which fits
    chosen = dict(zip(p.chosen.members, p.chosen.precisions))
    assert chosen["a"] == "float16" and chosen["b"] == "none"


def test_plan_respects_the_budget_and_the_graph_reserve(tmp_path):
    table, names = _constructed(tmp_path)
    p = planner.plan(table, names, SIZES, budget_bytes=170 * MB, combiner="average", preferred="uint8",
                     reserve_bytes=10 * MB)
    assert p.chosen.size_bytes <= 160 * MB
    assert sum(SIZES[m][q] for m, q in zip(p.chosen.members, p.chosen.precisions)) == p.chosen.size_bytes
    assert all(c.size_bytes <= 160 * MB for c in p.candidates if c.fits)
    # by default 32 MiB of the budget is kept for the graph, a tenth of a smaller budget
    assert planner.plan(table, names, SIZES).reserve_bytes == 32 << 20
    small = planner.plan(table, names, SIZES, budget_bytes=200 * MB)
    assert small.reserve_bytes == 20 * MB and small.chosen.size_bytes <= 180 * MB
    with pytest.raises(ValueError, match="no member fits the size budget"):
        planner.plan(table, names, SIZES, budget_bytes=20 * MB, reserve_bytes=0)


def test_weighted_plan_is_at_least_the_average_plan_and_frontier_is_monotone(tmp_path):
    table, names = _constructed(tmp_path, seed=1)
    avg = planner.plan(table, names, SIZES, combiner="average")
    weighted = planner.plan(table, names, SIZES, combiner="weighted")
    assert weighted.chosen.oof_gap >= avg.chosen.oof_gap - 1e-12
    assert abs(sum(weighted.chosen.weights) - 1) < 1e-9 and min(weighted.chosen.weights) >= 0
    sizes = [c.size_bytes for c in weighted.frontier]
    gaps = [c.oof_gap for c in weighted.frontier]
    assert sizes == sorted(sizes) and all(x < y for x, y in zip(gaps, gaps[1:]))
    assert weighted.chosen.oof_gap == max(c.oof_gap for c in weighted.candidates if c.fits)


def test_write_plan_writes_json_and_a_png_frontier(tmp_path):
    table, names = _constructed(tmp_path)
    p = planner.plan(table, names, SIZES)
    planner.write_plan(p, str(tmp_path / "out"))
    body = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert body["chosen"]["members"] == p.chosen.members and body["search"] == "greedy forward selection"
    assert len(json.loads((tmp_path / "out" / "frontier.json").read_text())) == len(p.frontier)
    assert (tmp_path / "out" / "frontier.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _miscalibrated(tmp_path, n=600, c=30, k=5, seed=0):
    """a: honest; b: a with a little extra noise (redundant); m: honest, independent, but scoring the even
    classes 10x too low (a weighted sum cannot undo that, a stacker with the class id can)."""
    rng = np.random.default_rng(seed)
    labels = [sorted(rng.choice(c, size=rng.integers(1, 3), replace=False).tolist()) for _ in range(n)]
    truth = np.zeros((n, c), np.float32)
    for i, lab in enumerate(labels):
        truth[i, lab] = 1
    a = 1 / (1 + np.exp(-(3.0 * truth + rng.normal(0, 1.3, (n, c)) - 2.0)))
    b = 1 / (1 + np.exp(-(np.log(a / (1 - a)) + rng.normal(0, 0.5, (n, c)))))
    m = 1 / (1 + np.exp(-(3.0 * truth + rng.normal(0, 1.3, (n, c)) - 2.0)))
    m[:, ::2] *= 0.1
    ids = [f"v{i}" for i in range(n)]
    paths = []
    for name, scores in (("a", a), ("b", b), ("m", m)):
        paths.append(str(tmp_path / f"{name}.npz"))
        predictions.save_topk(paths[-1], ids, scores.astype(np.float32), k)
    return ensemble.topk_table(paths, dict(zip(ids, labels)), k=k), ["a", "b", "m"], dict(zip(ids, labels)), c


def test_a_stacking_plan_is_scored_with_stackers_not_the_weighted_proxy(tmp_path):
    table, names, labels, c = _miscalibrated(tmp_path)
    sizes = {n: {"none": 100 * MB, "float16": 50 * MB, "uint8": 25 * MB, "codebook": 25 * MB} for n in names}
    with pytest.raises(ValueError, match="only with a score function"):
        planner.plan(table, names, sizes, combiner="stacking")
    cache = ensemble.StackerCache(table, labels, c)
    score, scoring = ensemble.plan_scorer(cache)
    stacked = planner.plan(table, names, sizes, 1000 * MB, "stacking", "none", 0, score=score, scoring=scoring)
    weighted = planner.plan(table, names, sizes, 1000 * MB, "weighted", "none", 0)
    # every evaluated subset's GAP is its stacker's cross-fitted OOF GAP (fitted once per subset)
    for cand in stacked.candidates:
        fitted = cache.get([names.index(m) for m in cand.members], ensemble.PLAN_STACK_VIDEOS, cheap=True)
        assert cand.oof_gap == fitted.report["oof_gap"]
    assert len(cache.fitted) == 3 + 2 + 1  # greedy: 3 singles, 2 pairs, 1 triple
    # the stacker recalibrates m: a + m is its best; the weighted proxy keeps adding the redundant b and
    # ends well below what the served stacker reaches
    assert stacked.chosen.members == ["a", "m"] and weighted.chosen.members == ["a", "m", "b"]
    assert stacked.chosen.oof_gap > weighted.chosen.oof_gap + 0.02
    body = planner.write_plan(stacked, str(tmp_path / "out"))
    assert body["combiner"] == "stacking" and body["scoring"].startswith("stacking: a LightGBM stacker")
    assert planner.write_plan(weighted, str(tmp_path / "w"))["scoring"].startswith("weighted")
