"""Training checkpoints that survive SIGKILL: ``tf.train.CheckpointManager`` + a small state file.

A checkpoint holds the step counter, every model variable (trainable and not, e.g. batch-norm
statistics), the optimizer (its iteration count drives the learning-rate schedule, Adam's
moments, the loss scale under mixed precision) and the EMA weights. The manager writes the
data files first and then replaces the ``checkpoint`` index atomically, so a process killed
mid-save leaves the previous checkpoint as the latest one.

``train_state.json`` (written after each save, atomically) records the step, the planned
total, ``steps_per_epoch`` (so a resumed run does not count the records again) and every step
a run resumed from; it is also what tests and people read to see progress.
"""

from __future__ import annotations

import logging

import tensorflow as tf

from yt8m import storage

log = logging.getLogger(__name__)

STATE_FILE = "train_state.json"


class CheckpointKeeper:
    """Save / restore ``trackables`` (name -> tf.Variable, list of variables or trackable) under ``directory``."""

    def __init__(self, directory: str, max_to_keep: int = 2, **trackables):
        self.directory = directory
        storage.gfile.makedirs(directory)
        self.checkpoint = tf.train.Checkpoint(**trackables)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=max_to_keep)

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def restore(self) -> str | None:
        """Restore the latest checkpoint (every saved object must match); its path, or None if there is none."""
        path = self.manager.latest_checkpoint
        if path:
            self.checkpoint.restore(path).assert_existing_objects_matched()
        return path

    def save(self, step: int) -> str:
        return self.manager.save(checkpoint_number=step)

    def read_state(self) -> dict:
        return read_state(self.directory)

    def write_state(self, state: dict) -> None:
        storage.write_json(storage.join(self.directory, STATE_FILE), state)


def read_state(directory: str) -> dict:
    path = storage.join(directory, STATE_FILE)
    return storage.read_json(path) if storage.gfile.exists(path) else {}


def latest_step(directory: str) -> int:
    """The step of the newest complete checkpoint in ``directory`` (0 if none)."""
    path = tf.train.latest_checkpoint(directory) if storage.gfile.exists(directory) else None
    return int(path.rsplit("-", 1)[1]) if path else 0
