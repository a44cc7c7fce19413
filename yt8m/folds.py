"""Deterministic split assignment: every video id lands in the same split everywhere.

A video goes to ``"holdout"`` or to one of ``"fold-0" .. "fold-<folds-1>"`` by a STABLE
hash of its id (never Python's ``hash()``, which is salted per process): the same id gets
the same split whatever the sharding of the input files, the runner, the worker or the
process. The hash is the first 8 bytes (big-endian) of ``md5(utf-8 id)``, read as a
uniform number ``u`` in [0, 1):

* ``u < holdout_fraction``                    -> ``"holdout"``
* otherwise ``k = floor((u - h) / (1 - h) * folds)`` -> ``"fold-<k>"``

so the holdout takes ``holdout_fraction`` of the videos and the folds share the rest
equally. The same rule is easy to reproduce elsewhere (e.g. BigQuery ``MD5``).
"""

from __future__ import annotations

import hashlib

HOLDOUT = "holdout"
FOLD_PREFIX = "fold-"
HASH_DESCRIPTION = "md5(utf-8 video id), first 8 bytes big-endian / 2**64"

_TWO_64 = float(2**64)


def _check(folds: int, holdout_fraction: float) -> None:
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise ValueError(f"folds must be an integer >= 1, got {folds!r}")
    if not 0.0 <= float(holdout_fraction) < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction!r}")


def stable_unit_hash(video_id: str | bytes) -> float:
    """A uniform number in [0, 1) from the video id, identical on every machine and run."""
    data = video_id.encode("utf-8") if isinstance(video_id, str) else bytes(video_id)
    digest = hashlib.md5(data, usedforsecurity=False).digest()
    return int.from_bytes(digest[:8], "big") / _TWO_64


def assign_split(video_id: str | bytes, folds: int, holdout_fraction: float) -> str:
    """``"holdout"`` or ``"fold-<k>"`` (0 <= k < folds) for this video id; deterministic."""
    _check(folds, holdout_fraction)
    u = stable_unit_hash(video_id)
    h = float(holdout_fraction)
    if u < h:
        return HOLDOUT
    k = int((u - h) / (1.0 - h) * folds)
    return f"{FOLD_PREFIX}{min(k, folds - 1)}"


def split_names(folds: int, holdout_fraction: float) -> list[str]:
    """All splits ``assign_split`` can return: ``fold-0 .. fold-<folds-1>`` then ``holdout`` (if > 0)."""
    _check(folds, holdout_fraction)
    names = [f"{FOLD_PREFIX}{k}" for k in range(folds)]
    if holdout_fraction > 0:
        names.append(HOLDOUT)
    return names


def fold_index(split: str) -> int | None:
    """``k`` for ``"fold-<k>"``, ``None`` for the holdout."""
    if split == HOLDOUT:
        return None
    if not split.startswith(FOLD_PREFIX):
        raise ValueError(f"not a split name: {split!r}")
    return int(split[len(FOLD_PREFIX):])
