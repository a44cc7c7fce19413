"""Synthetic YouTube-8M frame-level data in the real format, with learnable structure.

``generate(out_dir, videos, classes, seed)`` writes, for each split,
``out_dir/<split>/<split>-0000i-of-0000N.tfrecord`` (SequenceExamples exactly like the
2018 frame-level release: context ``id`` + ``labels``, one 1024-byte ``rgb`` and one
128-byte ``audio`` value per frame), ``out_dir/oracle/<split>_clean_labels.csv`` (the
labels before label noise) and ``out_dir/synth.json`` (every parameter, the counts and
the class prior). It streams: one video is in memory at a time, so it can write many GB.

What a video contains (``SynthParams`` holds the numbers):

* **Labels.** Class frequencies follow a Zipf law (class 0 is the most frequent, as in
  the YT8M vocabulary). A video has 1 + Poisson(2) clean labels (~3 on average); the
  first is drawn from the prior, each further one preferentially from the same cluster
  ("vertical") as the first, so labels are correlated.
* **Evidence.** Every class ``c`` owns two orthogonal unit directions ``u_c``, ``v_c``
  (in the rgb dimensions, or in the audio dimensions for the ~10% audio-only classes).
  A positive class adds ``a * (u_c + v_c)`` to the frames of ONE contiguous segment
  covering 10-35% of the video (evidence follows the CLEAN labels). A *decoy* (on
  average one prior-drawn non-label class per video) adds
  ``a * u_c`` in one segment and ``a * v_c`` in another, non-overlapping one: its
  mean-pooled vector looks like a positive's, but no single frame holds both halves.
  Mean pooling therefore learns the class only up to its decoys; a frame-level model
  that looks for the conjunction inside a frame does clearly better.
* **Concepts** (``concept_pool`` > 0, off by default). Classes are combinations of shared
  concepts instead: ``concept_pool`` unit directions in the rgb dimensions (an eighth as many in
  the audio dimensions, for the audio-only classes) and each class a distinct set of
  ``concepts_per_class`` of them. A positive shows each of its class's concepts in a segment of
  its own (placed independently, so they rarely share frames), a decoy one of its concepts only.
  A concept alone says little (it belongs to several classes); a class is the co-occurrence of its
  concepts somewhere in the video: evidence that neither the frame mean (a linear model sees a
  sum of concepts) nor a per-frame detector (no frame holds the combination) captures, and that
  per-frame detectors pooled over time and then combined non-linearly can (frame_conv_max; the
  zoo's NetVLAD did not learn it in the screen, README "A third member").
* **Scenes** (``scene_pool`` > 0, off by default). A class looks different in different places: it
  has ``modes_per_class`` appearance modes, each an OBJECT shown in a SCENE (``scene_pool`` scene
  and ``object_pool`` object unit directions in the rgb dimensions, a quarter as many (>= 8 / 16) in
  the audio dimensions for the audio-only classes; every (scene, object) pair is the mode of at
  most one class, and a class's modes have distinct scenes and distinct objects). A positive shows
  one of its modes, scene and object in the same frames of one segment; a decoy shows a CROSS pair
  of a non-label class (the scene of one of its modes with the object of another), and every video
  has class-free segments of random scenes (``background_scenes_per_video``). Scenes and objects
  are shared, so a class is a union of conjunctions: the frame mean and a per-frame linear score
  both rate a cross pair like a mode; a per-frame non-linear detector (or a residual per scene
  cluster, NetVLAD's encoding) does not.
* **Nuisance.** A per-video style offset (low-rank + isotropic), per-shot offsets,
  class-free "distractor" segments and i.i.d. per-frame Gaussian noise; values stay
  mostly inside [-2, 2] and are quantized exactly like ``schema.quantize``.
* **Lengths.** 90% of videos have 30-300 frames, 10% have 301-420 (readers truncate to
  ``schema.MAX_FRAMES``); ~160 frames on average.
* **Label noise.** Each clean label is missed with probability 0.1 (at least one label
  is always kept) and a spurious prior-drawn class is added with probability 0.1. The
  records carry the noisy labels; the oracle CSVs carry the clean ones.

Every video is a pure function of ``(seed, classes, index)`` (its own seeded RNG; its id
also depends on the dataset size), so the output is byte-for-byte reproducible and could
be generated in parallel (``iter_videos``). ``build_world`` exposes the class directions
for oracle-style analyses.

Measured here (2 cores, one used): ~450-600 videos/s, ~90-115 MB/s at ~160 frames/video.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import functools
import io
import json
import logging
import math
import sys
import time
import zlib
from statistics import NormalDist
from typing import Iterator, NamedTuple, Sequence

import numpy as np
from tqdm.auto import tqdm

from yt8m import schema, storage, wire, writers

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
FEATURE_DIM = schema.RGB_SIZE + schema.AUDIO_SIZE  # 1152
_RGB_DIMS, _AUDIO_DIMS = slice(0, schema.RGB_SIZE), slice(schema.RGB_SIZE, FEATURE_DIM)
DEFAULT_SPLITS = (("train", 0.8), ("validate", 0.1), ("test", 0.1))


@dataclasses.dataclass(frozen=True)
class SynthParams:
    """Every knob of the generator (all recorded in ``synth.json``)."""

    # Labels.
    zipf_exponent: float = 1.0  # prior of the class of rank r is proportional to (r + zipf_offset) ** -exponent
    zipf_offset: float = 2.0
    mean_labels: float = 3.0  # clean labels per video: 1 + Poisson(mean_labels - 1), capped
    max_labels: int = 20
    cluster_size: int = 12  # classes per cluster ("vertical")
    same_cluster_prob: float = 0.7  # an extra label comes from the first label's cluster
    audio_only_fraction: float = 0.1
    # Evidence.
    segment_fraction: tuple[float, float] = (0.10, 0.35)  # of the video's frames, per segment
    evidence_amplitude: float = 2.5  # along each unit direction (per-frame noise std is noise_std)
    amplitude_jitter: float = 0.25  # per video and class: amplitude * U(1 - j, 1 + j)
    decoys_per_video: float = 1.0  # Poisson mean; decoy classes drawn from the prior
    concept_pool: int = 0  # > 0: classes are combinations of shared concepts (see the module docstring)
    concepts_per_class: int = 2
    scene_pool: int = 0  # > 0: classes are appearance modes, objects in scenes (see the module docstring)
    object_pool: int = 64
    modes_per_class: int = 2
    background_scenes_per_video: float = 2.0  # Poisson mean, scene mode only
    distractor_pool: int = 64  # class-free directions
    distractors_per_video: float = 2.0  # Poisson mean
    # Nuisance.
    noise_std: float = 0.7
    style_rank: int = 16
    style_lowrank_std: float = 0.25  # per dimension, on average
    style_iso_std: float = 0.08
    shot_std: float = 0.10
    mean_shot_frames: float = 40.0
    # Lengths.
    min_frames: int = 30
    max_short_frames: int = 300
    short_length_beta: tuple[float, float] = (1.6, 2.4)
    long_fraction: float = 0.1
    long_frames: tuple[int, int] = (301, 420)
    # Label noise.
    miss_prob: float = 0.1
    spurious_prob: float = 0.1


DEFAULT_PARAMS = SynthParams()


# --------------------------------------------------------------------------- world


@dataclasses.dataclass
class World:
    """Everything shared by all videos of a dataset; a pure function of (seed, classes, params)."""

    classes: int
    prior: np.ndarray  # float64 [C], sums to 1
    cluster: np.ndarray  # int64 [C]
    audio_only: np.ndarray  # bool [C]
    u: np.ndarray  # float32 [C, 1152], unit rows
    v: np.ndarray  # float32 [C, 1152], unit rows, orthogonal to u
    style_basis: np.ndarray  # float32 [R, 1152]
    distractors: np.ndarray  # float32 [P, 1152], unit rows
    concepts: np.ndarray = dataclasses.field(repr=False, default=None)  # float32 [K, 1152], unit rows (concept mode)
    class_concepts: np.ndarray = dataclasses.field(repr=False, default=None)  # int64 [C, concepts_per_class]
    scenes: np.ndarray = dataclasses.field(repr=False, default=None)  # float32 [S, 1152], unit rows (scene mode)
    objects: np.ndarray = dataclasses.field(repr=False, default=None)  # float32 [O, 1152], unit rows (scene mode)
    class_modes: np.ndarray = dataclasses.field(repr=False, default=None)  # int64 [C, modes_per_class, 2]
    cdf: np.ndarray = dataclasses.field(repr=False, default=None)
    members: list = dataclasses.field(repr=False, default=None)  # per cluster: class ids
    member_cdfs: list = dataclasses.field(repr=False, default=None)


def class_prior(classes: int, params: SynthParams = DEFAULT_PARAMS) -> np.ndarray:
    """The Zipf prior over classes (float64, sums to 1, decreasing with the class id)."""
    ranks = np.arange(classes, dtype=np.float64)
    weights = (ranks + params.zipf_offset) ** -params.zipf_exponent
    return weights / weights.sum()


def build_world(seed: int, classes: int, params: SynthParams = DEFAULT_PARAMS) -> World:
    if classes < 1:
        raise ValueError(f"classes must be >= 1, got {classes}")
    rng = np.random.default_rng([seed, 0, classes])
    prior = class_prior(classes, params)
    n_clusters = max(1, round(classes / params.cluster_size))
    cluster = rng.permutation(np.arange(classes) % n_clusters).astype(np.int64)
    audio_only = np.zeros(classes, dtype=bool)
    n_audio = int(round(params.audio_only_fraction * classes)) if classes > 1 else 0
    audio_only[rng.choice(classes, size=n_audio, replace=False)] = True

    u = np.zeros((classes, FEATURE_DIM), dtype=np.float64)
    v = np.zeros((classes, FEATURE_DIM), dtype=np.float64)
    for span, mask in ((_RGB_DIMS, ~audio_only), (_AUDIO_DIMS, audio_only)):
        n, width = int(mask.sum()), span.stop - span.start
        a = rng.standard_normal((n, width))
        b = rng.standard_normal((n, width))
        a /= np.linalg.norm(a, axis=1, keepdims=True)
        b -= (b * a).sum(axis=1, keepdims=True) * a  # Gram-Schmidt: v orthogonal to u
        b /= np.linalg.norm(b, axis=1, keepdims=True)
        u[np.flatnonzero(mask), span] = a
        v[np.flatnonzero(mask), span] = b

    # Low-rank style: rows scaled so that the per-dimension std is style_lowrank_std.
    style_basis = rng.standard_normal((params.style_rank, FEATURE_DIM)) * (
        params.style_lowrank_std / math.sqrt(max(1, params.style_rank))
    )
    distractors = rng.standard_normal((params.distractor_pool, FEATURE_DIM))
    distractors /= np.linalg.norm(distractors, axis=1, keepdims=True)

    members = [np.flatnonzero(cluster == k) for k in range(n_clusters)]
    member_cdfs = [np.cumsum(prior[m]) / prior[m].sum() for m in members]
    if params.concept_pool and params.scene_pool:
        raise ValueError("concept_pool and scene_pool are two evidence modes: set at most one of them")
    concepts, class_concepts = _concepts(seed, classes, audio_only, params) if params.concept_pool else (None, None)
    scenes, objects, class_modes = _scene_modes(seed, classes, audio_only, params) if params.scene_pool else (None,) * 3
    return World(
        classes=classes,
        prior=prior,
        cluster=cluster,
        audio_only=audio_only,
        u=u.astype(np.float32),
        v=v.astype(np.float32),
        style_basis=style_basis.astype(np.float32),
        distractors=distractors.astype(np.float32),
        cdf=np.cumsum(prior),
        members=members,
        member_cdfs=member_cdfs,
        concepts=concepts,
        class_concepts=class_concepts,
        scenes=scenes,
        objects=objects,
        class_modes=class_modes,
    )


def _unit_rows(rng, rows: int, span: slice) -> np.ndarray:
    """``rows`` random unit directions inside the ``span`` dimensions of the 1,152 (float64)."""
    out = np.zeros((rows, FEATURE_DIM), np.float64)
    draws = rng.standard_normal((rows, span.stop - span.start))
    out[:, span] = draws / np.linalg.norm(draws, axis=1, keepdims=True)
    return out


def _concepts(seed: int, classes: int, audio_only: np.ndarray, params: SynthParams) -> tuple[np.ndarray, np.ndarray]:
    """Concept mode: ``concept_pool`` rgb concepts and an eighth as many (>= 4) audio ones (unit rows), and
    for each class a distinct sorted combination of ``concepts_per_class`` concepts of its modality. Its own
    RNG stream, so the rest of the world is the same as without concepts."""
    k = params.concepts_per_class
    pools = {False: params.concept_pool, True: max(4, params.concept_pool // 8)}
    for is_audio, size in pools.items():
        if k < 1 or k > size or math.comb(size, k) < int((audio_only == is_audio).sum()):
            raise ValueError(f"concept_pool {params.concept_pool} with concepts_per_class {k} has too few "
                             f"{'audio' if is_audio else 'rgb'} combinations for the classes")
    rng = np.random.default_rng([seed, 2, classes])
    concepts = np.concatenate([_unit_rows(rng, pools[False], _RGB_DIMS), _unit_rows(rng, pools[True], _AUDIO_DIMS)])
    class_concepts = np.zeros((classes, k), np.int64)
    taken: set[tuple[int, ...]] = set()
    for c in range(classes):
        size, offset = (pools[True], pools[False]) if audio_only[c] else (pools[False], 0)
        while True:
            combo = tuple(sorted(int(i) + offset for i in rng.choice(size, k, replace=False)))
            if combo not in taken:
                taken.add(combo)
                break
        class_concepts[c] = combo
    return concepts.astype(np.float32), class_concepts


def _scene_modes(seed: int, classes: int, audio_only: np.ndarray, params: SynthParams):
    """Scene mode: the scene and object directions (rgb pools first, then the audio ones) and, for each class,
    ``modes_per_class`` (scene, object) pairs of its modality with distinct scenes and distinct objects, no pair
    used twice in the world. Its own RNG stream, so the rest of the world is the same as without scenes."""
    m = params.modes_per_class
    scene_pools = {False: params.scene_pool, True: max(8, params.scene_pool // 4)}
    object_pools = {False: params.object_pool, True: max(16, params.object_pool // 4)}
    for is_audio in (False, True):
        needed = int((audio_only == is_audio).sum()) * m
        s, o = scene_pools[is_audio], object_pools[is_audio]
        if m < 1 or (needed and (m > s or m > o or s * o < 2 * needed)):
            raise ValueError(f"scene_pool {params.scene_pool} / object_pool {params.object_pool} with "
                             f"modes_per_class {m} has too few {'audio' if is_audio else 'rgb'} (scene, object) "
                             f"pairs for the classes ({s} x {o} for {needed} modes; at most half may be used)")
    rng = np.random.default_rng([seed, 3, classes])
    scenes = np.concatenate([_unit_rows(rng, scene_pools[False], _RGB_DIMS),
                             _unit_rows(rng, scene_pools[True], _AUDIO_DIMS)])
    objects = np.concatenate([_unit_rows(rng, object_pools[False], _RGB_DIMS),
                              _unit_rows(rng, object_pools[True], _AUDIO_DIMS)])
    class_modes = np.zeros((classes, m, 2), np.int64)
    taken: set[tuple[int, int]] = set()
    for c in range(classes):
        is_audio = bool(audio_only[c])
        scene_offset, object_offset = (scene_pools[False], object_pools[False]) if is_audio else (0, 0)
        while True:
            pairs = list(zip((rng.choice(scene_pools[is_audio], m, replace=False) + scene_offset).tolist(),
                             (rng.choice(object_pools[is_audio], m, replace=False) + object_offset).tolist()))
            if not taken.intersection(pairs):
                taken.update(pairs)
                break
        class_modes[c] = pairs
    return scenes.astype(np.float32), objects.astype(np.float32), class_modes


# ---------------------------------------------------------------------- video ids

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


class VideoIds:
    """A seeded bijection index -> id string of ``width`` (>= 4) base-62 characters.

    ``id(i) = digits(a * i + b mod 62**width)`` with each digit position using its own
    shuffled alphabet: unique for every i < 62**width, deterministic, random-looking.
    """

    def __init__(self, seed: int, videos: int):
        self.width = 4
        while 62**self.width < max(1, videos):
            self.width += 1
        self.modulus = 62**self.width
        rng = np.random.default_rng([seed, 2])
        a = int(rng.integers(1, 2**62)) % self.modulus
        # a must be coprime to 62**width = 2**w * 31**w: odd and not a multiple of 31.
        while a % 2 == 0 or a % 31 == 0:
            a = (a + 1) % self.modulus
        self.a, self.b = a, int(rng.integers(0, 2**62)) % self.modulus
        self.alphabets = ["".join(rng.permutation(list(_ALPHABET))) for _ in range(self.width)]

    def __call__(self, index: int) -> str:
        n = (self.a * index + self.b) % self.modulus
        chars = []
        for alphabet in self.alphabets:
            n, d = divmod(n, 62)
            chars.append(alphabet[d])
        return "".join(chars)


# ------------------------------------------------------------------ serialization


_RGB_HEADER = np.frombuffer(wire.frame_header(schema.RGB_SIZE), np.uint8)  # 6 bytes
_AUDIO_HEADER = np.frombuffer(wire.frame_header(schema.AUDIO_SIZE), np.uint8)  # 6 bytes


def _context(video_id: bytes, labels: Sequence[int]) -> bytes:
    id_feature = wire.delimited(b"\x0a", wire.delimited(b"\x0a", video_id))  # Feature.bytes_list
    packed = b"".join(wire.encode_varint(int(l)) for l in labels)
    labels_feature = wire.delimited(b"\x1a", wire.delimited(b"\x0a", packed) if packed else b"")  # Feature.int64_list
    entries = (
        wire.delimited(b"\x0a", b"id") + wire.delimited(b"\x12", id_feature),
        wire.delimited(b"\x0a", b"labels") + wire.delimited(b"\x12", labels_feature),
    )
    return b"".join(wire.delimited(b"\x0a", e) for e in entries)  # Features.feature map, keys sorted


def _serialize(video_id: bytes, labels: Sequence[int], rgb_rows: np.ndarray, audio_rows: np.ndarray) -> bytes:
    """The serialized SequenceExample; byte-identical to
    ``writers.frame_level_example(...).SerializeToString(deterministic=True)``.

    ``rgb_rows`` / ``audio_rows`` are uint8 ``[T, header + size]`` arrays whose first bytes
    are ``_RGB_HEADER`` / ``_AUDIO_HEADER`` and whose rest is the frame's quantized values.
    """
    context = _context(video_id, labels)
    pieces = []
    lists_len = 0
    for name, rows in ((b"audio", audio_rows), (b"rgb", rgb_rows)):  # map keys sorted
        key = wire.delimited(b"\x0a", name)
        entry_len = len(key) + 1 + len(wire.encode_varint(rows.nbytes)) + rows.nbytes
        head = b"\x0a" + wire.encode_varint(entry_len) + key + b"\x12" + wire.encode_varint(rows.nbytes)
        pieces.append((head, memoryview(rows).cast("B")))
        lists_len += len(head) + rows.nbytes
    return b"".join(
        [
            wire.delimited(b"\x0a", context),
            b"\x12" + wire.encode_varint(lists_len),
            pieces[0][0],
            pieces[0][1],
            pieces[1][0],
            pieces[1][1],
        ]
    )


# ------------------------------------------------------------------------ videos


class Video(NamedTuple):
    index: int
    video_id: str
    clean_labels: list[int]  # sorted
    labels: list[int]  # observed (noisy), sorted
    num_frames: int
    record: bytes  # the serialized SequenceExample (carries the noisy labels)


_NOISE_TABLE_SIZE = 65536


@functools.lru_cache(maxsize=1)
def _normal_quantiles() -> np.ndarray:
    """The 65,536 mid-point quantiles of N(0, 1) (float64)."""
    inv_cdf = NormalDist().inv_cdf
    return np.array([inv_cdf((i + 0.5) / _NOISE_TABLE_SIZE) for i in range(_NOISE_TABLE_SIZE)], dtype=np.float64)


class Renderer:
    """Renders videos one at a time into reused buffers (no per-video large allocations).

    ``render(index, video_id)`` is a pure function of ``(seed, world, params, index)`` (and the id).
    """

    def __init__(self, world: World, seed: int, params: SynthParams = DEFAULT_PARAMS):
        self.world, self.seed, self.params = world, seed, params
        max_t = max(params.long_frames[1], params.max_short_frames)
        self._x = np.empty((max_t, FEATURE_DIM), np.float32)
        self._y = np.empty((max_t, FEATURE_DIM), np.float64)
        self._rgb_rows = np.empty((max_t, _RGB_HEADER.size + schema.RGB_SIZE), np.uint8)
        self._audio_rows = np.empty((max_t, _AUDIO_HEADER.size + schema.AUDIO_SIZE), np.uint8)
        self._rgb_rows[:, : _RGB_HEADER.size] = _RGB_HEADER
        self._audio_rows[:, : _AUDIO_HEADER.size] = _AUDIO_HEADER
        # Gaussian noise by table lookup of 16-bit uniforms: exact normal quantiles
        # (tails cut at ~4.3 sigma, irrelevant after clipping to [-2, 2]); ~4x faster.
        self._noise = (_normal_quantiles() * params.noise_std).astype(np.float32)

    # -- pieces -------------------------------------------------------------------

    def _length(self, rng) -> int:
        p = self.params
        if rng.random() < p.long_fraction:
            return int(rng.integers(p.long_frames[0], p.long_frames[1] + 1))
        span = p.max_short_frames - p.min_frames + 1
        return p.min_frames + min(span - 1, int(rng.beta(*p.short_length_beta) * span))

    def _draw_prior(self, rng, exclude: set) -> int | None:
        w = self.world
        if len(exclude) >= w.classes:
            return None
        for _ in range(64):
            c = int(np.searchsorted(w.cdf, rng.random() * w.cdf[-1], side="right"))
            c = min(c, w.classes - 1)
            if c not in exclude:
                return c
        rest = np.setdiff1d(np.arange(w.classes), np.fromiter(exclude, np.int64))
        p = w.prior[rest] / w.prior[rest].sum()
        return int(rest[min(len(rest) - 1, np.searchsorted(np.cumsum(p), rng.random(), side="right"))])

    def _draw_cluster(self, rng, k: int, exclude: set) -> int | None:
        members, cdf = self.world.members[k], self.world.member_cdfs[k]
        if all(int(m) in exclude for m in members):
            return None
        for _ in range(64):
            c = int(members[min(len(members) - 1, np.searchsorted(cdf, rng.random(), side="right"))])
            if c not in exclude:
                return c
        rest = [int(m) for m in members if int(m) not in exclude]
        return rest[int(rng.integers(len(rest)))]

    def _labels(self, rng) -> tuple[list[int], list[int]]:
        p, w = self.params, self.world
        n = min(w.classes, p.max_labels, 1 + int(rng.poisson(max(0.0, p.mean_labels - 1.0))))
        first = self._draw_prior(rng, set())
        chosen = {first}
        k = int(w.cluster[first])
        while len(chosen) < n:
            c = self._draw_cluster(rng, k, chosen) if rng.random() < p.same_cluster_prob else None
            if c is None:
                c = self._draw_prior(rng, chosen)
            chosen.add(c)
        clean = sorted(chosen)
        kept = [c for c in clean if rng.random() >= p.miss_prob]
        if not kept:
            kept = [clean[int(rng.integers(len(clean)))]]
        observed = set(kept)
        if rng.random() < p.spurious_prob:
            extra = self._draw_prior(rng, set(clean))
            if extra is not None:
                observed.add(extra)
        return clean, sorted(observed)

    def _segment(self, rng, t: int, max_len: int | None = None) -> tuple[int, int]:
        lo, hi = self.params.segment_fraction
        length = max(1, int(round(rng.uniform(lo, hi) * t)))
        if max_len is not None:
            length = min(length, max_len)
        start = int(rng.integers(0, t - length + 1))
        return start, start + length

    def _amplitude(self, rng) -> float:
        j = self.params.amplitude_jitter
        return self.params.evidence_amplitude * rng.uniform(1.0 - j, 1.0 + j)

    def _decoy_classes(self, rng, t: int, clean: list[int]) -> Iterator[int]:
        """Poisson(decoys_per_video) distinct prior-drawn non-label classes, drawn one at a time (the caller
        renders each before the next is drawn, so the RNG stream is unchanged)."""
        excluded = set(clean)
        for _ in range(int(rng.poisson(self.params.decoys_per_video)) if t >= 2 else 0):
            c = self._draw_prior(rng, excluded)
            if c is None:
                return
            excluded.add(c)
            yield c

    def _render_directions(self, rng, x: np.ndarray, t: int, clean: list[int]) -> None:
        p, w = self.params, self.world
        # Positives: u_c + v_c in the same frames of one segment.
        for c in clean:
            s, e = self._segment(rng, t)
            a = np.float32(self._amplitude(rng))
            x[s:e] += a * w.u[c]
            x[s:e] += a * w.v[c]

        # Decoys: u_c and v_c in two non-overlapping segments.
        for c in self._decoy_classes(rng, t, clean):
            lo, hi = p.segment_fraction
            l1 = max(1, min(t // 2, int(round(rng.uniform(lo, hi) * t))))
            l2 = max(1, min(t - l1, int(round(rng.uniform(lo, hi) * t))))
            free = t - l1 - l2  # frames left outside both segments
            g1, g2 = sorted(int(g) for g in rng.integers(0, free + 1, size=2))
            s1, s2 = g1, g2 + l1  # segment 1 at [s1, s1 + l1), segment 2 at [s2, s2 + l2), s2 >= s1 + l1
            first, second = (w.u[c], w.v[c]) if rng.random() < 0.5 else (w.v[c], w.u[c])
            a = np.float32(self._amplitude(rng))
            x[s1 : s1 + l1] += a * first
            x[s2 : s2 + l2] += a * second

    def _render_concepts(self, rng, x: np.ndarray, t: int, clean: list[int]) -> None:
        w = self.world
        # Positives: each of the class's concepts in a segment of its own.
        for c in clean:
            for concept in w.class_concepts[c]:
                s, e = self._segment(rng, t)
                x[s:e] += np.float32(self._amplitude(rng)) * w.concepts[concept]
        # Decoys: one concept of a non-label class.
        for c in self._decoy_classes(rng, t, clean):
            concept = w.class_concepts[c][int(rng.integers(w.class_concepts.shape[1]))]
            s, e = self._segment(rng, t)
            x[s:e] += np.float32(self._amplitude(rng)) * w.concepts[concept]

    def _render_scenes(self, rng, x: np.ndarray, t: int, clean: list[int]) -> None:
        w, m = self.world, self.world.class_modes.shape[1]
        # Positives: one of the class's modes, scene and object in the same frames of one segment.
        for c in clean:
            scene, obj = w.class_modes[c, int(rng.integers(m))]
            s, e = self._segment(rng, t)
            x[s:e] += np.float32(self._amplitude(rng)) * w.scenes[scene]
            x[s:e] += np.float32(self._amplitude(rng)) * w.objects[obj]
        # Decoys: a cross pair of a non-label class (a mode's scene with another mode's object), unless that pair
        # is some class's mode.
        for c in self._decoy_classes(rng, t, clean):
            if m < 2:
                continue
            i, j = (int(k) for k in rng.choice(m, 2, replace=False))
            scene, obj = int(w.class_modes[c, i, 0]), int(w.class_modes[c, j, 1])
            s, e = self._segment(rng, t)
            if (scene, obj) in self._modes:
                continue
            x[s:e] += np.float32(self._amplitude(rng)) * w.scenes[scene]
            x[s:e] += np.float32(self._amplitude(rng)) * w.objects[obj]
        # Class-free background: a random scene of either modality, no object.
        for _ in range(int(rng.poisson(self.params.background_scenes_per_video))):
            scene = int(rng.integers(w.scenes.shape[0]))
            s, e = self._segment(rng, t)
            x[s:e] += np.float32(self._amplitude(rng)) * w.scenes[scene]

    @functools.cached_property
    def _modes(self) -> frozenset:
        return frozenset(map(tuple, self.world.class_modes.reshape(-1, 2).tolist()))

    # -- one video ----------------------------------------------------------------

    def render(self, index: int, video_id: str) -> Video:
        p, w = self.params, self.world
        rng = np.random.default_rng([self.seed, 1, w.classes, index])
        t = self._length(rng)
        clean, observed = self._labels(rng)

        x = self._x[:t]
        np.take(self._noise, rng.integers(0, _NOISE_TABLE_SIZE, t * FEATURE_DIM, dtype=np.uint16), out=x.reshape(-1))

        # Style: one offset per video, plus one per shot.
        style = rng.standard_normal(p.style_rank).astype(np.float32) @ w.style_basis
        style += rng.standard_normal(FEATURE_DIM).astype(np.float32) * np.float32(p.style_iso_std)
        n_shots = max(1, min(t, int(rng.poisson(t / p.mean_shot_frames))))
        cuts = np.concatenate([[0], np.sort(rng.choice(np.arange(1, t), n_shots - 1, replace=False)), [t]])
        shots = rng.standard_normal((n_shots, FEATURE_DIM)).astype(np.float32) * np.float32(p.shot_std)
        shots += style
        for k in range(n_shots):
            x[cuts[k] : cuts[k + 1]] += shots[k]

        if w.concepts is not None:
            self._render_concepts(rng, x, t, clean)
        elif w.scenes is not None:
            self._render_scenes(rng, x, t, clean)
        else:
            self._render_directions(rng, x, t, clean)

        # Class-free distractors.
        for _ in range(int(rng.poisson(p.distractors_per_video))):
            d = int(rng.integers(w.distractors.shape[0]))
            s, e = self._segment(rng, t)
            x[s:e] += np.float32(self._amplitude(rng)) * w.distractors[d]

        rgb_rows, audio_rows = self._rgb_rows[:t], self._audio_rows[:t]
        _quantize_into(x, self._y[:t], rgb_rows[:, _RGB_HEADER.size :], audio_rows[:, _AUDIO_HEADER.size :])
        record = _serialize(video_id.encode(), observed, rgb_rows, audio_rows)
        return Video(index, video_id, clean, observed, t, record)


def _quantize_into(x: np.ndarray, work: np.ndarray, rgb_out: np.ndarray, audio_out: np.ndarray) -> None:
    """``schema.quantize(x)`` bit for bit (same float64 ops), in place into the frame rows."""
    np.copyto(work, x)
    np.clip(work, schema.MIN_QUANTIZED_VALUE, schema.MAX_QUANTIZED_VALUE, out=work)
    work -= schema.MIN_QUANTIZED_VALUE
    work *= 255.0 / (schema.MAX_QUANTIZED_VALUE - schema.MIN_QUANTIZED_VALUE)
    np.rint(work, out=work)
    np.copyto(rgb_out, work[:, : schema.RGB_SIZE], casting="unsafe")
    np.copyto(audio_out, work[:, schema.RGB_SIZE :], casting="unsafe")


def split_counts(videos: int, splits) -> list[tuple[str, int]]:
    """Videos per split by largest remainder (fractions are normalised; counts sum to ``videos``)."""
    names = [name for name, _ in splits]
    if len(set(names)) != len(names) or not names:
        raise ValueError(f"split names must be unique and non-empty: {names}")
    fractions = np.array([float(f) for _, f in splits])
    if (fractions < 0).any() or fractions.sum() <= 0:
        raise ValueError(f"split fractions must be >= 0 with a positive sum: {list(fractions)}")
    exact = fractions / fractions.sum() * videos
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: videos - counts.sum()]:
        counts[i] += 1
    return list(zip(names, counts.tolist()))


def iter_videos(
    seed: int, classes: int, start: int, stop: int, videos: int, params: SynthParams = DEFAULT_PARAMS
) -> Iterator[Video]:
    """Videos ``start..stop-1`` of a dataset of ``videos`` videos (ids depend on ``videos``)."""
    renderer = Renderer(build_world(seed, classes, params), seed, params)
    ids = VideoIds(seed, videos)
    for i in range(start, stop):
        yield renderer.render(i, ids(i))


# ---------------------------------------------------------------------- generate


def generate(
    out_dir: str,
    videos: int,
    classes: int,
    seed: int = 0,
    splits=DEFAULT_SPLITS,
    videos_per_shard: int = 500,
    progress: bool = True,
    params: SynthParams = DEFAULT_PARAMS,
) -> dict:
    """Write a synthetic frame-level dataset (see the module docstring); returns ``synth.json``'s content."""
    return _generate(out_dir, videos, classes, seed, splits, videos_per_shard, progress, params)


def _generate(out_dir, videos, classes, seed, splits, videos_per_shard, progress, params: SynthParams) -> dict:
    if videos < 0:
        raise ValueError(f"videos must be >= 0, got {videos}")
    if videos_per_shard < 1:
        raise ValueError(f"videos_per_shard must be >= 1, got {videos_per_shard}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    counts = split_counts(videos, splits)
    world = build_world(seed, classes, params)
    renderer = Renderer(world, seed, params)
    ids = VideoIds(seed, videos)
    oracle_dir = storage.join(out_dir, "oracle")
    storage.gfile.makedirs(oracle_dir)

    started = time.perf_counter()
    split_info: dict = {}
    totals = {"frames": 0, "over_max_frames": 0, "clean_labels": 0, "labels": 0, "missed": 0, "spurious": 0, "bytes": 0}
    label_counts = np.zeros(classes, np.int64)
    bar = tqdm(total=videos, unit="videos", desc=f"synth {videos}x{classes}", disable=not progress, smoothing=0.1)
    index = 0
    for name, count in counts:
        shards = max(1, math.ceil(count / videos_per_shard))
        prefix = storage.join(out_dir, name, name)
        csv_path = storage.join(oracle_dir, f"{name}_clean_labels.csv")
        split_bytes = 0
        with writers.ShardedTFRecordWriter(prefix, shards) as writer, storage.gfile.GFile(csv_path, "w") as csv_file:
            csv_file.write("VideoId,Labels\n")
            lines: list[str] = []
            for _ in range(count):
                video = renderer.render(index, ids(index))
                writer.write(video.record)
                lines.append(f"{video.video_id},{' '.join(map(str, video.clean_labels))}\n")
                if len(lines) >= 1000:
                    csv_file.write("".join(lines))
                    lines.clear()
                totals["frames"] += video.num_frames
                totals["over_max_frames"] += video.num_frames > schema.MAX_FRAMES
                totals["clean_labels"] += len(video.clean_labels)
                totals["labels"] += len(video.labels)
                totals["missed"] += len(set(video.clean_labels) - set(video.labels))
                totals["spurious"] += len(set(video.labels) - set(video.clean_labels))
                label_counts[video.labels] += 1
                split_bytes += len(video.record) + 16  # TFRecord framing: length, 2 CRCs
                index += 1
                bar.update(1)
            csv_file.write("".join(lines))
        totals["bytes"] += split_bytes
        split_info[name] = {
            "videos": count,
            "shards": shards,
            "files": [p.rsplit("/", 1)[-1] for p in writer.paths],
            "clean_labels": f"oracle/{name}_clean_labels.csv",
            "tfrecord_bytes": split_bytes,
        }
    bar.close()
    elapsed = time.perf_counter() - started

    n = max(1, videos)
    info = {
        "generator": "yt8m.synth",
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "videos": videos,
        "classes": classes,
        "videos_per_shard": videos_per_shard,
        "splits": split_info,
        "counts": dict(counts),
        "params": dataclasses.asdict(params),
        "class_prior": world.prior.tolist(),
        "class_cluster": world.cluster.tolist(),
        "audio_only_classes": np.flatnonzero(world.audio_only).tolist(),
        "stats": {
            "frames": totals["frames"],
            "mean_frames": totals["frames"] / n,
            "fraction_over_max_frames": totals["over_max_frames"] / n,
            "mean_clean_labels": totals["clean_labels"] / n,
            "mean_labels": totals["labels"] / n,
            "missed_label_rate": totals["missed"] / max(1, totals["clean_labels"]),
            "spurious_label_rate": totals["spurious"] / n,
            "observed_label_counts": label_counts.tolist(),
            "tfrecord_bytes": totals["bytes"],
        },
    }
    info = json.loads(json.dumps(info))  # the return value is exactly the file's content
    storage.write_json(storage.join(out_dir, "synth.json"), info)
    summary = (
        f"synth: {videos} videos, {classes} classes, seed {seed} -> {out_dir} "
        f"({', '.join(f'{k} {v}' for k, v in counts)}); {totals['bytes'] / 1e6:.1f} MB in {elapsed:.1f} s "
        f"({videos / max(elapsed, 1e-9):.0f} videos/s, {totals['bytes'] / 1e6 / max(elapsed, 1e-9):.1f} MB/s)"
    )
    logger.info(summary)
    if progress:
        print(summary, file=sys.stderr)
    return info


# ------------------------------------------------------------------------ oracle


def read_clean_labels(path: str) -> dict[str, list[int]]:
    """``oracle/<split>_clean_labels.csv`` -> {video id: sorted clean labels}."""
    text = storage.read_text(path)
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header != ["VideoId", "Labels"]:
        raise ValueError(f"{path}: expected header VideoId,Labels, got {header}")
    return {row[0]: [int(l) for l in row[1].split()] for row in reader if row}


def _pair_uniforms(video_ids: list[str], num_classes: int) -> np.ndarray:
    """``[N, C]`` float64 in ``[0, 1)``: a fixed pseudo-random number per (video id, class), whatever the row order."""
    video = np.array([zlib.crc32(v.encode()) for v in video_ids], dtype=np.uint64)[:, None]
    classes = np.arange(num_classes, dtype=np.uint64)[None, :]
    x = video * np.uint64(0x9E3779B97F4A7C15) + classes * np.uint64(0xBF58476D1CE4E5B9)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):  # splitmix64's finalizer
        x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
    x ^= x >> np.uint64(31)
    return (x >> np.uint64(11)).astype(np.float64) / 2.0**53


def oracle_scores(video_ids, clean_labels: dict, class_prior: np.ndarray) -> np.ndarray:
    """Scores ``[N, C]`` float64: ~1.0 on each video's clean labels, elsewhere a tie-breaker
    proportional to the class prior (< 1e-3), i.e. the best any model could do on clean labels.

    Every score carries a tiny fixed jitter per (video id, class) (``_pair_uniforms``): GAP pools every video's
    predictions and ranks ties in row order, so with one shared 1.0 (and one value per class elsewhere) the
    oracle's GAP moved by up to ~0.013 with the order the records were read (thirteenth session: two values per
    generator setting across screens); now it is a function of the ids and labels only.
    """
    prior = np.asarray(class_prior, dtype=np.float64)
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in video_ids]
    jitter = _pair_uniforms(ids, prior.size)
    scores = 1e-4 * prior / max(prior.max(), 1e-300) * (1.0 + 1e-2 * jitter) + 1e-9 * jitter  # prior 0: no tie
    for row, vid in enumerate(ids):
        if vid not in clean_labels:
            raise KeyError(f"video id {vid!r} has no clean labels (wrong split's CSV?)")
        labels = clean_labels[vid]
        scores[row, labels] = 1.0 - 1e-3 * jitter[row, labels]
    return scores  # float64: float32 would round the jitter into new ties


# --------------------------------------------------------------------------- CLI


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write synthetic YouTube-8M frame-level data.")
    parser.add_argument("out_dir")
    parser.add_argument("--videos", type=int, required=True)
    parser.add_argument("--classes", type=int, default=schema.NUM_CLASSES)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos-per-shard", type=int, default=500)
    args = parser.parse_args(argv)
    generate(args.out_dir, args.videos, args.classes, seed=args.seed, videos_per_shard=args.videos_per_shard)


if __name__ == "__main__":
    main()
