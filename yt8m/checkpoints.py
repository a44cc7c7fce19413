"""Training checkpoints that survive SIGKILL: ``tf.train.CheckpointManager`` + a small state file.

A checkpoint holds the step counter, every model variable (trainable and not, e.g. batch-norm
statistics), the optimizer (its iteration count drives the learning-rate schedule, Adam's
moments, the loss scale under mixed precision) and the EMA weights. The manager writes the
data files first and then replaces the ``checkpoint`` index atomically, so a process killed
mid-save leaves the previous checkpoint as the latest one.

``train_state.json`` (written after each save, atomically) records the step, the planned
total, ``steps_per_epoch`` (so a resumed run does not count the records again) and every step
a run resumed from; it is also what tests and people read to see progress.

A checkpoint is only resumed by the run it belongs to: ``run_signature`` (the data files, the number
of classes, the model config but for the fields a run may change and still continue) is stored in
the state file and ``check_resumable`` refuses another run's checkpoints (``ResumeMismatchError``).
"""

from __future__ import annotations

import json
import logging
import zlib

import tensorflow as tf

from yt8m import config as config_lib
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


def files_signature(files: list[str], batch_size: int) -> str:
    """The file list and batch size a state file's ``records`` count belongs to (not counted again on resume)."""
    return f"{zlib.crc32(chr(10).join(files).encode()):08x}-{len(files)}-{batch_size}"


class ResumeMismatchError(ValueError):
    """Checkpoints in the output directory belong to another run (other data, classes or model)."""


# Fields a user may change and still resume: more epochs or examples continue the run, the checkpoint cadence
# is bookkeeping.
_RESUMABLE_CHANGES = ("epochs", "examples_to_see", "examples_per_class", "checkpoint_every_steps")


def run_signature(files: list[str], num_classes: int, model_config: config_lib.ModelConfig) -> dict:
    """What a checkpoint was trained on: the data files (names; sizes too for local files, a stat per
    file being too slow on gs://), the number of classes and the model config (all but the training
    length and the checkpoint cadence). Resuming on anything else would continue another run's model."""
    listing = []
    for path in files:
        size = "" if path.startswith("gs://") else str(storage.gfile.stat(path).length)
        listing.append(f"{path}\t{size}")
    model = config_lib.to_dict(model_config)
    model["training"] = {k: v for k, v in model["training"].items() if k not in _RESUMABLE_CHANGES}
    return {"data": f"{zlib.crc32(chr(10).join(listing).encode()):08x}-{len(files)}",
            "num_classes": int(num_classes),
            "model": f"{zlib.crc32(json.dumps(model, sort_keys=True).encode()):08x}"}


def check_resumable(state: dict, signature: dict, checkpoint_dir: str) -> None:
    """Refuse to resume checkpoints whose run signature differs from this run's."""
    saved = state.get("run_signature")
    if not saved or saved == signature:
        return
    names = {"data": "data files", "num_classes": "num_classes", "model": "model config"}
    changed = [names.get(k, k) for k in sorted(set(saved) | set(signature)) if saved.get(k) != signature.get(k)]
    detail = (f" ({saved.get('num_classes')} -> {signature['num_classes']})"
              if saved.get("num_classes") != signature["num_classes"] else "")
    raise ResumeMismatchError(
        f"{checkpoint_dir} holds checkpoints of another run (different {', '.join(changed)}{detail}); "
        "pass --restart to discard them, or choose another output directory")
