"""Keras input layers of the two input levels."""

from __future__ import annotations

import keras

from yt8m import schema


def video_inputs() -> dict:
    return {"mean_rgb": keras.Input((schema.RGB_SIZE,), name="mean_rgb"),
            "mean_audio": keras.Input((schema.AUDIO_SIZE,), name="mean_audio")}


def frame_inputs() -> dict:
    return {"rgb": keras.Input((None, schema.RGB_SIZE), name="rgb"),
            "audio": keras.Input((None, schema.AUDIO_SIZE), name="audio"),
            "num_frames": keras.Input((), dtype="int32", name="num_frames")}
