import json

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import random_video, write_videos
from yt8m import config as config_lib
from yt8m import ensemble, metrics, predictions, readers
from yt8m.models import registry

NUM_CLASSES = 40


def _random_predictions(tmp_path, n=300, c=NUM_CLASSES, members=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = [sorted(rng.choice(c, rng.integers(1, 4), replace=False).tolist()) for _ in range(n)]
    truth = metrics.dense_labels(labels, c)
    ids = [f"v{i}" for i in range(n)]
    dense, paths = [], []
    for m in range(members):
        scores = (rng.uniform(0, 1, (n, c)) + (m + 1) * 0.3 * truth * rng.uniform(0, 1, (n, c))).astype(np.float32)
        order = rng.permutation(n)  # files list videos in their own order
        paths.append(str(tmp_path / f"m{m}.npz"))
        predictions.save_topk(paths[-1], [ids[i] for i in order], scores[order], 20)
        classes, values = metrics.top_k(scores, 20)
        dense.append(predictions.densify_topk(classes, values, c))
    return paths, dense, dict(zip(ids, labels)), truth


def test_topk_table_gap_equals_dense_gap_of_the_weighted_average(tmp_path):
    paths, dense, labels, truth = _random_predictions(tmp_path)
    table = ensemble.topk_table(paths, labels)
    for w in ([1, 0, 0], [0, 0, 1], [1 / 3] * 3, [0.2, 0.5, 0.3]):
        expected = metrics.gap_at_k(sum(wi * d for wi, d in zip(w, dense)), truth)
        assert table.gap(w) == pytest.approx(expected, abs=1e-9)


def test_fitted_weights_are_on_the_simplex_beat_the_average_and_are_deterministic(tmp_path):
    paths, dense, labels, truth = _random_predictions(tmp_path, seed=1)
    table = ensemble.topk_table(paths, labels)
    w, gap = ensemble.fit_weights(table)
    assert (w >= 0).all() and w.sum() == pytest.approx(1.0)
    avg = table.gap(np.full(3, 1 / 3))
    assert gap > avg  # member 2 is much better than member 0: uniform weights are not optimal here
    assert w[2] > w[0]
    assert gap == pytest.approx(metrics.gap_at_k(sum(wi * d for wi, d in zip(w, dense)), truth), abs=1e-9)
    w2, gap2 = ensemble.fit_weights(ensemble.topk_table(paths, labels))
    np.testing.assert_array_equal(w, w2)
    assert gap2 == gap
    # fitted on a strided sample of the videos, reported on all of them
    w3, gap3 = ensemble.fit_weights(table, max_videos=100)
    assert (w3 >= 0).all() and w3.sum() == pytest.approx(1.0) and gap3 == table.gap(w3)
    assert table.sample(100).gap(w3) >= table.sample(100).gap(np.full(3, 1 / 3))


def test_topk_table_refuses_files_that_disagree_on_videos(tmp_path):
    paths, _, labels, _ = _random_predictions(tmp_path, members=2)
    predictions.save_topk(paths[1], ["other"], np.ones((1, NUM_CLASSES), np.float32), 20)
    with pytest.raises(ValueError, match="disagree on videos"):
        ensemble.topk_table(paths, labels)


# ---- build_ensemble end to end: two video-level members, their predictions, the served graph


def _member_dir(root, name, family, seed, records, oof_ids, oof_labels):
    import keras

    keras.utils.set_random_seed(seed)
    model = registry.build_model(family, NUM_CLASSES, "small")
    d = root / name
    d.mkdir()
    model.save_weights(str(d / "model.weights.h5"))
    cfg = config_lib.model_config_from_dict({"name": name, "family": family, "preset": "small"})
    (d / "model_config.yaml").write_text(config_lib.dump_yaml(cfg))
    ids, rgb, audio, num_frames, _ = readers.decode_frame_batch(tf.constant(records), 300)
    n = np.minimum(num_frames.numpy(), 300)
    means = {key: np.stack([x[i, :n[i]].astype(np.float64).mean(axis=0) for i in range(len(n))]).astype(np.float32)
             for key, x in (("mean_rgb", rgb.numpy()), ("mean_audio", audio.numpy()))}
    scores = model(means, training=False).numpy()
    predictions.save_topk(str(d / "holdout_predictions.npz"), [v.decode() for v in ids.numpy()], scores, 20)
    rng = np.random.default_rng(seed)
    oof = rng.uniform(0, 1, (len(oof_ids), NUM_CLASSES)).astype(np.float32)
    oof += (seed + 1) * 0.4 * metrics.dense_labels(oof_labels, NUM_CLASSES)
    predictions.save_topk(str(d / "oof_predictions.npz"), oof_ids, oof, 20)
    (d / "metrics.json").write_text(json.dumps({"name": name, "family": family, "parameters": model.count_params(),
                                                "saved_model_bytes": 0, "oof": {"gap": 0}, "holdout": {"gap": 0}}))
    return str(d)


@pytest.mark.parametrize("combiner,method", [("weighted", "uint8"), ("average", "codebook")])
def test_build_ensemble_serves_the_planned_combiner_and_reports_gap_before_and_after(tmp_path, combiner, method):
    rng = np.random.default_rng(0)
    videos = [random_video(rng, f"h{i}", int(rng.integers(5, 40)), NUM_CLASSES) for i in range(24)]
    holdout_file = str(tmp_path / "holdout.tfrecord")
    records = write_videos(holdout_file, videos)
    holdout_labels = {v[0]: v[1] for v in videos}
    oof_ids = [f"o{i}" for i in range(200)]
    oof_labels = [sorted(rng.choice(NUM_CLASSES, 2, replace=False).tolist()) for _ in oof_ids]
    dirs = [_member_dir(tmp_path, "moe", "moe", 0, records, oof_ids, oof_labels),
            _member_dir(tmp_path, "logistic", "logistic", 1, records, oof_ids, oof_labels)]
    out = tmp_path / "merged"
    report = ensemble.build_ensemble(dirs, str(out), NUM_CLASSES, holdout_labels, dict(zip(oof_ids, oof_labels)),
                                     combiner=combiner, compression=method, holdout_data=[holdout_file])
    # the served fp32 graph equals the combiner computed outside it
    assert report["served_vs_combiner"]["compared"] > 24
    assert report["served_vs_combiner"]["max_abs_diff"] < 1e-5
    assert report["combiner"] == combiner and set(report["combiners"]) == {"average", "weighted", "stacking"}
    assert report["combiners"]["weighted"]["oof_gap"] >= report["combiners"]["average"]["oof_gap"]
    assert report["plan"]["members"] and set(report["plan"]["members"]) <= {"moe", "logistic"}
    assert set(report["plan"]["precisions"]) == {method}
    assert {r["method"] for r in report["tensors"]} == {"none", method}
    assert report["holdout_gap_fp32"] - report["holdout_gap_compressed"] == pytest.approx(
        report["compression_gap_loss"])
    assert abs(report["compression_gap_loss"]) < 0.02
    assert report["compression_ratio"] > 1.5  # tiny members: the graph itself is ~130 KB of the export
    assert report["plan"]["planned_tensor_bytes"] == sum(r["bytes"] for r in report["tensors"])
    assert report["saved_model_bytes"] < report["plan"]["planned_tensor_bytes"] + 1_000_000
    saved = json.loads((out / "ensemble.json").read_text())
    assert saved["oof_gap"] == report["oof_gap"]
    assert (out / "frontier.png").exists() and (out / "plan.json").exists()
    assert (out / "saved_model" / "saved_model.pb").exists() and not (out / "unquantized_saved_model").exists()


@pytest.mark.parametrize("section,message", [
    ({"compression": "int4"}, "run.ensemble.compression: expected one of uint8, codebook, float16, none, got 'int4'"),
    ({"combiner": "boosting"}, "run.ensemble.combiner: expected one of average, weighted, stacking, got 'boosting'"),
    ({"size_budget_bytes": 0}, "run.ensemble.size_budget_bytes: must be >= 1"),
])
def test_ensemble_config_errors_name_the_field(section, message):
    moe = {"name": "moe", "family": "moe"}
    with pytest.raises(config_lib.ConfigError, match=message.replace("(", r"\(")):
        config_lib.run_config_from_dict({"models": [moe], "ensemble": section}, "run")
    cfg = config_lib.run_config_from_dict({"models": [moe]}, "run").ensemble
    assert (cfg.compression, cfg.combiner, cfg.size_budget_bytes) == ("uint8", "average", 1 << 30)
    # the component gets the section as a pipeline parameter, where numbers arrive as floats
    assert config_lib.ensemble_config_from_dict({"size_budget_bytes": 5e8, "combiner": "weighted"}).size_budget_bytes \
        == 500_000_000
    with pytest.raises(config_lib.ConfigError, match="ensemble.compression"):
        config_lib.ensemble_config_from_dict({"compression": "bf16"})


def test_pipeline_passes_the_run_configs_ensemble_section_to_the_ensemble_task(tmp_path):
    import yaml

    from yt8m_pipeline.pipelines import yt8m_pipeline as pipeline_def

    ir = yaml.safe_load(open(pipeline_def.compile_pipeline(str(tmp_path / "p.yaml"))))
    task = ir["root"]["dag"]["tasks"]["ensemble-op"]["inputs"]["parameters"]
    for name in ("combiner", "compression", "size_budget_bytes", "quantize_min_elements", "stacking"):
        assert task[name]["componentInputParameter"] == name
    assert ir["root"]["inputDefinitions"]["parameters"]["compression"]["defaultValue"] == "uint8"
    cfg = config_lib.run_config_from_dict({"models": [{"name": "moe", "family": "moe"}],
                                           "ensemble": {"combiner": "weighted", "compression": "codebook",
                                                        "size_budget_bytes": 500_000_000}})
    from yt8m import fingerprint

    args = pipeline_def.pipeline_arguments(cfg, "gs://b/train*.tfrecord", "", "/tmp/pub", 3862,
                                           data_fingerprint=fingerprint.Fingerprint("p", "sha256:0", 1, 1))
    assert (args["combiner"], args["compression"], args["size_budget_bytes"]) == ("weighted", "codebook",
                                                                                  500_000_000)


def test_build_ensemble_replans_with_the_measured_graph_size_to_stay_under_the_budget(tmp_path):
    rng = np.random.default_rng(1)
    videos = [random_video(rng, f"h{i}", 6, NUM_CLASSES) for i in range(8)]
    records = write_videos(str(tmp_path / "holdout.tfrecord"), videos)
    oof_ids = [f"o{i}" for i in range(100)]
    oof_labels = [sorted(rng.choice(NUM_CLASSES, 2, replace=False).tolist()) for _ in oof_ids]
    dirs = [_member_dir(tmp_path, "moe", "moe", 2, records, oof_ids, oof_labels),
            _member_dir(tmp_path, "logistic", "logistic", 0, records, oof_ids, oof_labels)]
    # uint8 tensors: moe (the better member on OOF) ~232 KB, logistic ~47 KB; the graph itself is > 100 KB.
    # moe fits the default reserve (a tenth of the budget), not the measured graph: the second plan drops it.
    report = ensemble.build_ensemble(dirs, str(tmp_path / "out"), NUM_CLASSES, {v[0]: v[1] for v in videos},
                                     dict(zip(oof_ids, oof_labels)), combiner="average", compression="uint8",
                                     size_budget_bytes=350_000)
    assert report["plan"]["reserve_bytes"] > 35_000 and report["plan"]["measured_graph_bytes"] > 35_000
    assert report["plan"]["members"] == ["logistic"]
    assert report["within_size_budget"] and report["saved_model_bytes"] <= 350_000


def test_build_ensemble_serves_the_stacker_and_writes_its_soft_labels(tmp_path):
    from yt8m import stacking

    rng = np.random.default_rng(3)
    videos = [random_video(rng, f"h{i}", int(rng.integers(5, 40)), NUM_CLASSES) for i in range(32)]
    holdout_file = str(tmp_path / "holdout.tfrecord")
    records = write_videos(holdout_file, videos)
    oof_ids = [f"o{i}" for i in range(400)]
    oof_labels = [sorted(rng.choice(NUM_CLASSES, 2, replace=False).tolist()) for _ in oof_ids]
    dirs = [_member_dir(tmp_path, "moe", "moe", 0, records, oof_ids, oof_labels),
            _member_dir(tmp_path, "logistic", "logistic", 1, records, oof_ids, oof_labels)]
    out = tmp_path / "merged"
    report = ensemble.build_ensemble(dirs, str(out), NUM_CLASSES, {v[0]: v[1] for v in videos},
                                     dict(zip(oof_ids, oof_labels)), combiner="stacking", compression="none",
                                     holdout_data=[holdout_file], soft_labels="topk", soft_label_top_k=20)
    stacked = report["combiners"]["stacking"]
    assert stacked["k"] == 20 and stacked["rounds"] >= 1 and 0 < stacked["oof_gap"] <= 1
    assert report["oof_gap"] == pytest.approx(report["stacker"]["cross_fitted_oof_gap"], abs=1e-12)
    assert stacked["fitted_videos"] == 400
    # the served graph runs the stacker's trees: equal to LightGBM outside the graph where candidates agree
    check = report["served_vs_combiner"]
    assert check["compared"] > 20 * 32 // 2 and check["max_abs_diff"] < 1e-5, check
    assert check["videos"] == 32 and check["videos_with_other_candidates"] < 32
    stacker = stacking.Stacker.load(str(out))
    assert stacker.num_members == len(report["plan"]["members"]) and stacker.k == 20
    # the stacker's cross-fitted OOF scores and its holdout scores, top 20 per video, as teacher files
    oof_teacher = predictions.load_topk(str(out / "teacher" / "oof_teacher.npz"))
    assert oof_teacher["classes"].shape == (400, 20) and sorted(oof_teacher["video_ids"]) == sorted(oof_ids)
    table = ensemble.topk_table([str(out / "teacher" / "oof_teacher.npz")], dict(zip(oof_ids, oof_labels)))
    assert table.gap([1.0]) == pytest.approx(report["oof_gap"], abs=1e-6)  # the cross-fitted scores' GAP@20
    hold = predictions.load_topk(str(out / "teacher" / "holdout_teacher.npz"))
    assert hold["classes"].shape == (32, 20) and (np.diff(hold["scores"], axis=1) <= 0).all()
    soft = report["soft_labels"]
    assert 0 < soft["oof_mass_outside_top_k"] < 1 and soft["oof_top_k_excess_bce_per_video"] > 0


def test_full_soft_labels_hold_every_class_of_every_members_full_predictions(tmp_path):
    """``full``: every class's teacher probability, from the members' every-class predictions (not only the
    classes in their top-20 files), float16, keyed by video id; the top-20 cut is measured against it."""
    rng = np.random.default_rng(4)
    paths, _dense, labels, _truth = _random_predictions(tmp_path, n=50, members=2, seed=4)
    table = ensemble.topk_table(paths, labels)
    members = [rng.uniform(0, 1, (50, NUM_CLASSES)).astype(np.float16) for _ in range(2)]  # rows v0..v49
    rows = np.asarray([int(v[1:]) for v in table.video_ids])
    full = ensemble.full_teacher(table, [(m, rows) for m in members], [0.25, 0.75])
    expected = (0.25 * members[0].astype(np.float32) + 0.75 * members[1].astype(np.float32))[rows]
    np.testing.assert_allclose(full.astype(np.float32), expected, atol=1e-3)
    combined = {"oof": np.where(table.classes >= 0, table.combined([0.25, 0.75]), 0.0)}
    report = ensemble.write_soft_labels({"oof": table}, combined, str(tmp_path / "teacher"), NUM_CLASSES, "full", 20,
                                        full={"oof": full})
    saved = predictions.load_full(report["files"]["oof"])
    assert saved["video_ids"] == table.video_ids and saved["scores"].dtype == np.float16
    np.testing.assert_array_equal(np.asarray(saved["scores"]), full)
    assert (np.asarray(saved["scores"]) > 0).all()  # every class, also those outside every member's top 20
    assert report["oof_bytes"] < 50 * NUM_CLASSES * 2 + 200 and report["bytes_per_video_full"] == 2 * NUM_CLASSES
    # half of 40 uniform scores are outside the top 20: about a quarter of the mass
    assert 0.15 < report["oof_mass_outside_top_k"] < 0.4
    assert report["measured_against"].startswith("every class")
    # a stacker's full teacher: its scores on the candidates, the members' plain average elsewhere
    stacked = np.where(table.classes >= 0, 0.5, 0.0)
    both = ensemble.full_teacher(table, [(m, rows) for m in members], None, stacked)
    r, k = np.nonzero(table.classes >= 0)
    assert (both[r, table.classes[r, k]] == 0.5).all()
    outside = np.ones_like(both, bool)
    outside[r, table.classes[r, k]] = False
    mean = ((members[0].astype(np.float32) + members[1].astype(np.float32)) / 2)[rows]
    np.testing.assert_allclose(both[outside].astype(np.float32), mean[outside], atol=1e-3)


def test_a_stacker_fitted_on_a_sample_scores_every_oof_video_out_of_sample(tmp_path):
    paths, _dense, labels, _truth = _random_predictions(tmp_path, n=400, members=2, seed=5)
    table = ensemble.topk_table(paths, labels)
    sampled = ensemble.fit_stacking(table, labels, NUM_CLASSES, max_videos=250)
    assert sampled.report["fitted_videos"] == 250 and sampled.oof_scores.shape == table.classes.shape
    rows = np.linspace(0, 399, 250).astype(np.int64)
    left_out = np.setdiff1d(np.arange(400), rows)
    # the videos left out of the fit get the final stacker's scores; the sampled ones their cross-fitted scores
    final = ensemble.stacked_scores(sampled, table)
    np.testing.assert_array_equal(sampled.oof_scores[left_out], final[left_out])
    assert not np.array_equal(sampled.oof_scores[rows], final[rows])
    assert sampled.report["oof_gap"] == pytest.approx(ensemble.union_gap(table, sampled.oof_scores))
    whole = ensemble.fit_stacking(table, labels, NUM_CLASSES)
    assert whole.report["fitted_videos"] == 400
    assert whole.report["oof_gap"] == pytest.approx(whole.report["cross_fitted_oof_gap"], abs=1e-12)
