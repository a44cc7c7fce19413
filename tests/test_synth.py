"""yt8m.synth: real-format records, determinism, YT8M-like statistics, learnable frame-level structure."""

from __future__ import annotations

import glob
import os

import numpy as np
import pytest
import tensorflow as tf

from yt8m import schema, storage, synth, writers

try:
    from yt8m.metrics import gap_at_k
except ImportError:  # pragma: no cover - metrics.py is written in parallel

    def gap_at_k(predictions, labels, k=20):
        """Brute-force GAP@k (pool every video's top k, rank, AP against ALL positives)."""
        predictions, labels = np.asarray(predictions, np.float64), np.asarray(labels) > 0
        k = min(k, predictions.shape[1])
        top = np.argsort(-predictions, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(predictions, top, 1).ravel()
        relevant = np.take_along_axis(labels, top, 1).ravel()[np.argsort(-scores, kind="stable")]
        precision = np.cumsum(relevant) / np.arange(1, relevant.size + 1)
        return float((precision * relevant).sum() / max(1, labels.sum()))


CLASSES = 50
VIDEOS = 2000  # train 1600 / validate 200 / test 200


def _read_split(out_dir: str, split: str) -> list[dict]:
    """Every record of a split, parsed with the real-format parser (tf.io.parse_single_sequence_example)."""
    files = sorted(glob.glob(os.path.join(out_dir, split, f"{split}-*-of-*.tfrecord")))

    def parse(record):
        context, sequence = tf.io.parse_single_sequence_example(
            record,
            context_features={"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)},
            sequence_features={
                "rgb": tf.io.FixedLenSequenceFeature([], tf.string),
                "audio": tf.io.FixedLenSequenceFeature([], tf.string),
            },
        )
        return {
            "id": context["id"],
            "labels": tf.sparse.to_dense(context["labels"]),
            "rgb": tf.io.decode_raw(sequence["rgb"], tf.uint8),
            "audio": tf.io.decode_raw(sequence["audio"], tf.uint8),
            "rgb_bytes": tf.strings.length(sequence["rgb"]),
            "audio_bytes": tf.strings.length(sequence["audio"]),
        }

    ds = tf.data.TFRecordDataset(files).map(parse)
    return [{**r, "id": r["id"].decode()} for r in ds.as_numpy_iterator()]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth"))
    info = synth.generate(out, VIDEOS, CLASSES, seed=0, videos_per_shard=500, progress=False)
    splits = {name: _read_split(out, name) for name in ("train", "validate", "test")}
    clean = {name: synth.read_clean_labels(os.path.join(out, "oracle", f"{name}_clean_labels.csv")) for name in splits}
    return {"out": out, "info": info, "splits": splits, "clean": clean}


def _all(dataset) -> list[dict]:
    return [r for name in ("train", "validate", "test") for r in dataset["splits"][name]]


def _dense(label_lists, classes=CLASSES) -> np.ndarray:
    y = np.zeros((len(label_lists), classes), np.float32)
    for i, labels in enumerate(label_lists):
        y[i, list(labels)] = 1
    return y


# ------------------------------------------------------------------ layout and API


def test_generate_writes_sharded_splits_oracle_csvs_and_synth_json(dataset):
    out, info = dataset["out"], dataset["info"]
    assert info["counts"] == {"train": 1600, "validate": 200, "test": 200}
    assert sorted(os.listdir(os.path.join(out, "train"))) == [f"train-0000{i}-of-00004.tfrecord" for i in range(4)]
    assert os.listdir(os.path.join(out, "validate")) == ["validate-00000-of-00001.tfrecord"]
    assert sorted(os.listdir(os.path.join(out, "oracle"))) == [
        "test_clean_labels.csv",
        "train_clean_labels.csv",
        "validate_clean_labels.csv",
    ]
    assert storage.read_json(os.path.join(out, "synth.json")) == info
    assert info["seed"] == 0 and info["classes"] == CLASSES and info["videos"] == VIDEOS
    assert len(info["class_prior"]) == CLASSES and abs(sum(info["class_prior"]) - 1) < 1e-9
    assert info["params"]["miss_prob"] == 0.1
    assert info["stats"]["tfrecord_bytes"] == sum(
        os.path.getsize(p) for p in glob.glob(os.path.join(out, "*", "*.tfrecord"))
    )
    for name in ("train", "validate", "test"):
        assert len(dataset["splits"][name]) == info["counts"][name]
        assert set(r["id"] for r in dataset["splits"][name]) == set(dataset["clean"][name])


def test_split_counts_use_largest_remainder_and_sum_to_videos():
    assert synth.split_counts(10, synth.DEFAULT_SPLITS) == [("train", 8), ("validate", 1), ("test", 1)]
    assert sum(n for _, n in synth.split_counts(7, synth.DEFAULT_SPLITS)) == 7
    assert synth.split_counts(5, (("all", 1.0),)) == [("all", 5)]
    with pytest.raises(ValueError):
        synth.split_counts(5, (("a", 0.5), ("a", 0.5)))


# ------------------------------------------------------------------ determinism


def _file_bytes(root: str) -> dict[str, bytes]:
    files = {}
    for path in sorted(glob.glob(os.path.join(root, "**", "*"), recursive=True)):
        if os.path.isfile(path):
            with open(path, "rb") as f:
                files[os.path.relpath(path, root)] = f.read()
    return files


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    a, b, c = (str(tmp_path / n) for n in "abc")
    synth.generate(a, 60, 20, seed=7, videos_per_shard=25, progress=False)
    synth.generate(b, 60, 20, seed=7, videos_per_shard=25, progress=False)
    synth.generate(c, 60, 20, seed=8, videos_per_shard=25, progress=False)
    files_a, files_b, files_c = _file_bytes(a), _file_bytes(b), _file_bytes(c)
    assert "train/train-00001-of-00002.tfrecord" in files_a  # 48 train videos, 25 per shard
    assert files_a == files_b  # records, clean-label CSVs and synth.json
    assert files_a.keys() == files_c.keys()
    for name in files_a:
        if name.endswith(".tfrecord") or name.endswith(".csv"):
            assert files_a[name] != files_c[name], name


def test_video_ids_are_unique_deterministic_and_yt8m_like():
    ids = synth.VideoIds(seed=3, videos=20000)
    values = [ids(i) for i in range(20000)]
    assert len(set(values)) == 20000
    assert all(len(v) == 4 and v.isalnum() for v in values)
    assert values[:50] == [synth.VideoIds(seed=3, videos=20000)(i) for i in range(50)]
    assert values[:50] != [synth.VideoIds(seed=4, videos=20000)(i) for i in range(50)]
    assert len(synth.VideoIds(seed=0, videos=62**4 + 1)(0)) == 5


# ------------------------------------------------------------------ record format


def test_records_are_real_frame_level_sequence_examples(dataset):
    records = _all(dataset)
    ids = [r["id"] for r in records]
    assert len(set(ids)) == len(ids) and all(len(i) >= 4 for i in ids)
    for r in records:
        t = r["rgb"].shape[0]
        assert r["rgb"].shape == (t, schema.RGB_SIZE) and r["audio"].shape == (t, schema.AUDIO_SIZE)
        assert (r["rgb_bytes"] == 1024).all() and (r["audio_bytes"] == 128).all()
        assert len(r["labels"]) >= 1 and r["labels"].min() >= 0 and r["labels"].max() < CLASSES
        assert list(r["labels"]) == sorted(set(r["labels"].tolist()))


def test_fast_serializer_matches_writers_frame_level_example_byte_for_byte():
    for video in synth.iter_videos(seed=5, classes=30, start=0, stop=20, videos=20):
        parsed = tf.train.SequenceExample.FromString(video.record)
        lists = parsed.feature_lists.feature_list
        rgb = np.stack([np.frombuffer(f.bytes_list.value[0], np.uint8) for f in lists["rgb"].feature])
        audio = np.stack([np.frombuffer(f.bytes_list.value[0], np.uint8) for f in lists["audio"].feature])
        reference = writers.frame_level_example(video.video_id, video.labels, rgb, audio)
        assert parsed == reference
        assert video.record == reference.SerializeToString(deterministic=True)
        assert rgb.shape[0] == video.num_frames


def test_quantization_is_bit_identical_to_schema_quantize():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((40, synth.FEATURE_DIM)) * 1.2).astype(np.float32)
    # Exact rounding ties and out-of-range values.
    x[0, :256] = ((np.arange(256) + 0.5) / 63.75 - 2).astype(np.float32)
    x[1, :4] = [-5, 5, -2, 2]
    rgb = np.empty((40, schema.RGB_SIZE), np.uint8)
    audio = np.empty((40, schema.AUDIO_SIZE), np.uint8)
    synth._quantize_into(x, np.empty(x.shape, np.float64), rgb, audio)
    np.testing.assert_array_equal(np.concatenate([rgb, audio], 1), schema.quantize(x))


def test_values_stay_mostly_inside_the_quantization_range(dataset):
    frames = np.concatenate([r["rgb"] for r in dataset["splits"]["validate"]])
    clipped = np.mean((frames == 0) | (frames == 255))
    assert clipped < 0.02
    assert 0.4 < schema.dequantize(frames).std() < 1.2


# ------------------------------------------------------------------ statistics


def test_label_statistics_resemble_yt8m(dataset):
    records = _all(dataset)
    observed = [r["labels"].tolist() for r in records]
    clean = [c for name in ("train", "validate", "test") for c in dataset["clean"][name].values()]
    assert 2.5 <= np.mean([len(l) for l in observed]) <= 3.5
    assert 2.5 <= np.mean([len(l) for l in clean]) <= 3.5
    assert min(len(l) for l in observed) >= 1 and min(len(l) for l in clean) >= 1
    counts = _dense(observed).sum(0)
    assert counts[0] == counts.max()  # class 0 is the most frequent (Zipf order)
    assert counts.max() > 5 * np.median(counts)  # Zipf skew
    assert (counts > 0).all()


def test_labels_are_correlated_within_clusters(dataset):
    cluster = np.array(dataset["info"]["class_cluster"])
    prior = np.array(dataset["info"]["class_prior"])
    same = total = 0
    for labels in dataset["clean"]["train"].values():
        for i, a in enumerate(labels):
            for b in labels[i + 1 :]:
                same += cluster[a] == cluster[b]
                total += 1
    mass = np.bincount(cluster, weights=prior)
    chance = float((mass**2).sum())  # two independent prior draws in one cluster
    assert same / total > chance + 0.25


def test_lengths_span_30_to_over_300_frames(dataset):
    lengths = np.array([r["rgb"].shape[0] for r in _all(dataset)])
    assert lengths.min() >= 30
    assert 0.05 < np.mean(lengths > schema.MAX_FRAMES) < 0.15
    assert 130 < lengths.mean() < 190


def test_label_noise_rates_match_configuration(dataset):
    missed = spurious = n_clean = videos = 0
    for name in ("train", "validate", "test"):
        for r in dataset["splits"][name]:
            clean, observed = set(dataset["clean"][name][r["id"]]), set(r["labels"].tolist())
            missed += len(clean - observed)
            spurious += len(observed - clean)
            n_clean += len(clean)
            videos += 1
    assert 0.06 < missed / n_clean < 0.13  # miss_prob 0.1, slightly less: one label is always kept
    assert 0.06 < spurious / videos < 0.14  # spurious_prob 0.1


def test_audio_only_classes_live_in_the_audio_dimensions():
    world = synth.build_world(seed=0, classes=200)
    assert world.audio_only.sum() == 20
    rgb_part = np.abs(world.u[:, : schema.RGB_SIZE]).sum(1) + np.abs(world.v[:, : schema.RGB_SIZE]).sum(1)
    audio_part = np.abs(world.u[:, schema.RGB_SIZE :]).sum(1) + np.abs(world.v[:, schema.RGB_SIZE :]).sum(1)
    assert (rgb_part[world.audio_only] == 0).all() and (audio_part[~world.audio_only] == 0).all()
    np.testing.assert_allclose((world.u * world.v).sum(1), 0, atol=1e-5)


# ------------------------------------------------------------------ oracle


def test_oracle_scores_rank_clean_labels_first(dataset):
    clean = dataset["clean"]["test"]
    records = dataset["splits"]["test"]
    ids = [r["id"] for r in records]
    prior = np.array(dataset["info"]["class_prior"])
    scores = synth.oracle_scores(ids, clean, prior)
    assert scores.shape == (len(ids), CLASSES)
    y_clean = _dense([clean[i] for i in ids])
    assert (scores[y_clean > 0] > 0.999).all() and (scores[y_clean == 0] < 1e-3).all()
    assert gap_at_k(scores, y_clean) == pytest.approx(1.0)
    noisy = gap_at_k(scores, _dense([r["labels"] for r in records]))
    assert 0.75 < noisy < 0.95  # label noise caps every model
    with pytest.raises(KeyError):
        synth.oracle_scores(["nope"], clean, prior)


def test_oracle_gap_does_not_depend_on_the_order_of_the_videos(dataset):
    clean = dataset["clean"]["test"]
    records = dataset["splits"]["test"]
    prior = np.array(dataset["info"]["class_prior"])
    ids = [r["id"] for r in records]
    noisy = _dense([r["labels"] for r in records])
    reference = gap_at_k(synth.oracle_scores(ids, clean, prior), noisy)
    for seed in range(3):
        order = np.random.default_rng(seed).permutation(len(ids))
        shuffled = gap_at_k(synth.oracle_scores([ids[i] for i in order], clean, prior), noisy[order])
        assert shuffled == pytest.approx(reference, abs=1e-12)


# ------------------------------------------------------------------ learnability


def _ridge(x, y, lam):
    mu, y_mean = x.mean(0), y.mean(0)
    xc = x - mu
    w = np.linalg.solve(xc.T @ xc + lam * np.eye(x.shape[1]), xc.T @ (y - y_mean))
    return w, y_mean - mu @ w


def features(records):
    """Per record: the dequantized frames (first MAX_FRAMES), and the L2-normalised frame means."""
    frames = [schema.dequantize(np.concatenate([r["rgb"], r["audio"]], 1)[: schema.MAX_FRAMES]) for r in records]
    means = np.stack([f.mean(0) for f in frames])
    return frames, means / np.linalg.norm(means, axis=1, keepdims=True)


def test_data_is_learnable_and_frame_level_structure_beats_mean_pooling(dataset):
    train = dataset["splits"]["train"]
    held_out = dataset["splits"]["validate"] + dataset["splits"]["test"]
    _, x_train = features(train)
    eval_frames, x_eval = features(held_out)
    y_train = _dense([r["labels"] for r in train])
    y_eval = _dense([r["labels"] for r in held_out])

    # (0) Class prior.
    prior_gap = gap_at_k(np.tile(y_train.mean(0), (len(held_out), 1)), y_eval)
    # (a) Ridge probe on mean-pooled, L2-normalised features.
    w, b = _ridge(x_train, y_train, lam=0.5)
    mean_gap = gap_at_k(x_eval @ w + b, y_eval)
    # (b1) The same learned weights applied to every frame, top-5 frames pooled: a
    # frame-level detector that fires where u_c and v_c co-occur (2x the response of a
    # decoy frame holding only one of them).
    frame_scores = np.stack([np.sort(f @ w, axis=0)[-5:].mean(0) for f in eval_frames])
    frame_gap = gap_at_k(frame_scores, y_eval)
    # (b2) Oracle conjunction detector: max over frames of min(<x_t, u_c>, <x_t, v_c>).
    world = synth.build_world(0, CLASSES)
    oracle_scores = []
    for f in eval_frames:
        centred = f - f.mean(0)
        oracle_scores.append(np.minimum(centred @ world.u.T, centred @ world.v.T).max(0))
    oracle_gap = gap_at_k(np.stack(oracle_scores), y_eval)

    print(f"GAP@20 prior {prior_gap:.3f} mean-pool {mean_gap:.3f} frame {frame_gap:.3f} oracle {oracle_gap:.3f}")
    assert mean_gap > prior_gap + 0.25
    assert frame_gap > mean_gap + 0.04
    assert oracle_gap > mean_gap + 0.15


# ------------------------------------------------------------------ concept mode


def test_concept_world_gives_each_class_a_distinct_combination_of_its_modality_and_keeps_the_rest():
    params = synth.SynthParams(concept_pool=24, concepts_per_class=2)
    world, plain = synth.build_world(3, 60, params), synth.build_world(3, 60)
    np.testing.assert_array_equal(world.u, plain.u)  # concepts draw from their own stream
    np.testing.assert_array_equal(world.prior, plain.prior)
    assert plain.concepts is None and world.concepts.shape == (24 + 4, synth.FEATURE_DIM)
    np.testing.assert_allclose(np.linalg.norm(world.concepts, axis=1), 1, rtol=1e-5)
    combos = {tuple(c) for c in world.class_concepts.tolist()}
    assert len(combos) == 60 and all(len(set(c)) == 2 for c in combos)
    audio_concept = np.abs(world.concepts[:, : schema.RGB_SIZE]).sum(1) == 0
    for c in range(60):
        assert audio_concept[world.class_concepts[c]].tolist() == [bool(world.audio_only[c])] * 2
    with pytest.raises(ValueError, match="too few audio combinations"):
        synth.build_world(3, 60, synth.SynthParams(concept_pool=24, concepts_per_class=4, audio_only_fraction=0.9))


def _mean_pool_ridge_probe(out_dir: str, videos: int, classes: int, params: synth.SynthParams):
    """Generates ``videos`` (seed 5) and fits a ridge on the train split's frame means. Returns the world, the
    held-out (validate + test) frames and labels, the ridge weights and the ridge's held-out GAP@20."""
    synth.generate(out_dir, videos, classes, seed=5, params=params, progress=False)
    train = _read_split(out_dir, "train")
    held_out = _read_split(out_dir, "validate") + _read_split(out_dir, "test")
    _, x_train = features(train)
    eval_frames, x_eval = features(held_out)
    y_eval = _dense([r["labels"] for r in held_out], classes)
    w, b = _ridge(x_train, _dense([r["labels"] for r in train], classes), lam=0.5)
    return synth.build_world(5, classes, params), eval_frames, y_eval, w, gap_at_k(x_eval @ w + b, y_eval)


def test_concept_classes_are_co_occurrences_that_neither_the_mean_nor_a_frame_detector_sees(tmp_path):
    """Concept mode: a class is two shared concepts in separate segments. Scoring each class by the weaker of
    its two concepts' strongest frames (a co-occurrence detector) beats the mean-pooled ridge and the ridge's
    weights applied per frame (the best frame decides): the structure is the combination over time."""
    classes = 200  # bench_sweep's c200-v2600-concepts, with its 2,080 training videos
    params = synth.SynthParams(concept_pool=128, segment_fraction=(0.05, 0.15), evidence_amplitude=6.0,
                               decoys_per_video=0.0, zipf_exponent=0.5)
    world, eval_frames, y_eval, w, mean_gap = _mean_pool_ridge_probe(str(tmp_path), 2600, classes, params)
    frame_gap = gap_at_k(np.stack([(f @ w).max(0) for f in eval_frames]), y_eval)
    strongest = [np.sort((f - f.mean(0)) @ world.concepts.T, axis=0)[-3:].mean(0) for f in eval_frames]
    co_occurrence_gap = gap_at_k(np.stack([s[world.class_concepts].min(1) for s in strongest]), y_eval)
    print(f"GAP@20 mean-pool {mean_gap:.3f} frame {frame_gap:.3f} co-occurrence {co_occurrence_gap:.3f}")
    assert co_occurrence_gap > mean_gap + 0.1
    assert co_occurrence_gap > frame_gap + 0.1


# -------------------------------------------------------------------- scene mode


def test_scene_world_gives_each_class_distinct_object_in_scene_modes_of_its_modality_and_keeps_the_rest():
    params = synth.SynthParams(scene_pool=16, object_pool=32, modes_per_class=2)
    world, plain = synth.build_world(3, 60, params), synth.build_world(3, 60)
    np.testing.assert_array_equal(world.u, plain.u)  # scenes draw from their own stream
    np.testing.assert_array_equal(world.prior, plain.prior)
    assert plain.scenes is None and world.concepts is None
    assert world.scenes.shape == (16 + 8, synth.FEATURE_DIM) and world.objects.shape == (32 + 16, synth.FEATURE_DIM)
    np.testing.assert_allclose(np.linalg.norm(world.scenes, axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(world.objects, axis=1), 1, rtol=1e-5)
    assert world.class_modes.shape == (60, 2, 2)
    pairs = [tuple(p) for p in world.class_modes.reshape(-1, 2).tolist()]
    assert len(set(pairs)) == 120  # no (scene, object) pair is the mode of two classes
    audio_scene = np.abs(world.scenes[:, : schema.RGB_SIZE]).sum(1) == 0
    audio_object = np.abs(world.objects[:, : schema.RGB_SIZE]).sum(1) == 0
    for c in range(60):
        scenes, objects = world.class_modes[c, :, 0], world.class_modes[c, :, 1]
        assert len(set(scenes.tolist())) == 2 and len(set(objects.tolist())) == 2  # cross pairs are new pairs
        assert audio_scene[scenes].tolist() == audio_object[objects].tolist() == [bool(world.audio_only[c])] * 2
    with pytest.raises(ValueError, match="too few rgb"):
        synth.build_world(3, 60, synth.SynthParams(scene_pool=4, object_pool=8, modes_per_class=3))
    with pytest.raises(ValueError, match="at most one"):
        synth.build_world(3, 60, synth.SynthParams(scene_pool=16, concept_pool=24))


def test_scene_classes_are_unions_of_conjunctions_that_neither_the_mean_nor_a_linear_frame_score_sees(tmp_path):
    """Scene mode: a class is one of two (scene, object) modes in the same frames; a decoy shows a cross pair. A
    detector of the class's modes (max over frames of the weaker of scene and object, max over modes) beats the
    mean-pooled ridge and the ridge's weights applied per frame by a wide margin: the structure is a union of
    conjunctions that a linear score, pooled or per frame, cannot separate from the cross pairs."""
    classes = 60
    params = synth.SynthParams(scene_pool=16, object_pool=32, segment_fraction=(0.05, 0.15), evidence_amplitude=6.0,
                               zipf_exponent=0.5)
    world, eval_frames, y_eval, w, mean_gap = _mean_pool_ridge_probe(str(tmp_path), 1500, classes, params)
    frame_gap = gap_at_k(np.stack([np.sort(f @ w, axis=0)[-3:].mean(0) for f in eval_frames]), y_eval)
    scenes, objects = world.scenes[world.class_modes[..., 0]], world.objects[world.class_modes[..., 1]]

    def modes(frames):
        centred = frames - frames.mean(0)
        both = np.minimum(np.einsum("td,cmd->tcm", centred, scenes), np.einsum("td,cmd->tcm", centred, objects))
        return np.sort(both, axis=0)[-3:].mean(0).max(-1)

    mode_gap = gap_at_k(np.stack([modes(f) for f in eval_frames]), y_eval)
    print(f"GAP@20 mean-pool {mean_gap:.3f} frame {frame_gap:.3f} modes {mode_gap:.3f}")
    assert mode_gap > mean_gap + 0.2
    assert mode_gap > frame_gap + 0.2
