"""The validation slice and its schedule (issue 14): ReduceLROnPlateau and early stopping as the 2018 2nd place
ran them (yt8m/plateau.py), the slice in the readers, and the trainer keeping the best evaluation's weights."""

import json

import numpy as np
import pytest
import tensorflow as tf

from yt8m import config as config_lib
from yt8m import model_setup, plateau, readers, train_loop, writers

NUM_CLASSES = 6


def test_the_plateau_rule_is_pytorchs_reduce_lr_on_plateau_and_the_teams_early_stop():
    state = plateau.PlateauState()
    gaps = [0.50, 0.60, 0.60, 0.60, 0.70, 0.65, 0.64, 0.63, 0.62]
    events = [state.update(g, epoch, factor=0.5, patience=1, stop_patience=3) for epoch, g in enumerate(gaps)]
    assert [e["improved"] for e in events] == [True, True, False, False, True, False, False, False, False]
    # more than `patience` (1) evaluations that are not better: x0.5, and the count restarts
    assert [e["reduced"] for e in events] == [False, False, False, True, False, False, True, False, True]
    assert state.lr_scale == 0.125 and state.best_epoch == 4 and state.best_loss == pytest.approx(0.3)
    # stop once epoch - best_epoch > 3 (the team's `epoch_i - best_val_loss_epoch > early_stopping_patience`)
    assert [e["stop"] for e in events] == [False] * 8 + [True]
    # a relative threshold of 1e-4 on 1 - GAP: a gain of 1e-6 is not an improvement
    nearly = plateau.PlateauState()
    nearly.update(0.5, 0, 0.5, 1, 0)
    assert not nearly.update(0.500001, 1, 0.5, 1, 0)["improved"]
    # off switches: factor 0 never reduces, stop_patience 0 never stops
    off = plateau.PlateauState()
    assert not any(off.update(0.1, e, 0.0, 0, 0)["reduced"] or off.update(0.1, e, 0.0, 0, 0)["stop"]
                   for e in range(5))
    assert plateau.PlateauState.from_dict(json.loads(json.dumps(state.to_dict()))) == state


@pytest.mark.parametrize("fields, message", [
    ({"validation_every": -1}, "training.validation_every: must be >= 0"),
    ({"validation_every": 1}, "training.validation_every: 1 would hold out every record"),
    ({"validation_every": 10, "lr_plateau_factor": 1.0}, "training.lr_plateau_factor: must be in \\[0, 1\\)"),
    ({"lr_plateau_factor": 0.5}, "lr_plateau_factor and early_stopping_patience follow a validation slice"),
    ({"early_stopping_patience": 2}, "follow a validation slice; set validation_every"),
])
def test_the_schedule_fields_are_validated(fields, message):
    with pytest.raises(config_lib.ConfigError, match=message):
        config_lib.model_config_from_dict({"name": "m", "family": "moe", "training": fields})


def _records(path, videos: int, seed: int = 0) -> str:
    """Video-level records whose label is a linear function of the features: learnable, so the GAP moves."""
    rng = np.random.default_rng(seed)
    directions = rng.normal(0, 1, (NUM_CLASSES, 1024))
    examples = []
    for i in range(videos):
        label = i % NUM_CLASSES
        rgb = 0.2 * directions[label] + rng.normal(0, 1, 1024)  # partly separable: the GAP moves
        examples.append(writers.video_level_example(f"v{i}", [label], rgb, rng.normal(0, 1, 128)).SerializeToString())
    writers.write_tfrecords(str(path), examples)
    return str(path)


def test_the_validation_slice_and_the_training_stream_split_the_records(tmp_path):
    data = _records(tmp_path / "a.tfrecord", 200)
    t = config_lib.model_config_from_dict({"name": "m", "family": "moe", "training": {
        "validation_every": 5, "batch_size": 1, "eval_batch_size": 7}}).training
    validation = [v.decode() for f, _ in readers.evaluation_batches([data], "video", "video", NUM_CLASSES, t,
                                                                    validation=True) for v in f["video_id"].numpy()]
    everything = [v.decode() for f, _ in readers.evaluation_batches([data], "video", "video", NUM_CLASSES, t)
                  for v in f["video_id"].numpy()]
    training = [v.decode() for f, _ in readers.training_batches([data], "video", "video", NUM_CLASSES, t, batches=400,
                                                                include_ids=True) for v in f["video_id"].numpy()]
    assert len(everything) == 200 and 20 <= len(validation) <= 65  # ~1 in 5, by a hash of each record
    assert set(training) == set(everything) - set(validation)  # disjoint, and nothing lost
    again = [v.decode() for f, _ in readers.evaluation_batches([data], "video", "video", NUM_CLASSES, t,
                                                               validation=True) for v in f["video_id"].numpy()]
    assert again == validation
    serialized = list(tf.data.TFRecordDataset(data).as_numpy_iterator())
    in_slice = {writers_id for writers_id, r in zip(everything, serialized)
                if bool(readers.in_validation_slice(tf.constant(r), 5))}
    assert in_slice == set(validation)


def _trainer(tmp_path, **fields):
    cfg = config_lib.model_config_from_dict({"name": "m", "family": "logistic", "training": {
        "batch_size": 16, "epochs": 8, "learning_rate": 0.05, "validation_every": 4, **fields}})
    return train_loop.Trainer(cfg, NUM_CLASSES, str(tmp_path / "ck"))


def test_the_trainer_keeps_the_best_evaluations_weights_and_a_rerun_trains_no_further(tmp_path):
    data = _records(tmp_path / "a.tfrecord", 240)
    trainer = _trainer(tmp_path, early_stopping_patience=1, lr_plateau_factor=0.5, lr_plateau_patience=0,
                       learning_rate=3.0)  # far too high: the validation GAP does not keep improving
    summary = trainer.fit([data])
    assert summary["validation_evaluations"] == trainer.plateau.evaluations >= 1
    assert summary["stopped_early"] == (summary["steps"] < summary["total_steps"])
    # the result is the best evaluation's weights: scoring them again gives the best GAP
    assert trainer.validation_gap([data], "video") == pytest.approx(summary["validation_best_gap"], abs=1e-6)
    state = json.loads((tmp_path / "ck" / "train_state.json").read_text())
    assert state["plateau"]["lr_scale"] == trainer.plateau.lr_scale == float(trainer.lr_scale.numpy())
    assert (tmp_path / "ck" / train_loop.BEST_WEIGHTS).exists()
    # a rerun with the same output resumes: no further training, the same schedule state and best weights
    again = _trainer(tmp_path, early_stopping_patience=1, lr_plateau_factor=0.5, lr_plateau_patience=0,
                     learning_rate=3.0)
    resumed = again.fit([data])
    assert resumed["trained_steps"] == 0 and resumed["steps"] == summary["steps"]
    assert again.plateau == trainer.plateau
    for a, b in zip(again.model.get_weights(), trainer.model.get_weights()):
        np.testing.assert_array_equal(a, b)


FROZEN = 1e-12  # a learning rate below float32's resolution for these weights: no update changes a weight


def test_without_a_better_evaluation_training_stops_after_the_patience(tmp_path):
    data = _records(tmp_path / "a.tfrecord", 240)
    trainer = _trainer(tmp_path, early_stopping_patience=1, learning_rate=FROZEN)
    summary = trainer.fit([data])  # the same GAP every epoch: stop once epoch - best epoch (0) > 1
    assert summary["stopped_early"] and summary["validation_evaluations"] == 3
    assert summary["steps"] == 3 * summary["steps_per_epoch"] < summary["total_steps"]


def test_a_plateau_lowers_the_learning_rate_the_optimizer_uses(tmp_path):
    t = config_lib.TrainingConfig(learning_rate=0.01, lr_decay=0.5, lr_decay_examples=160, batch_size=16)
    scale = tf.Variable(1.0)
    optimizer = model_setup.adam(t, scale)
    schedule = optimizer._learning_rate
    assert float(schedule(tf.constant(10))) == pytest.approx(0.005)  # WILLOW's decay: 0.5 every 10 steps
    scale.assign(0.25)
    assert float(schedule(tf.constant(10))) == pytest.approx(0.00125)
    data = _records(tmp_path / "b.tfrecord", 240)
    for name, rate in (("learning", 0.05), ("frozen", FROZEN)):
        trainer = _trainer(tmp_path / name, lr_plateau_factor=0.5, lr_plateau_patience=0, epochs=6, learning_rate=rate)
        summary = trainer.fit([data])
        assert summary["validation_evaluations"] == 6 and not summary["stopped_early"]
        # patience 0: every evaluation that is not better halves the rate the optimizer uses
        p = trainer.plateau
        assert summary["lr_scale"] == float(trainer.lr_scale.numpy()) == 0.5 ** (p.evaluations - p.improvements)
        if name == "learning":
            assert summary["validation_best_gap"] > 0.9 and p.improvements >= 2
        else:  # never better after the first evaluation: halved after each of the other five
            assert p.improvements == 1 and summary["lr_scale"] == 0.5 ** 5


def test_the_cosine_schedule_decays_to_zero_over_the_planned_run(tmp_path):
    total = tf.Variable(0, dtype=tf.int64)
    t = config_lib.TrainingConfig(learning_rate=0.01, lr_schedule="cosine")
    schedule = model_setup.adam(t, total_steps=total)._learning_rate
    total.assign(100)
    rates = [float(schedule(tf.constant(s))) for s in (0, 50, 100, 150)]
    assert rates == pytest.approx([0.01, 0.005, 0.0, 0.0], abs=1e-9)
    with pytest.raises(config_lib.ConfigError, match="training.lr_schedule: must be one of staircase, cosine"):
        config_lib.model_config_from_dict({"name": "m", "family": "moe", "training": {"lr_schedule": "linear"}})
    # the trainer plans the run (examples_to_see / batch_size steps) and trains to a learning rate of 0
    data = _records(tmp_path / "a.tfrecord", 240)
    trainer = _trainer(tmp_path, validation_every=0, lr_schedule="cosine", examples_to_see=480)
    summary = trainer.fit([data])
    assert summary["steps"] == summary["total_steps"] == 30 == int(trainer.total_steps.numpy())
    optimizer = trainer.optimizer
    assert int(optimizer.iterations.numpy()) == 30 and float(optimizer.learning_rate) == pytest.approx(0.0, abs=1e-9)
