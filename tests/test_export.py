import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import independent_sequence_example
from yt8m import export, predictions, readers, scoring, writers
from yt8m.models import registry

NUM_CLASSES = 40


def _member(family, seed):
    import keras

    keras.utils.set_random_seed(seed)
    model = registry.build_model(family, NUM_CLASSES, "small")
    return export.Member(family, model, registry.get_family(family).input_level, {"family": family})


@pytest.fixture(scope="module")
def members():
    return [_member("moe", 0), _member("netvlad", 1)]


@pytest.fixture(scope="module")
def records():
    rng = np.random.default_rng(0)
    out = []
    for i, n in enumerate([3, 120, 301, 40]):
        rgb = rng.integers(0, 256, (n, 1024), np.uint8)
        audio = rng.integers(0, 256, (n, 128), np.uint8)
        out.append((f"vid{i}".encode(), [i], rgb, audio))
    return out


def _in_memory_scores(members, weights, serialized):
    ids, rgb, audio, num_frames, _ = readers.decode_frame_batch(tf.constant(serialized))
    total = 0
    for w, m in zip(weights, members):
        if m.input_level == "video":
            denom = tf.cast(num_frames, tf.float32)[:, None]
            inputs = {"mean_rgb": tf.reduce_sum(rgb, 1) / denom, "mean_audio": tf.reduce_sum(audio, 1) / denom}
        else:
            inputs = {"rgb": rgb, "audio": audio, "num_frames": num_frames}
        total = total + w * m.model(inputs, training=False).numpy()
    return total


def test_merged_graph_serves_raw_records_and_matches_in_memory_ensemble(tmp_path, members, records):
    serialized = [independent_sequence_example(*r) for r in records]
    out_dir = str(tmp_path / "merged")
    export.export_serving_model(members, out_dir, member_weights=[0.25, 0.75])
    served = tf.saved_model.load(out_dir).signatures["serving_default"](serialized=tf.constant(serialized))
    assert served["scores"].shape == (4, NUM_CLASSES)
    assert [v.decode() for v in served["video_id"].numpy()] == ["vid0", "vid1", "vid2", "vid3"]
    np.testing.assert_allclose(served["scores"].numpy(), _in_memory_scores(members, [0.25, 0.75], serialized),
                               atol=1e-5)


def test_uint8_quantization_shrinks_large_tensors_about_4x_and_keeps_scores_close(tmp_path, members, records):
    serialized = tf.constant([writers.frame_level_example(*r).SerializeToString() for r in records])
    fp32 = export.export_serving_model(members, str(tmp_path / "fp32"))
    uint8 = export.export_serving_model(members, str(tmp_path / "uint8"), quantize_min_elements=17_000)
    assert fp32 / uint8 > 3.5
    a = tf.saved_model.load(str(tmp_path / "fp32")).signatures["serving_default"](serialized=serialized)["scores"]
    b = tf.saved_model.load(str(tmp_path / "uint8")).signatures["serving_default"](serialized=serialized)["scores"]
    assert np.abs(a.numpy() - b.numpy()).max() < 0.02
    # the size is the weights' bytes once, not twice (Keras model.export would double it)
    params = sum(int(np.prod(v.shape)) for m in members for v in m.model.weights)
    assert fp32 < params * 4 * 1.3


def test_exported_model_loads_and_scores_in_a_fresh_process(tmp_path, members, records):
    export.export_serving_model(members[:1], str(tmp_path / "m"))
    data = str(tmp_path / "data.tfrecord")
    writers.write_tfrecords(data, [independent_sequence_example(*r) for r in records])
    out = str(tmp_path / "scores.npz")
    subprocess.run([sys.executable, "-P", "-m", "yt8m.scoring", "--model", str(tmp_path / "m"), "--data", data,
                    "--out", out], check=True, capture_output=True)
    z = np.load(out)
    ids, scores, labels = scoring.score_files(str(tmp_path / "m"), data)
    assert list(z["video_ids"]) == ids == ["vid0", "vid1", "vid2", "vid3"]
    np.testing.assert_allclose(z["scores"], scores, atol=1e-6)
    assert labels == [[0], [1], [2], [3]]


def test_export_rejects_bad_member_weights(members, tmp_path):
    with pytest.raises(ValueError, match="non-negative"):
        export.export_serving_model(members, str(tmp_path / "x"), member_weights=[1.0, -1.0])


def _scores_with_roundtripped_weights(members, methods, weights, serialized, threshold=17_000):
    """The in-memory ensemble whose weights went through compression.roundtrip in numpy."""
    from yt8m import compression

    originals = [[v.numpy() for v in m.model.weights] for m in members]
    try:
        for m, method in zip(members, methods):
            for v in m.model.weights:
                v.assign(compression.roundtrip(v.numpy(), method, threshold))
        return _in_memory_scores(members, weights, serialized)
    finally:
        for m, values in zip(members, originals):
            for v, value in zip(m.model.weights, values):
                v.assign(value)


@pytest.mark.parametrize("methods", [["codebook", "float16"], ["float16", "uint8"], ["none", "codebook"]])
def test_served_graph_with_per_member_compression_equals_numpy_decoded_weighted_combination(tmp_path, members,
                                                                                            records, methods):
    serialized = [independent_sequence_example(*r) for r in records]
    out_dir = str(tmp_path / "merged")
    export.export_serving_model(members, out_dir, member_weights=[0.3, 0.7], quantize_min_elements=17_000,
                                compression=methods)
    served = tf.saved_model.load(out_dir).signatures["serving_default"](serialized=tf.constant(serialized))
    expected = _scores_with_roundtripped_weights(members, methods, [0.3, 0.7], serialized)
    np.testing.assert_allclose(served["scores"].numpy(), expected, atol=1e-5)
    reader = tf.train.load_checkpoint(f"{out_dir}/variables/variables")
    stored = set(reader.get_variable_to_dtype_map().values())
    assert (tf.uint8 in stored) == any(m in ("uint8", "codebook") for m in methods)
    assert (tf.float16 in stored) == ("float16" in methods)


def test_float16_halves_and_codebook_quarters_the_export_size_report_predicts_it(tmp_path, members):
    from yt8m import compression

    sizes = {m: export.export_serving_model(members, str(tmp_path / m), compression=m)
             for m in ("none", "float16", "codebook")}
    assert 1.9 < sizes["none"] / sizes["float16"] < 2.05
    assert sizes["none"] / sizes["codebook"] > 3.5
    for method, size in sizes.items():
        planned = sum(compression.report_bytes(export.size_report(m, method)) for m in members)
        assert planned <= size < planned * 1.05 + 2_000_000  # the report is the tensors; the rest is the graph


def test_a_stacker_replaces_the_weighted_sum_in_the_served_graph(members, records, tmp_path):
    """ServingModule(stacker=...): the members' scores go through the stacker's trees (TF ops); the served
    scores equal LightGBM on the same members' top-k candidates, 0 elsewhere."""
    from yt8m import ensemble, stacking

    serialized = [independent_sequence_example(*r) for r in records]
    member_scores = [_in_memory_scores([m], [1.0], serialized) for m in members]
    # a stacker fitted on synthetic OOF tables of the same shape (two members, top 5 of 40 classes)
    rng = np.random.default_rng(3)
    n, k = 300, 5
    labels = {f"o{i}": sorted(rng.choice(NUM_CLASSES, 2, replace=False).tolist()) for i in range(n)}
    paths = []
    for m in range(2):
        scores = rng.uniform(0, 1, (n, NUM_CLASSES)).astype(np.float32)
        for i, lab in enumerate(labels.values()):
            scores[i, lab] += 0.5 * (m + 1) * rng.uniform()
        paths.append(str(tmp_path / f"oof{m}.npz"))
        predictions.save_topk(paths[-1], list(labels), scores, k)
    stacker = ensemble.fit_stacking(ensemble.topk_table(paths, labels), labels, NUM_CLASSES)
    export.export_serving_model(members, str(tmp_path / "stacked"), compression="none", stacker=stacker)
    served = export.load_serving_model(str(tmp_path / "stacked"))(serialized=tf.constant(serialized))["scores"].numpy()
    hold = []
    for m, s in enumerate(member_scores):
        hold.append(str(tmp_path / f"hold{m}.npz"))
        predictions.save_topk(hold[-1], [r[0].decode() for r in records], s, k)
    table = ensemble.topk_table(hold, {r[0].decode(): r[1] for r in records}, k=20)
    expected = ensemble.stacked_scores(stacker, table)
    inside = np.take_along_axis(served, np.maximum(table.classes, 0), axis=1)
    valid = table.classes >= 0
    np.testing.assert_allclose(inside[valid], expected[valid], atol=1e-5)
    assert (served != 0).sum() == valid.sum()  # no member's candidate: 0
    assert isinstance(stacking.StackerModule(stacker), tf.Module)
