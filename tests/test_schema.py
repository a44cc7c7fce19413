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
