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
