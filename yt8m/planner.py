"""Size-budget planner: which members, at which precision, maximize the out-of-fold GAP under a budget.

Inputs: the members' OOF predictions (``ensemble.TopKTable``), each member's tensor bytes at every
compression method (``compression.tensor_report`` of its weights: no export per combination) and a
budget (1 GB by default, the 2018 rule). Search: GREEDY FORWARD SELECTION, not exhaustive: start empty,
add the member whose addition gives the best OOF GAP of the combiner among the subsets that fit, stop
when no addition improves it. The combiner scored is the one SERVED: ``average`` or fitted weights
(``ensemble.combiner_weights``), or for ``stacking`` a ``score`` function from the caller
(``ensemble.plan_scorer``: a LightGBM stacker fitted per evaluated subset, its cross-fitted OOF GAP);
``plan.json`` says which (``scoring``). A subset
fits when its tensor bytes plus a reserve for the graph, signatures and transform_fn (``reserve_for``:
32 MiB, or a tenth of a smaller budget; measured ~0.6 MB for three small members; ``yt8m.ensemble``
plans again with the measured size when the export is over) are within the budget, each member at
the configured precision, or stepped down the precision ladder (``none -> float16 -> uint8``), the
largest member first, until it fits.

The OOF predictions are the fp32 fold models', so GAP does not depend on the precision: the planner
keeps the configured precision unless the budget forces a smaller one, and the ensemble measures the
served graph's holdout GAP before and after compression. Every evaluated subset is also sized at each
uniform precision of the ladder; those points make the frontier (best GAP at each size, ``frontier.json``
/ ``frontier.png``).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from yt8m import compression, storage

GRAPH_RESERVE_BYTES = 32 << 20


def reserve_for(budget_bytes: int) -> int:
    """Bytes of the budget kept for the graph itself: 32 MiB, or a tenth of a budget under 320 MiB."""
    return min(GRAPH_RESERVE_BYTES, int(budget_bytes) // 10)
SEARCH = "greedy forward selection"


@dataclasses.dataclass
class Candidate:
    members: list[str]
    precisions: list[str]
    weights: list[float]
    oof_gap: float
    size_bytes: int
    fits: bool


@dataclasses.dataclass
class Plan:
    chosen: Candidate
    candidates: list[Candidate]
    frontier: list[Candidate]
    budget_bytes: int
    reserve_bytes: int
    combiner: str
    search: str = SEARCH
    scoring: str = ""  # how a candidate's OOF GAP was measured (the combiner it was scored with)


def ladder(preferred: str) -> list[str]:
    """The precisions a member may take, from the configured one down to the smallest."""
    compression.check_method(preferred)
    if preferred in ("uint8", "codebook"):
        return [preferred]
    steps = ["none", "float16", "uint8"]
    return steps[steps.index(preferred):]


def fit_precisions(members: list[str], sizes: dict, preferred: str, limit: int) -> list[str] | None:
    """Per member a precision so the tensor bytes are <= ``limit`` (largest member stepped down first)."""
    steps = ladder(preferred)
    level = {m: 0 for m in members}
    while sum(sizes[m][steps[level[m]]] for m in members) > limit:
        movable = [m for m in members if level[m] + 1 < len(steps)]
        if not movable:
            return None
        biggest = max(movable, key=lambda m: (sizes[m][steps[level[m]]], -members.index(m)))
        level[biggest] += 1
    return [steps[level[m]] for m in members]


SCORING = {"average": "average: uniform weights, OOF GAP@20",
           "weighted": "weighted: non-negative weights fitted on the OOF GAP@20 (ensemble.fit_weights)"}


def plan(table, names: list[str], sizes: dict, budget_bytes: int = 1 << 30, combiner: str = "average",
         preferred: str = "uint8", reserve_bytes: int | None = None,
         score: Callable[[list[int]], tuple[np.ndarray, float]] | None = None, scoring: str = "") -> Plan:
    """The best subset under the budget (see the module doc). ``sizes``: name -> method -> tensor bytes.
    ``score(member indices) -> (weights, OOF GAP)`` scores a subset (default: ``ensemble.combiner_weights``
    of ``combiner``, which must then be a weighted average); ``scoring`` describes it in ``plan.json``."""
    from yt8m import ensemble  # the combiners live there; ensemble imports this module

    if len(names) != table.num_members:
        raise ValueError(f"{len(names)} names for {table.num_members} members")
    if score is None:
        if combiner not in ensemble.WEIGHTED_COMBINERS:
            raise ValueError(f"combiner {combiner!r}: the planner scores it only with a score function "
                             "(ensemble.plan_scorer)")
        scoring = scoring or SCORING[combiner]

        def score(subset):
            return ensemble.combiner_weights(table.subset(subset), combiner)
    reserve_bytes = reserve_for(budget_bytes) if reserve_bytes is None else int(reserve_bytes)
    limit = int(budget_bytes) - reserve_bytes
    candidates: list[Candidate] = []
    chosen: Candidate | None = None
    remaining = list(range(len(names)))
    selected: list[int] = []
    while remaining:
        best_step = None
        for i in remaining:
            subset = selected + [i]
            members = [names[j] for j in subset]
            weights, gap = score(subset)
            weights = np.asarray(weights, np.float64)
            precisions = fit_precisions(members, sizes, preferred, limit)
            for uniform in ladder("none"):
                size = sum(sizes[m][uniform] for m in members)
                candidates.append(Candidate(members, [uniform] * len(members), weights.tolist(), gap, size,
                                            size <= limit))
            if precisions is None:
                continue
            size = sum(sizes[m][p] for m, p in zip(members, precisions))
            step = Candidate(members, precisions, weights.tolist(), gap, size, True)
            candidates.append(step)
            if best_step is None or (gap, -size) > (best_step.oof_gap, -best_step.size_bytes):
                best_step = step
        if best_step is None or (chosen is not None and best_step.oof_gap <= chosen.oof_gap):
            break
        chosen = best_step
        selected = [names.index(m) for m in chosen.members]
        remaining = [i for i in remaining if i not in selected]
    if chosen is None:
        smallest = min(sizes[m][ladder(preferred)[-1]] for m in names)
        raise ValueError(f"no member fits the size budget: the smallest is {smallest:,} bytes of tensors, the "
                         f"budget leaves {limit:,} (size_budget_bytes {budget_bytes:,} - reserve {reserve_bytes:,})")
    return Plan(chosen, candidates, frontier(candidates), int(budget_bytes), int(reserve_bytes), combiner,
                scoring=scoring or combiner)


def frontier(candidates: list[Candidate]) -> list[Candidate]:
    """The candidates no other beats: each has a higher GAP than every smaller one (sorted by size)."""
    out: list[Candidate] = []
    for c in sorted(candidates, key=lambda c: (c.size_bytes, -c.oof_gap)):
        if not out or c.oof_gap > out[-1].oof_gap:
            out.append(c)
    return out


def write_plan(p: Plan, output_dir: str) -> dict:
    """``plan.json`` (chosen + every candidate), ``frontier.json`` and ``frontier.png`` into ``output_dir``."""
    storage.gfile.makedirs(output_dir)
    body = {"search": p.search, "combiner": p.combiner, "scoring": p.scoring, "budget_bytes": p.budget_bytes,
            "reserve_bytes": p.reserve_bytes, "chosen": dataclasses.asdict(p.chosen),
            "candidates": [dataclasses.asdict(c) for c in p.candidates]}
    storage.write_json(storage.join(output_dir, "plan.json"), body)
    storage.write_json(storage.join(output_dir, "frontier.json"), [dataclasses.asdict(c) for c in p.frontier])
    png = plot_frontier(p)
    with storage.gfile.GFile(storage.join(output_dir, "frontier.png"), "wb") as f:
        f.write(png)
    return body


def plot_frontier(p: Plan) -> bytes:
    """PNG bytes: every candidate (GAP vs MB of tensors), the frontier, the budget and the chosen plan."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=100)
    mb = np.asarray([c.size_bytes for c in p.candidates]) / 1e6
    ax.scatter(mb, [c.oof_gap for c in p.candidates], s=14, c="0.6", label="evaluated")
    ax.plot([c.size_bytes / 1e6 for c in p.frontier], [c.oof_gap for c in p.frontier], "-o", c="tab:blue",
            ms=4, label="frontier")
    ax.axvline((p.budget_bytes - p.reserve_bytes) / 1e6, c="tab:red", ls="--", label="budget - graph reserve")
    ax.scatter([p.chosen.size_bytes / 1e6], [p.chosen.oof_gap], s=80, marker="*", c="tab:orange", zorder=3,
               label="chosen: " + ", ".join(f"{m}@{q}" for m, q in zip(p.chosen.members, p.chosen.precisions)))
    ax.set_xlabel("tensor MB")
    ax.set_ylabel(f"OOF GAP@20 ({p.combiner} combiner)")
    ax.set_title(f"Ensemble size frontier ({p.search}; scored with {p.combiner})", fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()

