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
