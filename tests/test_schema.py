import numpy as np

from yt8m import schema


def test_dequantize_matches_starter_code_formula_for_every_byte():
    q = np.arange(256, dtype=np.uint8)
    expected = q.astype(np.float32) * np.float32(4.0 / 255.0) + np.float32(4.0 / 512.0 - 2.0)
    np.testing.assert_array_equal(schema.dequantize(q), expected)


def test_quantize_clips_rounds_and_inverts_dequantize_within_half_a_step():
    x = np.array([-5.0, -2.0, 0.0, 1.0, 2.0, 7.0])
    q = schema.quantize(x)
    np.testing.assert_array_equal(q, np.round((np.clip(x, -2, 2) + 2) * 255 / 4).astype(np.uint8))
    codes = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(schema.quantize(schema.dequantize(codes)), codes)


def test_dequantized_mean_is_the_mean_of_the_dequantized_frames():
    rng = np.random.default_rng(3)
    q = rng.integers(0, 256, size=(300, 64)).astype(np.uint8)
    for n in (1, 7, 300):
        exact = schema.dequantize(q[:n], np.float64).mean(axis=0)
        mean = schema.dequantized_mean(q[:n].astype(np.int64).sum(axis=0).astype(np.float64), float(n))
        np.testing.assert_allclose(mean, exact, rtol=0, atol=1e-12)
    # every uint8 level comes back from its float32 dequantized value (readers.frame_means relies on it)
    codes = np.arange(256)
    x = schema.dequantize(codes.astype(np.uint8))
    recovered = np.round((x - np.float32(schema.DEQUANTIZE_BIAS)) / np.float32(schema.QUANTIZE_SCALE))
    np.testing.assert_array_equal(recovered, codes)
