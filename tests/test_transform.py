"""yt8m.transform: the in-graph frames rule and dequantization agree with the numpy reference."""

import numpy as np
import tensorflow as tf

from yt8m import schema, transform, validation


def _ragged_frames(videos, size):
    rows = [[bytes(f) for f in v] for v in videos]
    values = tf.RaggedTensor.from_row_lengths(tf.constant([b for r in rows for b in r], tf.string),
                                              tf.ones([sum(map(len, rows))], tf.int64))
    return tf.RaggedTensor.from_row_lengths(values, tf.constant([len(r) for r in rows], tf.int64))


def test_first_frames_and_decode_match_numpy_rule():
    rng = np.random.default_rng(0)
    videos = [rng.integers(0, 256, (t, schema.AUDIO_SIZE), dtype=np.uint8) for t in (3, schema.MAX_FRAMES + 7)]
    decoded = transform.decode_frames(transform.first_frames(_ragged_frames(videos, schema.AUDIO_SIZE)),
                                      schema.AUDIO_SIZE)
    assert decoded.row_lengths().numpy().tolist() == [3, schema.MAX_FRAMES]
    for i, v in enumerate(videos):
        np.testing.assert_array_equal(decoded[i].numpy(), schema.dequantize(validation.feature_frames(v)))


def test_raw_schema_and_outputs_are_named():
    s = transform.raw_schema()
    assert [f.name for f in s.feature] == ["id", "labels", transform.SEQUENCE]
    assert all(name.startswith(transform.STAT_PREFIX) for name in transform.STAT_OUTPUTS)
    assert not set(transform.STAT_OUTPUTS) & {transform.MEAN_RGB, transform.MEAN_AUDIO}


def test_raw_to_inputs_in_graph_equals_numpy_frame_sums():
    rng = np.random.default_rng(1)
    lengths = (3, schema.MAX_FRAMES + 5)
    rgb = [rng.integers(0, 256, (t, schema.RGB_SIZE), dtype=np.uint8) for t in lengths]
    audio = [rng.integers(0, 256, (t, schema.AUDIO_SIZE), dtype=np.uint8) for t in lengths]
    raw = {transform.ID: tf.constant([b"a", b"b"]),
           transform.LABELS: tf.sparse.from_dense(tf.constant([[1, 0], [2, 3]], tf.int64)),
           transform.RGB_KEY: _ragged_frames(rgb, schema.RGB_SIZE),
           transform.AUDIO_KEY: _ragged_frames(audio, schema.AUDIO_SIZE)}
    inputs = transform.raw_to_inputs(raw)
    for i in range(2):
        sums = validation.frame_sums(validation.Video("v", (), rgb[i], audio[i]))
        assert int(inputs[transform.NUM_FRAMES][i]) == sums.num_frames == lengths[i]
        for name, value in zip(transform.INPUT_FEATURES[3:], sums[1:]):
            np.testing.assert_array_equal(inputs[name][i].numpy(), value, err_msg=name)


def test_record_batch_round_trips_through_the_tensor_adapter():
    from tfx_bsl.tfxio import tensor_adapter

    rng = np.random.default_rng(2)
    rows = []
    for i, t in enumerate((1, 7, 400)):
        video = validation.Video(f"v{i}", tuple(range(i)), rng.integers(0, 256, (t, 1024), dtype=np.uint8),
                                 rng.integers(0, 256, (t, 128), dtype=np.uint8))
        rows.append((video.video_id, video.labels) + tuple(validation.frame_sums(video)))
    batch = transform.record_batch(rows)
    tensors = tensor_adapter.TensorAdapter(transform.tensor_adapter_config()).ToBatchTensors(batch)
    assert tensors[transform.ID].numpy().tolist() == [b"v0", b"v1", b"v2"]
    assert tensors[transform.NUM_FRAMES].numpy().tolist() == [1, 7, 400]
    labels = tf.sparse.to_dense(tensors[transform.LABELS], default_value=-1).numpy()
    assert labels.tolist() == [[-1, -1], [0, -1], [0, 1]]
    for i, row in enumerate(rows):
        for j, name in enumerate(transform.INPUT_FEATURES[3:]):
            np.testing.assert_array_equal(tensors[name][i].numpy(), row[3 + j], err_msg=name)


def test_transform_means_and_frame_statistics_from_sums_equal_numpy():
    """The graph's arithmetic on sums (no analyzer): video means and frame mean/var, vs numpy on the frames."""
    rng = np.random.default_rng(4)
    videos = [rng.integers(0, 256, (t, schema.AUDIO_SIZE), dtype=np.uint8) for t in (2, 50, schema.MAX_FRAMES + 9)]
    sums = [validation.frame_sums(validation.Video("v", (), np.zeros((len(v), 1024), np.uint8), v)) for v in videos]
    used = tf.constant([min(len(v), schema.MAX_FRAMES) for v in videos], tf.int64)
    means = transform._dequantized_mean(tf.constant(np.stack([s.audio_sum for s in sums])), used[:, None]).numpy()
    for v, m in zip(videos, means):
        np.testing.assert_allclose(m, schema.dequantize(v[:schema.MAX_FRAMES]).mean(0, dtype=np.float64), atol=1e-6)
    frames = np.concatenate([schema.dequantize(v[:schema.MAX_FRAMES], np.float64) for v in videos])
    total = np.stack([s.audio_sum for s in sums]).astype(np.int64).sum(0)
    total_sq = np.stack([s.audio_sum_sq for s in sums]).astype(np.int64).sum(0)
    mean_q = total / len(frames)
    var_q = total_sq / len(frames) - mean_q ** 2
    np.testing.assert_allclose(mean_q * schema.QUANTIZE_SCALE + schema.DEQUANTIZE_BIAS, frames.mean(0), atol=1e-9)
    np.testing.assert_allclose(var_q * schema.QUANTIZE_SCALE ** 2, frames.var(0), atol=1e-9)
