"""The trainer: config fields, EMA, distillation, the input pipeline, train_member's files, `yt8m train`/`models`."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
import yaml

from tests.helpers import random_video, write_videos
from yt8m import config as config_lib
from yt8m import dataset, distill, export, kfold, metrics, model_setup, predictions, readers, train_loop, training
from yt8m import writers
from yt8m.models import registry
from yt8m_pipeline import cli

NUM_CLASSES = 12


def _cfg(family="moe", **training_fields):
    return config_lib.model_config_from_dict({"name": f"t-{family}", "family": family, "preset": "small",
                                              "training": training_fields})


# ----------------------------------------------------------------------------------------- config


@pytest.mark.parametrize("family, fields, message", [
    ("moe", {"checkpoint_every_steps": 0}, "training.checkpoint_every_steps: must be >= 1"),
    ("moe", {"steps_per_epoch": -1}, "training.steps_per_epoch: must be >= 0"),
    ("moe", {"mixup_prob": 1.5}, "training.mixup_prob: must be in [0, 1]"),
    ("moe", {"mixup_alpha": 0}, "training.mixup_alpha: must be > 0"),
    ("moe", {"ema_halflife": 0.5}, "training.ema_halflife: must be 0 (off) or >= 1"),
    ("moe", {"ema_start_step": -3}, "training.ema_start_step: must be >= 0"),
    ("moe", {"distill_weight": -0.1}, "training.distill_weight: must be in [0, 1]"),
    ("moe", {"mixed_precision": "fp16"}, "training.mixed_precision: must be 'auto' or 'off'"),
    ("moe", {"teacher_predictions": 3}, "training.teacher_predictions: expected str"),
    ("moe", {"half_video_prob": 0.5}, "training.half_video_prob: a frame-level recipe, but family 'moe'"),
    ("logistic", {"num_samples": 30}, "training.num_samples: a frame-level recipe"),
    ("dbof", {"reverse_prob": 2.0}, "training.reverse_prob: must be in [0, 1]"),
    ("dbof", {"mixup_prob": 0.5}, "training.mixup_prob: mixup is for video-level inputs, but family 'dbof'"),
    ("dbof", {"ema_half_life": 10}, "unknown field(s) ema_half_life"),
    ("moe", {"examples_to_see": -5}, "training.examples_to_see: must be >= 0, got -5"),
    ("moe", {"examples_to_see": "many"}, "training.examples_to_see: expected int"),
    ("moe", {"video_features": "zscore"}, "training.video_features: must be 'mean' or 'standardized', got 'zscore'"),
    ("dbof", {"video_features": "standardized"}, "training.video_features: a video-level input, but family 'dbof'"),
    ("moe", {"clip_gradient_norm": -1.0}, "training.clip_gradient_norm: must be >= 0 (0 = no clipping)"),
])
def test_new_training_fields_are_validated_with_the_field_named(family, fields, message):
    with pytest.raises(config_lib.ConfigError) as info:
        config_lib.model_config_from_dict({"name": "m", "family": family, "training": fields}, where="m.yaml")
    assert message in str(info.value) and str(info.value).startswith("m.yaml")


def test_new_fields_round_trip_and_defaults_are_off():
    default = _cfg().training
    assert (default.half_video_prob, default.reverse_prob, default.mixup_prob, default.ema_halflife,
            default.teacher_predictions) == (0, 0, 0, 0, "")
    assert default.mixup_alpha == 0.4 and default.distill_weight == 0.5 and default.mixed_precision == "auto"
    cfg = _cfg("netvlad", half_video_prob=0.3, reverse_prob=0.5, ema_halflife=2000, ema_start_step=100,
               teacher_predictions="oof.npz", distill_weight=0.7, steps_per_epoch=50, checkpoint_every_steps=25,
               mixed_precision="off", num_samples=300)
    again = config_lib.model_config_from_dict(yaml.safe_load(config_lib.dump_yaml(cfg)))
    assert again == cfg
    assert _cfg("resnet_like", mixup_prob=1.0, mixup_alpha="3e-1").training.mixup_alpha == 0.3


# ----------------------------------------------------------------------------------------- EMA


def _batch(level, rng, batch=8, frames=12):
    labels = (rng.random((batch, NUM_CLASSES)) < 0.2).astype(np.float32)
    if level == "video":
        feats = {"mean_rgb": rng.normal(0, 0.5, (batch, 1024)).astype(np.float32),
                 "mean_audio": rng.normal(0, 0.5, (batch, 128)).astype(np.float32)}
    else:
        feats = {"rgb": rng.normal(0, 0.5, (batch, frames, 1024)).astype(np.float32),
                 "audio": rng.normal(0, 0.5, (batch, frames, 128)).astype(np.float32),
                 "num_frames": rng.integers(1, frames + 1, batch).astype(np.int32)}
    return {k: tf.constant(v) for k, v in feats.items()}, {"labels": tf.constant(labels)}


def _serialized_videos(rng, count=5, max_len=20):
    videos = [random_video(rng, f"s{i}", int(rng.integers(1, max_len)), NUM_CLASSES) for i in range(count)]
    return [writers.frame_level_example(*v).SerializeToString() for v in videos]


def _in_memory(model, level, serialized, max_frames):
    _, rgb, audio, num_frames, _ = readers.decode_frame_batch(tf.constant(serialized), max_frames)
    inputs = ({"rgb": rgb, "audio": audio, "num_frames": num_frames} if level == "frame"
              else readers.frame_means(rgb, audio, num_frames))
    return model(inputs, training=False).numpy()


@pytest.mark.parametrize("family", ["moe", "dbof"])
def test_ema_follows_its_recurrence_and_is_what_is_evaluated_and_served(tmp_path, family):
    halflife, start, steps = 3.0, 2, 6
    cfg = _cfg(family, ema_halflife=halflife, ema_start_step=start, learning_rate=0.05)
    trainer = train_loop.Trainer(cfg, NUM_CLASSES)
    level = trainer.family.input_level
    rng = np.random.default_rng(0)
    expected = trainer.raw_weights()
    decay = 1 - 1 / halflife
    for step in range(1, steps + 1):
        trainer.train_on_batch(*_batch(level, rng))
        d = decay if step > start else 0.0
        expected = [d * e + (1 - d) * w for e, w in zip(expected, trainer.raw_weights())]
    ema, raw = trainer.ema_weights(), trainer.raw_weights()
    for e, x in zip(ema, expected):
        np.testing.assert_allclose(e, x, rtol=1e-5, atol=1e-6)
    assert max(np.abs(e - r).max() for e, r in zip(ema, raw)) > 1e-4, "EMA weights should differ from raw ones"

    model = trainer.inference_model()
    assert model is not trainer.model
    for e, v in zip(ema, model.trainable_variables):
        np.testing.assert_array_equal(e, np.asarray(v))
    for a, b in zip(trainer.model.non_trainable_variables, model.non_trainable_variables):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    out = str(tmp_path / "served")
    export.export_serving_model([export.Member(cfg.name, model, level, config_lib.to_dict(cfg))], out,
                                max_frames=24)
    serialized = _serialized_videos(rng)
    served = tf.saved_model.load(out).signatures["serving_default"](serialized=tf.constant(serialized))["scores"]
    np.testing.assert_allclose(served.numpy(), _in_memory(model, level, serialized, 24), atol=1e-5)
    raw_scores = _in_memory(trainer.model, level, serialized, 24)
    assert np.abs(served.numpy() - raw_scores).max() > 1e-5, "the served model must be the EMA one"


def test_without_ema_the_trained_model_is_the_inference_model():
    trainer = train_loop.Trainer(_cfg("logistic"), NUM_CLASSES)
    assert trainer.inference_model() is trainer.model and trainer.ema == []


# ----------------------------------------------------------------------------------------- distillation


def _bce(t, p):  # WILLOW losses.py CrossEntropyLoss: epsilon 10e-6, summed over classes (tests/test_loss_parity.py)
    return -np.sum(t * np.log(p + 1e-5) + (1 - t) * np.log(1 - p + 1e-5), axis=-1)


def test_distillation_loss_equals_the_formula_on_a_hand_case():
    labels = np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], np.float32)
    teacher = np.array([[0.8, 0.1, 0.4], [0.3, 0.6, 0.05]], np.float32)
    probs = np.array([[0.7, 0.2, 0.5], [0.4, 0.9, 0.1]], np.float32)
    for w in (0.0, 0.5, 0.8, 1.0):
        got = distill.distillation_loss(labels, teacher, probs, w).numpy()
        np.testing.assert_allclose(got, w * _bce(teacher, probs) + (1 - w) * _bce(labels, probs), rtol=1e-5)
    # hand value for the first video at w = 0.5
    first = 0.5 * -(0.8 * np.log(0.7) + 0.2 * np.log(0.3) + 0.1 * np.log(0.2) + 0.9 * np.log(0.8)
                    + 0.4 * np.log(0.5) + 0.6 * np.log(0.5)) \
        + 0.5 * -(np.log(0.7) + np.log(0.8) + np.log(0.5))
    np.testing.assert_allclose(distill.distillation_loss(labels, teacher, probs, 0.5).numpy()[0], first, rtol=1e-4)
    trainer = train_loop.Trainer(_cfg("logistic", distill_weight=0.8), 3)
    np.testing.assert_allclose(trainer.per_example_loss({"labels": labels, "teacher": teacher}, probs).numpy(),
                               0.8 * _bce(teacher, probs) + 0.2 * _bce(labels, probs), rtol=1e-5)
    np.testing.assert_allclose(trainer.per_example_loss({"labels": labels}, probs).numpy(), _bce(labels, probs),
                               rtol=1e-5)


def _teacher_file(path, ids, num_classes, seed=0, k=4):
    scores = np.random.default_rng(seed).random((len(ids), num_classes)).astype(np.float32)
    predictions.save_topk(path, ids, scores, k)
    data = predictions.load_topk(path)
    return dict(zip(ids, predictions.densify_topk(data["classes"], data["scores"], num_classes)))


def test_teacher_lookup_by_video_id(tmp_path):
    path = str(tmp_path / "teacher.npz")
    dense = _teacher_file(path, ["a", "b", "c"], 6)
    table = distill.TeacherTable(path, 6)
    got, found = table.dense(tf.constant(["c", "zz", "a", "b"]))
    np.testing.assert_array_equal(found.numpy(), [True, False, True, True])
    np.testing.assert_allclose(got.numpy(), np.stack([dense["c"], np.zeros(6), dense["a"], dense["b"]]))
    labels = tf.constant(np.eye(4, 6, dtype=np.float32))
    targets = table.targets(tf.constant(["c", "zz", "a", "b"]), labels).numpy()
    np.testing.assert_allclose(targets[1], np.eye(4, 6)[1])
    np.testing.assert_allclose(targets[0], dense["c"])
    with pytest.raises(ValueError, match="have 6 classes, the model 7"):
        distill.TeacherTable(path, 7)
    with pytest.raises(FileNotFoundError, match="teacher predictions"):
        distill.TeacherTable(str(tmp_path / "none.npz"), 6)
    assert distill.resolve_teacher_path("teacher.npz", str(tmp_path)) == path


def test_training_batches_carry_teacher_scores_by_id_and_valid_frames(tmp_path):
    rng = np.random.default_rng(1)
    videos = [random_video(rng, f"v{i}", int(rng.integers(3, 15)), NUM_CLASSES) for i in range(24)]
    data = str(tmp_path / "data" / "train.tfrecord")
    write_videos(data, videos)
    known = [v[0] for v in videos[::2]]
    dense = _teacher_file(str(tmp_path / "data" / "teacher.npz"), known, NUM_CLASSES)
    labels_of = {v[0]: v[1] for v in videos}
    length_of = {v[0]: v[2].shape[0] for v in videos}
    cfg = _cfg("dbof", teacher_predictions="teacher.npz", batch_size=24, max_frames=16, half_video_prob=1.0,
               reverse_prob=0.5)
    teacher = training.load_teacher(cfg.training, str(tmp_path / "data"), NUM_CLASSES)
    ds = readers.training_batches([data], "frame", "frame", NUM_CLASSES, cfg.training, batches=1, teacher=teacher,
                                   records=24, include_ids=True)
    (features, targets), = list(ds)
    assert features["rgb"].shape == (24, 16, 1024)
    for row, vid in enumerate(v.decode() for v in features["video_id"].numpy()):
        hard = np.zeros(NUM_CLASSES, np.float32)
        hard[labels_of[vid]] = 1
        np.testing.assert_array_equal(targets["labels"][row], hard)
        np.testing.assert_allclose(targets["teacher"][row], dense[vid] if vid in dense else hard)
        n, full = int(features["num_frames"][row]), length_of[vid]
        assert n in ((full + 1) // 2, full - full // 2)  # always a half
        frames = features["rgb"][row].numpy()
        assert (np.abs(frames[:n]).sum(axis=1) > 0).all() and (frames[n:] == 0).all()


def test_video_family_on_frame_data_is_mean_pooled_and_mixup_keeps_targets_consistent(tmp_path):
    rng = np.random.default_rng(2)
    videos = [random_video(rng, f"v{i}", int(rng.integers(2, 9)), NUM_CLASSES) for i in range(16)]
    data = str(tmp_path / "train.tfrecord")
    write_videos(data, videos)
    assert readers.detect_format([data]) == "frame"
    cfg = _cfg("moe", batch_size=16)
    (features, targets), = list(readers.training_batches([data], "frame", "video", NUM_CLASSES, cfg.training, batches=1,
                                                          records=16, include_ids=True))
    ids = [v.decode() for v in features["video_id"].numpy()]
    _, rgb, audio, n, _ = readers.decode_frame_batch(tf.constant(
        [writers.frame_level_example(*videos[int(i[1:])]).SerializeToString() for i in ids]))
    expected = readers.frame_means(rgb, audio, n)
    for key in ("mean_rgb", "mean_audio"):  # per record, unpadded: the serving rule's bits
        np.testing.assert_array_equal(features[key], expected[key])
    mixed_cfg = _cfg("moe", batch_size=16, mixup_prob=1.0)
    (features, targets), = list(readers.training_batches([data], "frame", "video", NUM_CLASSES, mixed_cfg.training,
                                                          batches=1, records=16))
    sums = targets["labels"].numpy().sum(axis=1)
    assert ((sums % 1) > 1e-3).any(), "mixup should produce soft labels"


# ----------------------------------------------------------------------------------------- train_member


def _write_layout(root, rng, folds=2, per_split=12, frames=6):
    """The preprocessing job's layout in miniature, with its dataset.json (the only way consumers find files)."""
    splits = {}
    for split in [f"fold-{k}" for k in range(folds)] + ["holdout"]:
        videos = [random_video(rng, f"{split}-{i}", frames, NUM_CLASSES) for i in range(per_split)]
        write_videos(os.path.join(root, "frame", split, "part-00000-of-00001.tfrecord"), videos)
        records = []
        for vid, labels, rgb, audio in videos:
            mean_rgb, mean_audio = (readers.decode_frame_batch(tf.constant([writers.frame_level_example(
                vid, labels, rgb, audio).SerializeToString()]))[k] for k in (1, 2))
            records.append(writers.video_level_example(vid, labels, mean_rgb.numpy()[0, :frames].mean(0),
                                                       mean_audio.numpy()[0, :frames].mean(0)).SerializeToString())
        writers.write_tfrecords(os.path.join(root, "video", split, "part-00000-of-00001.tfrecord"), records)
        splits[split] = {"num_videos": per_split,
                         "frame_files": [f"frame/{split}/part-00000-of-00001.tfrecord"],
                         "video_files": [f"video/{split}/part-00000-of-00001.tfrecord"]}
    with open(os.path.join(root, "dataset.json"), "w") as f:
        json.dump({"num_classes": NUM_CLASSES, "folds": folds, "holdout_fraction": 0.2, "splits": splits}, f)


def test_train_member_writes_the_member_files_and_cleans_its_checkpoints(tmp_path):
    root = str(tmp_path / "dataset")
    _write_layout(root, np.random.default_rng(3))
    out = str(tmp_path / "member")
    cfg = _cfg("moe", epochs=2, batch_size=8, ema_halflife=2, checkpoint_every_steps=2)
    result = kfold.train_member(cfg, root, out, NUM_CLASSES, folds=2)
    for name in ("oof_predictions.npz", "holdout_predictions.npz", "model.weights.h5", "model_config.yaml",
                 "metrics.json", "saved_model/saved_model.pb"):
        assert os.path.exists(os.path.join(out, name)), name
    assert not os.path.exists(os.path.join(out, "checkpoints"))
    assert os.listdir(os.path.join(out, "tensorboard")) and os.listdir(os.path.join(out, "tensorboard", "final"))
    saved = json.load(open(os.path.join(out, "metrics.json")))
    for key in ("name", "family", "preset", "input_level", "parameters", "saved_model_bytes", "oof", "holdout"):
        assert key in saved
    assert result["training"]["steps"] == result["training"]["total_steps"] == 2 * 3  # 24 videos / 8
    assert len(predictions.load_topk(os.path.join(out, "oof_predictions.npz"))["video_ids"]) == 24
    member = export.member_from_weights(cfg.name, config_lib.to_dict(cfg), os.path.join(out, "model.weights.h5"),
                                        NUM_CLASSES)
    serialized = _serialized_videos(np.random.default_rng(4))
    served = export.load_serving_model(os.path.join(out, "saved_model"))(serialized=tf.constant(serialized))
    np.testing.assert_allclose(served["scores"].numpy(), _in_memory(member.model, "video", serialized, 300),
                               atol=1e-5)


def test_fold_tasks_collected_then_final_member_is_the_member_the_pipeline_publishes(tmp_path):
    """The pipeline's split of train_member: one task per fold, one collection, one final task per config."""
    root = str(tmp_path / "dataset")
    _write_layout(root, np.random.default_rng(5))
    cfg = _cfg("moe", epochs=1, batch_size=8)
    fold_dirs = []
    for k in (1, 0):  # any order: tasks finish when they finish
        fold_dirs.append(str(tmp_path / f"fold-task-{k}"))
        info = kfold.train_fold(cfg, root, fold_dirs[-1], NUM_CLASSES, folds=2, fold=k)
        assert info["name"] == cfg.name and info["fold"] == k and info["held_out"] == f"fold-{k}"
        oof = predictions.load_topk(os.path.join(fold_dirs[-1], kfold.OOF_FILE))
        assert sorted(oof["video_ids"]) == sorted(f"fold-{k}-{i}" for i in range(12))  # only its held-out fold
        assert not os.path.exists(os.path.join(fold_dirs[-1], "checkpoints"))
    collected = str(tmp_path / "collected")
    assert kfold.collect_folds(fold_dirs, collected) == {cfg.name: [0, 1]}
    member_folds = kfold.member_fold_dirs(collected, cfg.name)
    assert member_folds == [kfold.collected_fold_dir(collected, cfg.name, k) for k in (0, 1)]
    out = str(tmp_path / "member")
    result = kfold.train_final(cfg, root, out, NUM_CLASSES, folds=2, fold_dirs=member_folds)
    for name in ("oof_predictions.npz", "holdout_predictions.npz", "model.weights.h5", "model_config.yaml",
                 "metrics.json", "saved_model/saved_model.pb"):
        assert os.path.exists(os.path.join(out, name)), name
    assert not os.path.exists(os.path.join(out, "checkpoints"))
    oof = predictions.load_topk(os.path.join(out, "oof_predictions.npz"))
    assert oof["video_ids"] == [f"fold-{k}-{i}" for k in (0, 1) for i in range(12)]  # fold order
    assert [m["fold"] for m in result["oof_folds"]] == [0, 1]
    # The pooled OOF metric is the one the ensembler computes from the same top-k file.
    labels = readers.read_id_labels(training.split_files(root, "video", ["fold-0", "fold-1"]))
    dense = predictions.densify_topk(oof["classes"], oof["scores"], NUM_CLASSES)
    expected = training.evaluate(dense, metrics.dense_labels([labels[v] for v in oof["video_ids"]], NUM_CLASSES))
    assert result["oof"]["gap"] == pytest.approx(expected["gap"], abs=1e-9)


def test_final_member_refuses_missing_duplicate_or_foreign_folds_before_training(tmp_path):
    root = str(tmp_path / "dataset")
    _write_layout(root, np.random.default_rng(6))
    # Files are found through dataset.json only: a stray shard in a split folder (a leftover of another
    # run, a partial write) is never read, and a hand-built split name is not needed anywhere.
    for level in ("frame", "video"):
        with open(os.path.join(root, level, "fold-1", "part-stray.tfrecord"), "wb") as f:
            f.write(b"not a tfrecord")
    cfg = _cfg("moe", epochs=1, batch_size=8)
    fold0 = str(tmp_path / "f0")
    kfold.train_fold(cfg, root, fold0, NUM_CLASSES, folds=2, fold=0)
    assert training.split_files(root, "video", ["fold-*"]) == [
        os.path.join(root, "video", f"fold-{k}", "part-00000-of-00001.tfrecord") for k in (0, 1)]
    with pytest.raises(dataset.DatasetError, match="folds is 2, but 3 was given"):
        kfold.train_fold(cfg, root, str(tmp_path / "f3"), NUM_CLASSES, folds=3, fold=0)
    with pytest.raises(dataset.DatasetError, match="num_classes is 12, but 7 was given"):
        kfold.train_final(cfg, root, str(tmp_path / "f3"), 7, folds=2, fold_dirs=[fold0])
    with pytest.raises(dataset.DatasetError, match="dataset.json: not found"):
        kfold.train_fold(cfg, str(tmp_path / "nothing"), str(tmp_path / "f3"), None, None, fold=0)
    out = str(tmp_path / "member")
    with pytest.raises(ValueError, match=r"folds 0..1 once each, got \[0\] \(missing \[1\]\)"):
        kfold.train_final(cfg, root, out, NUM_CLASSES, folds=2, fold_dirs=[fold0])
    with pytest.raises(ValueError, match=r"got \[0, 0\]"):
        kfold.train_final(cfg, root, out, NUM_CLASSES, folds=2, fold_dirs=[fold0, fold0])
    other = dataclasses.replace(cfg, name="other")
    with pytest.raises(ValueError, match="other configs given: t-moe"):
        kfold.train_final(other, root, out, NUM_CLASSES, folds=2, fold_dirs=[fold0])
    assert not os.path.exists(out)  # nothing trained, nothing written
    with pytest.raises(ValueError, match="two out-of-fold results for t-moe fold 0"):
        kfold.collect_folds([fold0, fold0], str(tmp_path / "collected"))
    with pytest.raises(ValueError, match=r"fold must be in \[0, 2\)"):
        kfold.train_fold(cfg, root, str(tmp_path / "f2"), NUM_CLASSES, folds=2, fold=2)
    standardized = _cfg("moe", epochs=1, batch_size=8, video_features="standardized")
    with pytest.raises(dataset.DatasetError) as info:  # this dataset was written without the z-scored means
        kfold.train_fold(standardized, root, str(tmp_path / "fz"), NUM_CLASSES, folds=2, fold=0)
    message = str(info.value)
    assert "\n" not in message and "training.video_features: standardized" in message
    assert "mean_rgb_z" in message and "yt8m preprocess --standardized" in message
    with pytest.raises(ValueError, match="training.video_features: standardized needs a preprocessed dataset"):
        training.train_single(standardized, training.split_files(root, "video", ["fold-0"]), str(tmp_path / "s"),
                              NUM_CLASSES)


def _video_records(path, videos, seed=0):
    rng = np.random.default_rng(seed)
    writers.write_tfrecords(str(path), [
        writers.video_level_example(f"v{i}", [int(rng.integers(NUM_CLASSES))], rng.normal(0, 1, 1024),
                                    rng.normal(0, 1, 128)).SerializeToString() for i in range(videos)])
    return str(path)


def test_examples_to_see_sets_the_steps_whatever_the_dataset_size(tmp_path):
    assert train_loop.plan_steps(_cfg("moe", epochs=3, batch_size=8).training, 5) == (15, 3)
    assert train_loop.plan_steps(_cfg("moe", epochs=3, batch_size=8, examples_to_see=100).training, 5) == (13, 3)
    assert train_loop.plan_steps(_cfg("moe", batch_size=8, examples_to_see=8).training, 5) == (1, 1)
    data = _video_records(tmp_path / "small.tfrecord", 20)  # 3 batches of 8 per epoch
    cfg = _cfg("moe", epochs=1, batch_size=8, examples_to_see=100, checkpoint_every_steps=4)
    summary = train_loop.Trainer(cfg, NUM_CLASSES, str(tmp_path / "ck")).fit([data])
    assert (summary["steps"], summary["total_steps"], summary["steps_per_epoch"], summary["epochs"]) == (13, 13, 3, 5)
    assert summary["trained_steps"] == 13 and summary["examples_to_see"] == 100
    state = json.loads((tmp_path / "ck" / "train_state.json").read_text())
    assert state["finished"] and state["step"] == 13 and state["examples_to_see"] == 100


# ----------------------------------------------------------------------------------------- CLI


def _write_config(path, **training_fields):
    raw = {"name": "cli-dbof", "family": "dbof", "preset": "small", "training": training_fields}
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_train_verb_trains_evaluates_exports_and_rerun_resumes(tmp_path, capsys):
    rng = np.random.default_rng(5)
    write_videos(str(tmp_path / "train.tfrecord"), [random_video(rng, f"t{i}", 10, NUM_CLASSES) for i in range(24)])
    write_videos(str(tmp_path / "eval.tfrecord"), [random_video(rng, f"e{i}", 10, NUM_CLASSES) for i in range(8)])
    config = _write_config(tmp_path / "c.yaml", epochs=2, batch_size=8, max_frames=16, num_samples=8,
                           ema_halflife=2, checkpoint_every_steps=2, reverse_prob=0.5)
    out = str(tmp_path / "out")
    argv = ["train", "--config", config, "--data", str(tmp_path / "train.tfrecord"), "--output", out,
            "--num-classes", str(NUM_CLASSES), "--eval-data", str(tmp_path / "eval.tfrecord"),
            "--compression", "none"]  # float32 export: served == in-memory to 1e-5 (uint8: tests/test_compression.py)
    assert cli.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == out and "6/6 steps" in lines[-2] and "eval GAP@20" in lines[-2]
    metrics = json.load(open(os.path.join(out, "metrics.json")))
    assert metrics["steps"] == metrics["total_steps"] == 6 and metrics["ema"] and metrics["eval"]["num_videos"] == 8
    for name in ("model.weights.h5", "model_config.yaml", "saved_model/saved_model.pb", "checkpoints/checkpoint"):
        assert os.path.exists(os.path.join(out, name)), name
    # model.weights.h5 (the EMA weights) and the SavedModel agree
    member = export.member_from_weights("m", {"family": "dbof", "preset": "small"},
                                        os.path.join(out, "model.weights.h5"), NUM_CLASSES)
    serialized = _serialized_videos(rng)
    served = export.load_serving_model(os.path.join(out, "saved_model"))(serialized=tf.constant(serialized))
    np.testing.assert_allclose(served["scores"].numpy(), _in_memory(member.model, "frame", serialized, 16),
                               atol=1e-5)
    # TensorBoard events (Keras' callback, or the same scalar events without the tensorboard package)
    from tensorflow.core.util import event_pb2

    (events,) = tf.io.gfile.glob(os.path.join(out, "tensorboard", "train", "events.out.tfevents.*"))
    tags = {(v.tag, e.step) for raw in tf.data.TFRecordDataset(events).as_numpy_iterator()
            for e in [event_pb2.Event.FromString(raw)] for v in e.summary.value}
    assert {("epoch_loss", 0), ("epoch_loss", 1), ("epoch_examples_per_second", 1)} <= tags
    # the same command again: resumes at the last step and only re-exports
    assert cli.main(argv) == 0
    assert "(resumed at step 6)" in capsys.readouterr().out


@pytest.mark.parametrize("raw, message", [
    ({"name": "x", "family": "dbof", "training": {"mixup_prob": 0.5}}, "mixup is for video-level inputs"),
    ({"name": "x", "family": "nosuch"}, "unknown model family 'nosuch'"),
    ({"name": "x", "family": "moe", "training": {"epochs": 1, "bogus": 2}}, "unknown field(s) bogus"),
])
def test_train_verb_bad_config_is_one_line_exit_2(tmp_path, capsys, raw, message):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(raw))
    argv = ["train", "--config", str(tmp_path / "bad.yaml"), "--data", str(tmp_path / "*.tfrecord"), "--output",
            str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("yt8m train: error:") and message in err[0]


def test_train_verb_rejects_missing_data_and_frame_family_on_video_examples(tmp_path, capsys):
    config = _write_config(tmp_path / "c.yaml", epochs=1)
    assert cli.main(["train", "--config", config, "--data", str(tmp_path / "none*.tfrecord"), "--output",
                     str(tmp_path / "o")]) == 2
    assert "no --data files match" in capsys.readouterr().err
    writers.write_tfrecords(str(tmp_path / "video.tfrecord"), [writers.video_level_example(
        "a", [1], np.zeros(1024), np.zeros(128)).SerializeToString()])
    assert cli.main(["train", "--config", config, "--data", str(tmp_path / "video.tfrecord"), "--output",
                     str(tmp_path / "o")]) == 2
    assert "needs frame-level data" in capsys.readouterr().err


def test_models_verb_lists_every_family_and_preset(capsys, monkeypatch):
    from yt8m.models import sizes

    assert cli.main(["models", "--preset", "small", "--family", "logistic", "--num-classes", "10", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["parameters"] == (1024 + 128 + 1) * 10 and row["fp32_mib"] >= row["uint8_mib"] >= 0

    built = []  # every family and preset, without building the (slow, memory-heavy) published models

    def fake_size(family, preset, num_classes):
        built.append((family, preset, num_classes))
        return {"family": family, "preset": preset, "input_level": registry.get_family(family).input_level,
                "parameters": 1000, "fp32_mib": 0.004, "uint8_mib": 0.004}

    monkeypatch.setattr(sizes, "model_size", fake_size)
    assert cli.main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    registry._load_families()
    expected = sorted((f, p, 3862) for f in registry.FAMILIES for p in registry.FAMILIES[f].presets)
    assert sorted(built) == expected and len(rows) == len(expected)
    assert all(r["description"] == registry.FAMILIES[r["family"]].description for r in rows)
    assert cli.main(["models", "--preset", "small", "--family", "moe", "--family", "dbof"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["family", "preset", "input"] and len(out) == 4
    assert cli.main(["models", "--preset", "huge"]) == 2
    assert "no family has preset 'huge'" in capsys.readouterr().err


@pytest.mark.parametrize("verb", ["train", "models"])
def test_new_verbs_have_help(verb, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main([verb, "--help"])
    assert exit_info.value.code == 0 and "usage: yt8m " + verb in capsys.readouterr().out


# ----------------------------------------------------------------------------------------- devices


def test_mixed_precision_code_path_trains_with_loss_scaling_and_exports_float32(monkeypatch):
    import keras

    monkeypatch.setattr(model_setup, "use_mixed_precision", lambda t: True)  # as when a GPU is visible
    trainer = train_loop.Trainer(_cfg("netvlad"), NUM_CLASSES)
    assert trainer.model.dtype_policy.name == "mixed_float16"
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    assert keras.mixed_precision.global_policy().name == "float32"  # the global policy is restored
    rng = np.random.default_rng(6)
    losses = [trainer.train_on_batch(*_batch("frame", rng)) for _ in range(3)]
    assert np.isfinite(losses).all()
    model = trainer.inference_model()
    features, _ = _batch("frame", rng)
    assert model.dtype_policy.name == "float32" and model(features).dtype == tf.float32
    np.testing.assert_allclose(model(features).numpy(), np.asarray(trainer.model(features), np.float32), atol=5e-3)


MIRRORED_SCRIPT = """
import sys, numpy as np, tensorflow as tf
cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2)
from yt8m import config as config_lib, train_loop, writers
rng = np.random.default_rng(0)
data = sys.argv[1] + "/v.tfrecord"
writers.write_tfrecords(data, [writers.video_level_example(f"v{i}", [int(rng.integers(10))], rng.normal(0, 1, 1024),
                                                           rng.normal(0, 1, 128)).SerializeToString() for i in range(32)])
cfg = config_lib.model_config_from_dict({"name": "m", "family": "moe", "training": {
    "epochs": 2, "batch_size": 8, "ema_halflife": 3, "checkpoint_every_steps": 3}})
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
first = train_loop.Trainer(cfg, 10, sys.argv[1] + "/ckpt", strategy=strategy).fit([data])
again = train_loop.Trainer(cfg, 10, sys.argv[1] + "/ckpt", strategy=strategy).fit([data])
print("RESULT", first["replicas"], first["steps"], again["resumed_from_step"], again["trained_steps"])
"""


def test_mirrored_strategy_code_path_on_two_logical_cpus(tmp_path):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "RESULT 2 8 8 0" in result.stdout


def test_full_predictions_are_every_class_of_the_same_scores_as_the_topk_files(tmp_path):
    """training.full_predictions (set by distillation.soft_labels full): the folds' and the final member's
    every-class probabilities (float16, keyed by video id), the teachers of full soft labels."""
    root = str(tmp_path / "dataset")
    _write_layout(root, np.random.default_rng(7))
    out = str(tmp_path / "member")
    kfold.train_member(_cfg("moe", epochs=1, batch_size=8, full_predictions=True), root, out, NUM_CLASSES, folds=2)
    for split, topk_file, full_file in (("oof", kfold.OOF_FILE, kfold.OOF_FULL_FILE),
                                        ("holdout", "holdout_predictions.npz", kfold.HOLDOUT_FULL_FILE)):
        topk = predictions.load_topk(os.path.join(out, topk_file))
        full = predictions.load_full(os.path.join(out, full_file))
        assert full["scores"].dtype == np.float16 and full["scores"].shape == (len(topk["video_ids"]), NUM_CLASSES)
        assert sorted(full["video_ids"]) == sorted(topk["video_ids"]), split
        rows = [full["video_ids"].index(v) for v in topk["video_ids"]]
        dense = np.asarray(full["scores"], np.float32)[rows]
        np.testing.assert_allclose(np.take_along_axis(dense, topk["classes"].astype(np.int64), axis=1),
                                   topk["scores"], atol=1e-3, err_msg=split)  # the same scores, float16


def test_clip_gradient_norm_zero_turns_clipping_off_and_the_default_clips_at_the_references_1():
    assert model_setup.adam(config_lib.TrainingConfig(clip_gradient_norm=0)).clipnorm is None
    assert model_setup.adam(config_lib.TrainingConfig()).clipnorm == 1.0


def test_examples_per_class_lengthens_a_run_over_more_classes_and_never_shortens_one(tmp_path):
    t = _cfg("moe", batch_size=10, examples_to_see=1000, examples_per_class=20).training
    assert train_loop.plan_steps(t, 7, num_classes=25) == (100, 15)  # 1,000 > 20 x 25
    assert train_loop.plan_steps(t, 7, num_classes=100) == (200, 29)  # 20 x 100 = 2,000
    assert train_loop.plan_steps(_cfg("moe", batch_size=10, examples_per_class=20).training, 7, 100) == (200, 29)
    with pytest.raises(config_lib.ConfigError, match="examples_per_class: must be >= 0"):
        _cfg("moe", examples_per_class=-1)
    data = _video_records(tmp_path / "small.tfrecord", 20)
    per_class = _cfg("moe", batch_size=8, examples_to_see=8, examples_per_class=10)  # 10 x NUM_CLASSES examples
    summary = train_loop.Trainer(per_class, NUM_CLASSES, str(tmp_path / "ck")).fit([data])
    assert summary["total_steps"] == summary["trained_steps"] == -(-10 * NUM_CLASSES // 8) > 1
    assert summary["examples_to_see"] == 10 * NUM_CLASSES
