import numpy as np
import pytest
import tensorflow as tf

from yt8m import compression


def _weights(shape=(300, 128), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * rng.uniform(0.01, 0.2, shape[-1])).astype(np.float32)


def test_uint8_error_is_at_most_half_a_step_per_channel():
    w = _weights()
    back = compression.roundtrip(w, "uint8", 1000)
    step = (w.max(axis=0) - w.min(axis=0)) / 255
    assert (np.abs(back - w) <= step / 2 + 1e-6).all()
    assert np.abs(back - w).max() > 0  # it did quantize


def test_float16_relative_error_is_within_half_an_ulp():
    w = _weights()
    back = compression.roundtrip(w, "float16", 1000)
    assert np.abs(back - w).max() > 0
    assert (np.abs(back - w) <= np.abs(w) * 2.0 ** -11 + 2.0 ** -25).all()


def test_codebook_has_256_levels_and_beats_the_uniform_min_max_codebook():
    w = _weights((400, 300), seed=1)
    arrays = compression.encode(w, "codebook")
    assert arrays["q"].dtype == np.uint8 and arrays["q"].shape == w.shape
    assert arrays["centroids"].shape == (256,) and arrays["centroids"].dtype == np.float32
    back = compression.roundtrip(w, "codebook", 1000)
    assert np.unique(back).size <= 256
    uniform = np.linspace(w.min(), w.max(), 256)
    nearest = uniform[np.abs(w.ravel()[:, None] - uniform[None]).argmin(axis=1)].reshape(w.shape)
    assert np.mean((back - w) ** 2) < np.mean((nearest - w) ** 2)
    # each value goes to its nearest centroid
    c = arrays["centroids"]
    assert (np.abs(back - w) <= np.abs(w[..., None] - c).min(axis=-1) + 1e-7).all()


def test_codebook_is_deterministic_and_exact_on_few_distinct_values():
    w = _weights((200, 100), seed=2)
    np.testing.assert_array_equal(compression.encode(w, "codebook")["centroids"],
                                  compression.encode(w.copy(), "codebook")["centroids"])
    few = np.random.default_rng(3).choice(np.linspace(-1, 1, 50).astype(np.float32), (300, 70))
    np.testing.assert_array_equal(compression.roundtrip(few, "codebook", 1000), few)


@pytest.mark.parametrize("method", ["none", "float16", "uint8", "codebook"])
def test_in_graph_storage_decodes_exactly_as_numpy(method):
    w = _weights((150, 130), seed=4)
    stored = compression.stored_weight(w, "w", method, 1000)
    np.testing.assert_array_equal(compression.read(stored).numpy(), compression.roundtrip(w, method, 1000))
    vector = _weights((20_000,), seed=5)  # a 1-D tensor is one channel
    stored = compression.stored_weight(vector, "v", method, 17_000)
    np.testing.assert_array_equal(compression.read(stored).numpy(), compression.roundtrip(vector, method, 17_000))


def test_small_and_non_float32_tensors_stay_as_they_are():
    small = _weights((100, 170))  # 17,000 elements: not above the threshold
    assert isinstance(compression.stored_weight(small, "s", "uint8", 17_000), tf.Variable)
    np.testing.assert_array_equal(compression.roundtrip(small, "codebook", 17_000), small)
    ints = np.arange(40_000, dtype=np.int64)
    assert compression.applies(ints, "uint8", 17_000) == "none"
    with pytest.raises(ValueError, match="compression: expected one of"):
        compression.check_method("int4")


def test_size_report_names_every_tensor_and_8_bit_methods_are_about_4x_smaller():
    tensors = [("big", _weights((1024, 512))), ("bias", np.zeros(512, np.float32)), ("step", np.zeros((), np.int64))]
    fp32 = compression.tensor_report(tensors, "none")
    assert [r["name"] for r in fp32] == ["big", "bias", "step"]
    assert fp32[0] == {"name": "big", "shape": [1024, 512], "method": "none", "bytes": 1024 * 512 * 4,
                       "fp32_bytes": 1024 * 512 * 4}
    for method, ratio in (("uint8", 3.9), ("codebook", 3.9), ("float16", 1.99)):
        rows = compression.tensor_report(tensors, method)
        assert rows[0]["method"] == method and rows[1]["method"] == "none" and rows[2]["method"] == "none"
        assert compression.report_bytes(fp32) / compression.report_bytes(rows) >= ratio
    assert compression.tensor_report(tensors, "uint8")[0]["bytes"] == 1024 * 512 + 8 * 512
    assert compression.tensor_report(tensors, "codebook")[0]["bytes"] == 1024 * 512 + 1024


@pytest.mark.parametrize("method", ["uint8", "codebook", "float16"])
def test_train_verb_exports_with_the_compression_option(tmp_path, capsys, method):
    import os

    import yaml

    from tests.helpers import random_video, write_videos
    from yt8m import export, readers
    from yt8m_pipeline import cli

    rng = np.random.default_rng(0)
    data = str(tmp_path / "train.tfrecord")
    records = write_videos(data, [random_video(rng, f"t{i}", 8, 30) for i in range(16)])
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "m", "family": "moe", "preset": "small",
                                      "training": {"epochs": 1, "batch_size": 8}}))
    out = str(tmp_path / method)
    argv = ["train", "--config", str(config), "--data", data, "--output", out, "--num-classes", "30"]
    assert cli.main(argv + ["--compression", method]) == 0
    assert f"MB ({method})" in capsys.readouterr().out
    stored = set(tf.train.load_checkpoint(os.path.join(out, "saved_model", "variables", "variables"))
                 .get_variable_to_dtype_map().values())
    assert (tf.float16 in stored) == (method == "float16") and (tf.uint8 in stored) == (method != "float16")
    # served scores = the model with its weights decoded as numpy decodes them
    member = export.member_from_weights("m", {"family": "moe", "preset": "small"},
                                        os.path.join(out, "model.weights.h5"), 30)
    for v in member.model.weights:
        v.assign(compression.roundtrip(v.numpy(), method, 17_000))
    ids, rgb, audio, n, _ = readers.decode_frame_batch(tf.constant(records), 300)
    means = {k: np.stack([x[i, :n[i]].astype(np.float64).mean(0) for i in range(len(n))]).astype(np.float32)
             for k, x in (("mean_rgb", rgb.numpy()), ("mean_audio", audio.numpy()))}
    served = export.load_serving_model(os.path.join(out, "saved_model"))(serialized=tf.constant(records))
    np.testing.assert_allclose(served["scores"].numpy(), member.model(means, training=False).numpy(), atol=1e-5)
