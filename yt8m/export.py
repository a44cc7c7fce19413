"""Export one or many Keras members as ONE SavedModel serving raw SequenceExamples.

The graph is a ``tf.Module`` (not Keras ``model.export``, which writes every weight
twice): it holds each member's weights, its large tensors optionally compressed
(``yt8m.compression``: float16, uint8 min-max per channel or a 256-level codebook, decoded
inside the graph; a method per member), and calls each member through
``model.stateless_call`` with those values. Signatures:

- ``serving_default(serialized: string[B])`` -> ``{"scores": float32[B, C], "video_id": string[B]}``
- ``predict_features(rgb [B, F, 1024], audio [B, F, 128], num_frames [B])`` -> ``{"scores"}``

Video-level features are computed by ONE rule, the dataset's: when the export is given the
dataset's tensorflow-transform output (``transform_dir``, ``Dataset.transform_path``), the serving
graph applies that transform_fn itself to the raw records (``yt8m.transform``: the first 300 frames,
``transform.first_frames`` / ``validation.feature_frames``, and the job's own arithmetic), so a
video-level member is served exactly the features of the video-level shards it trained on. Without
it (``yt8m train`` on plain files) the in-graph ``readers.frame_means`` applies the same frames rule and
the same arithmetic (``schema.dequantized_mean`` of the first 300 frames' integer sums: the trainer's
reader computes the same bits); ``predict_features`` takes float frames, not necessarily on the
quantization grid, and averages them in float64. A member trained
on the standardized means (``training.video_features: standardized``) is fed the z outputs of the
same transform_fn, so it needs ``transform_dir`` and has no ``predict_features`` signature. A
frame-level member sees its first ``member_max_frames`` frames, as the trainer's reader does.

Scores are the weighted average of the members' probabilities, or, given a ``stacker``
(``yt8m.stacking.Stacker``, the ``stacking`` combiner), the stacker's scores over the members'
top-k candidates computed by its trees as TensorFlow ops (``stacking.StackerModule``; 0 outside
every member's top k). Test-time augmentation is a per-member switch (``training.tta`` in the
member's config; ``tta=True`` turns it on for every frame-level member): such a member's
probability is the mean over the 6 test-time variants of the video (full, first half, second
half, each forward and reversed; ``yt8m.augment``), as the trainer's predictions
(``training.predict``) compute it; video-level members have no TTA.
"""

from __future__ import annotations

import dataclasses
import json

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.trackable import data_structures

from yt8m import augment, compression, readers, schema, stacking, storage
from yt8m.models import registry

@dataclasses.dataclass
class Member:
    """A trained model and how to call it: its family's input level and its config."""

    name: str
    model: keras.Model
    input_level: str
    config: dict


def member_compressions(members: list, compression_: str | list[str] | None, quantize_min_elements: int | None):
    """One compression method per member (``yt8m.compression.METHODS``) and the element threshold.

    ``compression_`` None keeps the former contract: uint8 when ``quantize_min_elements`` is set, else none.
    """
    if compression_ is None:
        compression_ = "uint8" if quantize_min_elements is not None else "none"
    methods = [compression_] * len(members) if isinstance(compression_, str) else list(compression_)
    if len(methods) != len(members):
        raise ValueError(f"{len(methods)} compression methods for {len(members)} members")
    for i, m in enumerate(methods):
        compression.check_method(m, f"compression[{i}]")
    threshold = compression.DEFAULT_MIN_ELEMENTS if quantize_min_elements is None else int(quantize_min_elements)
    return methods, threshold


def member_tensors(model: keras.Model) -> list[tuple[str, np.ndarray]]:
    """(variable path, value) of a member's weights, in the order the serving graph stores them."""
    return [(v.path, v.numpy()) for v in list(model.trainable_variables) + list(model.non_trainable_variables)]


def size_report(member: Member, method: str, quantize_min_elements: int | None = compression.DEFAULT_MIN_ELEMENTS):
    """``compression.tensor_report`` of a member's weights stored with ``method`` (no export needed)."""
    return compression.tensor_report(member_tensors(member.model), method, quantize_min_elements)


def member_max_frames(input_level: str, max_frames: int | None = None) -> int:
    """The leading frames a member's features see (THE frames-beyond-300 rule, ``validation.feature_frames``).

    Video-level: always the first ``schema.MAX_FRAMES`` (the means of the dataset's video-level shards,
    ``yt8m.transform``); frame-level: the first ``min(max_frames, schema.MAX_FRAMES)`` (the trainer's reader).
    """
    if input_level == "video" or max_frames is None:
        return schema.MAX_FRAMES
    return max(1, min(int(max_frames), schema.MAX_FRAMES))


def _first_frames(rgb, audio, num_frames, frames: int):
    """The member's view of a decoded batch: its first ``frames`` frames (zero-padded, as the reader gives)."""
    return rgb[:, :frames], audio[:, :frames], tf.minimum(tf.cast(num_frames, tf.int32), frames)


class ServingModule(tf.Module):
    """The exported graph: members' (optionally compressed) weights + a weighted-average combiner."""

    def __init__(self, members: list[Member], member_weights: list[float] | None = None,
                 quantize_min_elements: int | None = None, max_frames: int = schema.MAX_FRAMES,
                 tta: bool = False, transform_dir: str | None = None,
                 compression_: str | list[str] | None = None, stacker: stacking.Stacker | None = None):
        super().__init__(name="yt8m_serving")
        if not members:
            raise ValueError("an export needs at least one member")
        # TTA per member: its config's training.tta, or every frame-level member with tta=True.
        self.member_tta = [m.input_level == "frame" and (bool(tta) or member_tta(m)) for m in members]
        self.tta = any(self.member_tta)
        self.stacker = stacking.StackerModule(stacker) if stacker is not None else None
        weights = np.asarray(member_weights or [1.0] * len(members), np.float64)
        if len(weights) != len(members) or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError(f"member weights must be {len(members)} non-negative numbers with a positive sum")
        self.max_frames = max_frames
        # Each member's frames (the one rule: member_max_frames); records are decoded once, to the most any needs.
        self.member_frames = [member_max_frames(m.input_level, min(int(max_frames), _config_max_frames(m)))
                              for m in members]
        self.decode_frames = max(self.member_frames)
        # The dataset's transform_fn (a tf_keras layer around its SavedModel: saved with this module, loaded
        # without tensorflow_transform) computes the video-level members' features from the raw records.
        self.uses_transform = bool(transform_dir) and any(m.input_level == "video" for m in members)
        standardized = [m.name for m in members if member_video_features(m) == "standardized"]
        if standardized and not transform_dir:
            raise ValueError(f"member(s) {', '.join(standardized)} train on standardized video features "
                             "(training.video_features): the export needs the dataset's transform_fn (transform_dir)")
        self.serves_decoded_frames = not standardized
        if standardized:  # their z-scores come from the transform_fn of raw records: no decoded-frames signature
            self.predict_features = None
        if self.uses_transform:
            import tensorflow_transform as tft

            self.transform_layer = tft.TFTransformOutput(transform_dir).transform_features_layer()
        # Keras models are kept out of the object graph: only the weights below are saved.
        self._members = data_structures.NoDependency(list(members))
        self.combiner_weights = tf.constant((weights / weights.sum()).astype(np.float32))
        self.trainable_weights_by_member = []
        self.non_trainable_weights_by_member = []
        methods, threshold = member_compressions(members, compression_, quantize_min_elements)
        for i, (m, method) in enumerate(zip(members, methods)):
            self.trainable_weights_by_member.append(
                [compression.stored_weight(v.numpy(), f"m{i}_t{j}", method, threshold)
                 for j, v in enumerate(m.model.trainable_variables)])
            self.non_trainable_weights_by_member.append(
                [compression.stored_weight(v.numpy(), f"m{i}_n{j}", method, threshold)
                 for j, v in enumerate(m.model.non_trainable_variables)])
        self.num_classes = int(members[0].model.output_shape[-1])
        self.metadata = tf.constant(json.dumps({"members": [{"name": m.name, "config": m.config} for m in members],
                                                "weights": weights.tolist(),
                                                "member_frames": self.member_frames,
                                                "video_features": ("dataset transform_fn" if self.uses_transform
                                                                   else "in-graph video_features"),
                                                "quantize_min_elements": threshold,
                                                "compression": methods,
                                                "tta": self.member_tta,
                                                "combiner": "stacking" if stacker is not None
                                                else "weighted average"}))

    def _frame_inputs(self, rgb, audio, num_frames, frames: int, tta: bool, cache: dict) -> dict:
        if (frames, tta) not in cache:
            r, a, n = _first_frames(rgb, audio, num_frames, frames)
            if tta:
                r, a, n = augment.tta_variants(r, a, n)
            cache[frames, tta] = {"rgb": r, "audio": a, "num_frames": n}
        return cache[frames, tta]

    def _transformed_video_features(self, serialized) -> dict:
        """The dataset's transform_fn applied to the raw records: the video-level shards' features, by
        ``member_video_features`` kind (``"mean"``; ``"standardized"``: the z-scored means)."""
        from yt8m import transform

        out = self.transform_layer(transform.raw_to_inputs(transform_raw_features(serialized)))
        return {"mean": {"mean_rgb": out[transform.MEAN_RGB], "mean_audio": out[transform.MEAN_AUDIO]},
                "standardized": {"mean_rgb": out[transform.MEAN_RGB_Z], "mean_audio": out[transform.MEAN_AUDIO_Z]}}

    def score(self, rgb, audio, num_frames, video_inputs: dict | None = None, quantized_frames: bool = True):
        frame_inputs: dict = {}
        member_probs = []
        for i, member in enumerate(self._members):
            if member.input_level == "video":
                video_inputs = video_inputs or {"mean": readers.frame_means(rgb, audio, num_frames,
                                                                            quantized=quantized_frames)}
                inputs = video_inputs[member_video_features(member)]
            else:
                inputs = self._frame_inputs(rgb, audio, num_frames, self.member_frames[i], self.member_tta[i],
                                            frame_inputs)
            trainable = [compression.read(w) for w in self.trainable_weights_by_member[i]]
            non_trainable = [compression.read(w) for w in self.non_trainable_weights_by_member[i]]
            probs, _ = member.model.stateless_call(trainable, non_trainable, inputs, training=False)
            if self.member_tta[i]:
                probs = tta_mean(probs, self.num_classes)
            member_probs.append(tf.cast(probs, tf.float32))
        if self.stacker is not None:
            return self.stacker(member_probs)
        return tf.add_n([self.combiner_weights[i] * p for i, p in enumerate(member_probs)])

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="serialized")])
    def serve(self, serialized):
        ids, rgb, audio, num_frames, _ = readers.decode_frame_batch(serialized, self.decode_frames)
        video_inputs = None
        if self.uses_transform:
            with tf.control_dependencies([ids]):  # after the reader's record checks
                video_inputs = self._transformed_video_features(serialized)
        return {"scores": self.score(rgb, audio, num_frames, video_inputs), "video_id": ids}

    @tf.function(input_signature=[tf.TensorSpec([None, None, schema.RGB_SIZE], tf.float32, name="rgb"),
                                  tf.TensorSpec([None, None, schema.AUDIO_SIZE], tf.float32, name="audio"),
                                  tf.TensorSpec([None], tf.int32, name="num_frames")])
    def predict_features(self, rgb, audio, num_frames):
        return {"scores": self.score(rgb, audio, num_frames, quantized_frames=False)}  # float frames


def tta_mean(probs, num_classes: int):
    """[6B, C] scores of ``augment.tta_variants`` rows (variant-major) -> their mean per video [B, C]."""
    return tf.reduce_mean(tf.reshape(probs, [augment.NUM_TTA_VARIANTS, -1, num_classes]), axis=0)


def member_tta(member: Member) -> bool:
    """The member's config's ``training.tta`` (6-way test-time augmentation; frame-level families only)."""
    return bool(((member.config or {}).get("training") or {}).get("tta", False))


def transform_raw_features(serialized) -> dict:
    """Serialized frame-level SequenceExamples -> the dataset transform's raw features (``yt8m.transform``
    ``raw_schema()``: ``id``, ``labels`` sparse, rgb/audio RaggedTensors [videos, frames, 1] of frame bytes)."""
    from yt8m import transform

    context, lists, lengths = tf.io.parse_sequence_example(serialized, readers.CONTEXT_FEATURES,
                                                           readers.SEQUENCE_FEATURES)
    out = {transform.ID: context["id"], transform.LABELS: context["labels"]}
    for name, key in (("rgb", transform.RGB_KEY), ("audio", transform.AUDIO_KEY)):
        n = tf.cast(lengths[name], tf.int64)
        flat = tf.RaggedTensor.from_tensor(lists[name], lengths=n).flat_values
        out[key] = tf.RaggedTensor.from_nested_row_lengths(flat, [n, tf.ones_like(flat, tf.int64)])
    return out


def member_video_features(member: Member) -> str:
    """``"mean"`` or ``"standardized"``: the video-level features the member trained on (its config's
    ``training.video_features``)."""
    return str(((member.config or {}).get("training") or {}).get("video_features", "mean"))


def _config_max_frames(member: Member) -> int:
    """The member's training ``max_frames`` (from its config), ``MAX_FRAMES`` when the config does not say."""
    training = (member.config or {}).get("training") or {}
    return int(training.get("max_frames", schema.MAX_FRAMES))


def export_serving_model(members: list[Member], export_dir: str, member_weights: list[float] | None = None,
                         quantize_min_elements: int | None = None, max_frames: int = schema.MAX_FRAMES,
                         tta: bool = False, transform_dir: str | None = None,
                         compression: str | list[str] | None = None, stacker: stacking.Stacker | None = None) -> int:
    """Write the SavedModel to ``export_dir``; return its size in bytes (``tta``, ``transform_dir``: see the
    module doc). ``compression``: one ``yt8m.compression`` method for every member or one per member,
    applied to float32 tensors above ``quantize_min_elements`` (17,000 when None); None keeps the former
    contract (uint8 when ``quantize_min_elements`` is given, else float32). ``stacker``: serve the stacker
    over the members (in their order) instead of the weighted average."""
    module = ServingModule(members, member_weights, quantize_min_elements, max_frames, tta, transform_dir,
                           compression, stacker)
    signatures = {"serving_default": module.serve}
    if module.serves_decoded_frames:
        signatures["predict_features"] = module.predict_features
    tf.saved_model.save(module, export_dir, signatures=signatures)
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
