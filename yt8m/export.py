"""Export one or many Keras members as ONE SavedModel serving raw SequenceExamples.

The graph is a ``tf.Module`` (not Keras ``model.export``, which writes every weight
twice): it holds each member's weights, optionally uint8 min-max quantized per output
channel (dequantized inside the graph), and calls each member through
``model.stateless_call`` with those values. Signatures:

- ``serving_default(serialized: string[B])`` -> ``{"scores": float32[B, C], "video_id": string[B]}``
- ``predict_features(rgb [B, F, 1024], audio [B, F, 128], num_frames [B])`` -> ``{"scores"}``

Frames beyond 300 follow ONE rule everywhere (``yt8m.validation.feature_frames``, in-graph
``yt8m.transform.first_frames``): a video-level member's features are the means of the FIRST
``schema.MAX_FRAMES`` dequantized frames, accumulated in float64 and rounded to float32 exactly as
the dataset's tensorflow-transform graph computes the video-level shards it trained on
(``video_features``); a frame-level member sees its first ``member_max_frames`` frames, as the
trainer's reader does. So a member served raw records scores what it scored in training.

Scores are the weighted average of the members' probabilities. With ``tta=True`` each
frame-level member's probability is itself the mean over the 6 test-time variants of the
video (full, first half, second half, each forward and reversed; ``yt8m.augment``);
video-level members are unaffected.
"""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.trackable import data_structures

from yt8m import augment, readers, schema, storage
from yt8m.models import registry

DEFAULT_QUANTIZE_MIN_ELEMENTS = 17_000


@dataclasses.dataclass
class Member:
    """A trained model and how to call it: its family's input level and its config."""

    name: str
    model: keras.Model
    input_level: str
    config: dict


class QuantizedTensor(tf.Module):
    """uint8 min-max quantization per last-axis channel: ``w = q * scale + offset``."""

    def __init__(self, value: np.ndarray, name: str):
        super().__init__(name=name)
        value = np.asarray(value, np.float32)
        flat = value.reshape(-1, value.shape[-1]) if value.ndim > 1 else value.reshape(-1, 1)
        lo, hi = flat.min(axis=0), flat.max(axis=0)
        scale = np.where(hi > lo, (hi - lo) / 255.0, 1.0).astype(np.float32)
        q = np.round((flat - lo) / scale).clip(0, 255).astype(np.uint8)
        self.shape = value.shape
        self.q = tf.Variable(q.reshape(value.shape) if value.ndim > 1 else q.reshape(-1), trainable=False,
                             name="q")
        self.scale = tf.Variable(scale if value.ndim > 1 else scale.reshape(()), trainable=False, name="scale")
        self.offset = tf.Variable(lo if value.ndim > 1 else lo.reshape(()), trainable=False, name="offset")

    def dequantize(self):
        return tf.cast(self.q, tf.float32) * self.scale + self.offset


def _stored_weight(value: np.ndarray, name: str, quantize_min_elements: int | None):
    if quantize_min_elements is not None and value.dtype == np.float32 and value.size > quantize_min_elements:
        return QuantizedTensor(value, name)
    return tf.Variable(value, trainable=False, name=name)


def _read(weight):
    return weight.dequantize() if isinstance(weight, QuantizedTensor) else tf.convert_to_tensor(weight)


def member_max_frames(input_level: str, max_frames: int | None = None) -> int:
    """The leading frames a member's features see (THE frames-beyond-300 rule, ``validation.feature_frames``).

    Video-level: always the first ``schema.MAX_FRAMES`` (the means of the dataset's video-level shards,
    ``yt8m.transform``); frame-level: the first ``min(max_frames, schema.MAX_FRAMES)`` (the trainer's reader).
    """
    if input_level == "video" or max_frames is None:
        return schema.MAX_FRAMES
    return max(1, min(int(max_frames), schema.MAX_FRAMES))


def video_features(rgb, audio, num_frames) -> dict:
    """Video-level features of decoded frames ``[B, F, D]``: means of the first ``MAX_FRAMES`` valid frames.

    The same arithmetic as ``yt8m.transform`` (``first_frames`` + ``_video_mean``): float32 dequantized
    frames summed in float64 (exact for <= 300 frames whatever the order), divided by the frame count in
    float64, rounded once to float32. Frames beyond ``num_frames`` are masked out.
    """
    rgb, audio = rgb[:, :schema.MAX_FRAMES], audio[:, :schema.MAX_FRAMES]
    n = tf.minimum(tf.cast(num_frames, tf.int32), schema.MAX_FRAMES)
    mask = tf.sequence_mask(n, tf.shape(rgb)[1], dtype=tf.float64)[:, :, None]
    denom = tf.maximum(tf.cast(n, tf.float64), 1.0)[:, None]

    def mean(x):
        return tf.cast(tf.reduce_sum(tf.cast(x, tf.float64) * mask, axis=1) / denom, tf.float32)

    return {"mean_rgb": mean(rgb), "mean_audio": mean(audio)}


_video_features = video_features  # the former private name


def _first_frames(rgb, audio, num_frames, frames: int):
    """The member's view of a decoded batch: its first ``frames`` frames (zero-padded, as the reader gives)."""
    return rgb[:, :frames], audio[:, :frames], tf.minimum(tf.cast(num_frames, tf.int32), frames)


class ServingModule(tf.Module):
    """The exported graph: members' (optionally quantized) weights + a weighted-average combiner."""

    def __init__(self, members: list[Member], member_weights: list[float] | None = None,
                 quantize_min_elements: int | None = None, max_frames: int = schema.MAX_FRAMES,
                 tta: bool = False):
        super().__init__(name="yt8m_serving")
        self.tta = bool(tta)
        if not members:
            raise ValueError("an export needs at least one member")
        weights = np.asarray(member_weights or [1.0] * len(members), np.float64)
        if len(weights) != len(members) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"member weights must be {len(members)} non-negative numbers with a positive sum")
        self.max_frames = max_frames
        # Each member's frames (the one rule: member_max_frames); records are decoded once, to the most any needs.
        self.member_frames = [member_max_frames(m.input_level, min(int(max_frames), _config_max_frames(m)))
                              for m in members]
        self.decode_frames = max(self.member_frames)
        # Keras models are kept out of the object graph: only the weights below are saved.
        self._members = data_structures.NoDependency(list(members))
        self.combiner_weights = tf.constant((weights / weights.sum()).astype(np.float32))
        self.trainable_weights_by_member = []
        self.non_trainable_weights_by_member = []
        for i, m in enumerate(members):
            self.trainable_weights_by_member.append(
                [_stored_weight(v.numpy(), f"m{i}_t{j}", quantize_min_elements)
                 for j, v in enumerate(m.model.trainable_variables)])
            self.non_trainable_weights_by_member.append(
                [_stored_weight(v.numpy(), f"m{i}_n{j}", quantize_min_elements)
                 for j, v in enumerate(m.model.non_trainable_variables)])
        self.num_classes = int(members[0].model.output_shape[-1])
        self.metadata = tf.constant(json.dumps({"members": [{"name": m.name, "config": m.config} for m in members],
                                                "weights": weights.tolist(),
                                                "member_frames": self.member_frames,
                                                "quantize_min_elements": quantize_min_elements,
                                                "tta": self.tta}))

    def _frame_inputs(self, rgb, audio, num_frames, frames: int, cache: dict) -> dict:
        if frames not in cache:
            r, a, n = _first_frames(rgb, audio, num_frames, frames)
            if self.tta:
                r, a, n = augment.tta_variants(r, a, n)
            cache[frames] = {"rgb": r, "audio": a, "num_frames": n}
        return cache[frames]

    def score(self, rgb, audio, num_frames):
        frame_inputs: dict = {}
        video_inputs = None
        total = 0.0
        for i, member in enumerate(self._members):
            if member.input_level == "video":
                video_inputs = video_inputs or video_features(rgb, audio, num_frames)
                inputs = video_inputs
            else:
                inputs = self._frame_inputs(rgb, audio, num_frames, self.member_frames[i], frame_inputs)
            trainable = [_read(w) for w in self.trainable_weights_by_member[i]]
            non_trainable = [_read(w) for w in self.non_trainable_weights_by_member[i]]
            probs, _ = member.model.stateless_call(trainable, non_trainable, inputs, training=False)
            if self.tta and member.input_level == "frame":
                probs = tf.reduce_mean(tf.reshape(probs, [augment.NUM_TTA_VARIANTS, -1, self.num_classes]), axis=0)
            total = total + self.combiner_weights[i] * probs
        return total

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="serialized")])
    def serve(self, serialized):
        ids, rgb, audio, num_frames, _ = readers.decode_frame_batch(serialized, self.decode_frames)
        return {"scores": self.score(rgb, audio, num_frames), "video_id": ids}

    @tf.function(input_signature=[tf.TensorSpec([None, None, schema.RGB_SIZE], tf.float32, name="rgb"),
                                  tf.TensorSpec([None, None, schema.AUDIO_SIZE], tf.float32, name="audio"),
                                  tf.TensorSpec([None], tf.int32, name="num_frames")])
    def predict_features(self, rgb, audio, num_frames):
        return {"scores": self.score(rgb, audio, num_frames)}


def _config_max_frames(member: Member) -> int:
    """The member's training ``max_frames`` (from its config), ``MAX_FRAMES`` when the config does not say."""
    training = (member.config or {}).get("training") or {}
    return int(training.get("max_frames", schema.MAX_FRAMES))


def export_serving_model(members: list[Member], export_dir: str, member_weights: list[float] | None = None,
                         quantize_min_elements: int | None = None, max_frames: int = schema.MAX_FRAMES,
                         tta: bool = False) -> int:
    """Write the SavedModel to ``export_dir``; return its size in bytes (``tta``: see the module doc)."""
    module = ServingModule(members, member_weights, quantize_min_elements, max_frames, tta)
    tf.saved_model.save(module, export_dir,
                        signatures={"serving_default": module.serve, "predict_features": module.predict_features})
    return storage.directory_size(export_dir)


def member_from_weights(name: str, config: dict, weights_path: str, num_classes: int) -> Member:
    """Rebuild a member from its model config (``family``, ``preset``, ``overrides``) and saved weights."""
    family = registry.get_family(config["family"])
    model = registry.build_model(config["family"], num_classes, config.get("preset", "small"),
                                 config.get("overrides"))
    model.load_weights(weights_path)
    return Member(name, model, family.input_level, config)


def load_serving_model(export_dir: str):
    """The serving function of an exported model: ``fn(serialized) -> {"scores", "video_id"}``."""
    return tf.saved_model.load(export_dir).signatures["serving_default"]
