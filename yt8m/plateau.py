"""Validation-driven training schedule: reduce the learning rate on a plateau and stop early (issue 14).

The 2018 2nd place team (twoleggedeye/youtube8m ``utils/training.py`` ``train_loop``) evaluated a validation
set after every epoch, took ``1 - GAP`` as the validation loss, stepped PyTorch's ``ReduceLROnPlateau``
(their configs: ``factor 0.5, patience 1``) on it, saved the best model and stopped after
``early_stopping_patience`` epochs without a better one. ``PlateauState.update`` is that bookkeeping, pure
Python so the trainer can keep it in its resumable state: PyTorch's rule in ``min`` mode with its default
relative threshold 1e-4 (an evaluation counts as better when ``loss < best * (1 - 1e-4)``; after more than
``patience`` evaluations that are not, the rate is multiplied by ``factor`` and the count restarts) and
the team's stop (``epoch - best_epoch > early_stopping_patience``).
"""

from __future__ import annotations

import dataclasses

THRESHOLD = 1e-4  # torch.optim.lr_scheduler.ReduceLROnPlateau's default (threshold_mode "rel")


@dataclasses.dataclass
class PlateauState:
    best_loss: float = float("inf")  # 1 - the best validation GAP@20 so far
    best_epoch: int = -1
    bad_evaluations: int = 0
    lr_scale: float = 1.0  # the factor the schedule's learning rate is multiplied by
    evaluations: int = 0
    improvements: int = 0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict | None) -> "PlateauState":
        return cls(**{k: v for k, v in (raw or {}).items() if k in {f.name for f in dataclasses.fields(cls)}})

    def update(self, gap: float, epoch: int, factor: float, patience: int, stop_patience: int) -> dict:
        """Record the validation GAP@20 of ``epoch``; returns ``{"improved", "reduced", "stop"}``.

        ``factor`` 0 turns the learning-rate reduction off; ``stop_patience`` 0 never stops."""
        loss = 1.0 - gap
        self.evaluations += 1
        improved = loss < self.best_loss * (1.0 - THRESHOLD) if self.best_loss != float("inf") else True
        reduced = False
        if improved:
            self.best_loss, self.best_epoch, self.bad_evaluations = loss, epoch, 0
            self.improvements += 1
        else:
            self.bad_evaluations += 1
            if factor and self.bad_evaluations > patience:
                self.lr_scale *= factor
                self.bad_evaluations = 0
                reduced = True
        stop = bool(stop_patience) and epoch - self.best_epoch > stop_patience
        return {"improved": improved, "reduced": reduced, "stop": stop}
