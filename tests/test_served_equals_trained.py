"""Served == trained: a published member scores raw records exactly as training scored its features.

The real path end to end, on a real preprocessed dataset: synthetic frame-level videos (``yt8m.synth``,
plus videos of 1-3 frames and of more than 300 frames) -> the Beam + tensorflow-transform job
(``run_preprocess``) -> ``kfold.train_member`` (the pipeline's fold and final-member library path,
reading the dataset through ``Dataset.open``) -> the exported member (``saved_model/``, the serving graph
that takes serialized raw SequenceExamples) and a merged two-member graph (``export``, as the ensembler
builds it). The served scores of the holdout's RAW frame-level records must equal, to 1e-5:

* the trainer's own holdout scores (``holdout_predictions.npz``: the model on the features training saw,
  i.e. the TFT video-level shards for a video-level family, the reader's frames for a frame-level one);
* the in-memory model rebuilt from ``model.weights.h5`` on those same features.

And the video-level features are ONE rule: the serving graph applies the dataset's own transform_fn to
the raw records, so its features equal the video shards' bit for bit, videos beyond 300 frames included.
"""

import os

import numpy as np
import pytest
import tensorflow as tf

from yt8m import config as config_lib
from yt8m import export, folds, kfold, predictions, readers, schema, scoring, synth, writers
from yt8m.dataset import Dataset
from yt8m_pipeline.beam_jobs.preprocess import run_preprocess

CLASSES = 10
FOLDS = 2
HOLDOUT = 0.25
# (frames, how many): very short videos and videos beyond 300 frames, added to the synthetic ones.
EXTRA_LENGTHS = ((1, 3), (2, 3), (3, 3), (301, 2), (350, 3), (480, 3))


def _extra_videos(rng):
    """Short and long videos, half of them (by id) in the holdout, so both rules are served and trained."""
    out, candidate = [], 0
    for frames, count in EXTRA_LENGTHS:
        for want_holdout in [True] * ((count + 1) // 2) + [False] * (count // 2):
            while True:
                video_id = f"extra-{candidate}"
                candidate += 1
                if (folds.assign_split(video_id, FOLDS, HOLDOUT) == folds.HOLDOUT) == want_holdout:
                    break
            rgb = rng.integers(0, 256, (frames, 1024), np.uint8)
            audio = rng.integers(0, 256, (frames, 128), np.uint8)
            out.append((video_id, sorted(rng.choice(CLASSES, size=2, replace=False).tolist()), rgb, audio))
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    raw = str(root / "raw")
    synth.generate(raw, videos=200, classes=CLASSES, seed=11, splits=(("train", 1.0),), videos_per_shard=100,
                   progress=False)
    extra = _extra_videos(np.random.default_rng(5))
    writers.write_tfrecords(os.path.join(raw, "extra", "extra.tfrecord"),
                            [writers.frame_level_example(*v).SerializeToString() for v in extra])
    out = str(root / "dataset")
    run_preprocess(f"{raw}/train/*.tfrecord,{raw}/extra/*.tfrecord", out, CLASSES, FOLDS, HOLDOUT, runner="local",
                   write_report=False, standardized_features=True)  # also mean_rgb_z / mean_audio_z
    return Dataset.open(out)


def _holdout_raw(ds):
    """{video id: serialized raw frame-level record} of the holdout, and the number of frames stored."""
    records, frames = {}, {}
    for raw in tf.data.TFRecordDataset(ds.files("frame", [ds.holdout])).as_numpy_iterator():
        ex = tf.train.SequenceExample.FromString(raw)
        vid = ex.context.feature["id"].bytes_list.value[0].decode()
        records[vid], frames[vid] = raw, len(ex.feature_lists.feature_list["rgb"].feature)
    return records, frames


def test_holdout_has_short_and_long_videos(dataset):
    _, frames = _holdout_raw(dataset)
    assert dataset.num_videos([dataset.holdout]) == len(frames) > 40
    assert min(frames.values()) <= 3 and max(frames.values()) > 300
    assert sum(n > 300 for n in frames.values()) >= 3


def test_serving_video_features_are_the_transform_means_bit_for_bit(dataset):
    """The serving graph's video-level features (the dataset's transform_fn applied to raw records) ARE the
    video shards' features (the means and their z-scores), bit for bit, long videos included; so do the
    in-graph fallback (``readers.frame_means``, no transform at hand) and the trainer's reader of frame-level
    records (``readers.parse_frame_means``): one frames rule, one arithmetic (``schema.dequantized_mean``)."""
    from yt8m.models import registry

    records, frames = _holdout_raw(dataset)
    ids = list(records)
    serialized = tf.constant([records[v] for v in ids])
    member = export.Member("logistic", registry.build_model("logistic", CLASSES, "small"), "video", {})
    served = export.ServingModule([member], transform_dir=dataset.transform_path)._transformed_video_features(
        serialized)
    _, rgb, audio, num_frames, _ = readers.decode_frame_batch(serialized)
    fallback = readers.frame_means(rgb, audio, num_frames)
    reader = {v: readers.parse_frame_means(tf.constant("<test>"), tf.constant(records[v]), CLASSES)[0] for v in ids}
    shards = {}
    for raw in tf.data.TFRecordDataset(dataset.files("video", [dataset.holdout])).as_numpy_iterator():
        feature = tf.train.Example.FromString(raw).features.feature
        shards[feature["id"].bytes_list.value[0].decode()] = {
            k: np.asarray(feature[k].float_list.value, np.float32)
            for k in ("mean_rgb", "mean_audio", "mean_rgb_z", "mean_audio_z")}
    assert sorted(shards) == sorted(ids)
    for i, vid in enumerate(ids):
        for key in ("mean_rgb", "mean_audio"):
            np.testing.assert_array_equal(served["mean"][key][i].numpy(), shards[vid][key], err_msg=f"{vid} {key}")
            np.testing.assert_array_equal(served["standardized"][key][i].numpy(), shards[vid][f"{key}_z"],
                                          err_msg=f"{vid} {key}_z")
            np.testing.assert_array_equal(fallback[key][i].numpy(), shards[vid][key], err_msg=f"{vid} {key}")
            np.testing.assert_array_equal(reader[vid][key].numpy(), shards[vid][key], err_msg=f"{vid} {key}")
    long_video = next(v for v in ids if frames[v] > 300)  # the first 300 frames, not all of them
    all_frames = tf.train.SequenceExample.FromString(records[long_video]).feature_lists.feature_list["rgb"].feature
    q = np.stack([np.frombuffer(f.bytes_list.value[0], np.uint8) for f in all_frames])
    assert np.abs(schema.dequantize(q).mean(0, dtype=np.float64) - shards[long_video]["mean_rgb"]).max() > 1e-4


# Members: (family, training.video_features); the standardized one trains on the z-scored means.
MEMBERS = {"logistic": ("logistic", "mean"), "dbof": ("dbof", "mean"), "logistic-z": ("logistic", "standardized")}


def _config(name):
    family, video_features = MEMBERS[name]
    training_fields = {"epochs": 2, "batch_size": 32, "eval_batch_size": 48, "learning_rate": 0.01,
                       "checkpoint_every_steps": 1000}
    if video_features != "mean":
        training_fields["video_features"] = video_features
    if family == "dbof":
        training_fields["num_samples"] = 30
    return config_lib.model_config_from_dict({"name": f"served-{name}", "family": family, "preset": "small",
                                              "training": training_fields})


def _features_training_saw(ds, model, level, t):
    """(ids, the in-memory model's scores) on the holdout features the trainer evaluates: the TFT video
    shards (video-level) or the reader's frames (frame-level), in file order."""
    files = ds.files(level, [ds.holdout])
    ids, scores = [], []
    for features, _ in readers.evaluation_batches(files, level, level, ds.num_classes, t):
        ids += [v.decode() for v in features.pop("video_id").numpy()]
        scores.append(model(features, training=False).numpy())
    return ids, np.concatenate(scores)


@pytest.fixture(scope="module")
def members(dataset, tmp_path_factory):
    out = {}
    for name in MEMBERS:
        cfg = _config(name)
        member_dir = str(tmp_path_factory.mktemp(name))
        kfold.train_member(cfg, dataset.path, member_dir)  # classes and folds from dataset.json
        out[name] = (cfg, member_dir)
    return out


@pytest.mark.parametrize("name", list(MEMBERS))
def test_served_scores_on_raw_records_equal_training_scores(dataset, members, name):
    cfg, member_dir = members[name]
    member = export.member_from_weights(cfg.name, config_lib.to_dict(cfg),
                                        os.path.join(member_dir, "model.weights.h5"), CLASSES)
    # Served: the member's SavedModel on the holdout's RAW frame-level files (the gate's fresh-process scorer).
    ids, served, _ = scoring.score_files(os.path.join(member_dir, "saved_model"),
                                         dataset.files("frame", [dataset.holdout]))
    served = dict(zip(ids, served))
    # Training: the trainer's own holdout scores (top-k with k >= classes: every score).
    hold = predictions.load_topk(os.path.join(member_dir, "holdout_predictions.npz"))
    trained = predictions.densify_topk(hold["classes"], hold["scores"], CLASSES)
    assert hold["classes"].shape[1] == CLASSES and sorted(hold["video_ids"]) == sorted(served)
    np.testing.assert_allclose(np.stack([served[v] for v in hold["video_ids"]]), trained, atol=1e-5, rtol=0)
    # The same model rebuilt from its weights, on the features training saw.
    mem_ids, in_memory = _features_training_saw(dataset, member.model, member.input_level, cfg.training)
    np.testing.assert_allclose(np.stack([served[v] for v in mem_ids]), in_memory, atol=1e-5, rtol=0)
    assert np.abs(in_memory - in_memory.mean(0)).max() > 1e-3, "a constant model would prove nothing"


def test_merged_graph_serves_the_average_of_the_members_training_scores(dataset, members, tmp_path):
    loaded, trained = [], []
    for name in MEMBERS:
        cfg, member_dir = members[name]
        loaded.append(export.member_from_weights(cfg.name, config_lib.to_dict(cfg),
                                                 os.path.join(member_dir, "model.weights.h5"), CLASSES))
        hold = predictions.load_topk(os.path.join(member_dir, "holdout_predictions.npz"))
        trained.append(dict(zip(hold["video_ids"],
                                predictions.densify_topk(hold["classes"], hold["scores"], CLASSES))))
    merged = str(tmp_path / "merged")
    # Unquantized (exactly the members' arithmetic), with the dataset's transform as the ensembler builds it.
    export.export_serving_model(loaded, merged, [0.5, 0.25, 0.25], transform_dir=dataset.transform_path)
    ids, served, _ = scoring.score_files(merged, dataset.files("frame", [dataset.holdout]))
    expected = np.stack([0.5 * trained[0][v] + 0.25 * trained[1][v] + 0.25 * trained[2][v] for v in ids])
    np.testing.assert_allclose(served, expected, atol=1e-5, rtol=0)


def test_a_standardized_member_needs_the_datasets_transform_fn():
    """Its z-scores exist only as the transform_fn's outputs: an export without it is refused, not served means."""
    from yt8m.models import registry

    cfg = _config("logistic-z")
    member = export.Member(cfg.name, registry.build_model("logistic", CLASSES, "small"), "video",
                           config_lib.to_dict(cfg))
    with pytest.raises(ValueError, match="served-logistic-z train on standardized video features"):
        export.ServingModule([member])
