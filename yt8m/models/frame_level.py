"""Frame-level families: inputs ``rgb`` [F, 1024], ``audio`` [F, 128], ``num_frames``.

Every family pools only the first ``num_frames`` frames (the rest is zero padding), so a
prediction does not depend on how much padding follows. Frame sampling at training time (WILLOW:
300 frames with replacement; starter DBoF: 30) is the reader's job (``training.num_samples``, set
by each published preset's recipe); ``dbof`` also samples at inference as the starter does
(``sample_frames_at_inference``); the other families use every given real frame at inference.

Published presets follow the winners' code and commands (WILLOW 2017, antoine77340/Youtube-8M-WILLOW
``frame_level_models.py`` ``*ModelLF`` and its README commands; starter code google/youtube-8m
``DbofModel``): the joint 1152-d frame L2-normalised then an input BatchNorm before rgb/audio are
split, rgb K clusters and audio K/2 (VLAD/FV) or K/8 (Soft-DBoF), hidden 1024 without ReLU (a bias,
no BN: WILLOW's ``relu=False`` branch), context gating, MoE with 2 mixtures and gating on the output
probabilities. ``sizes`` checks their sizes; each published preset's training recipe (optimizer
settings, batch, frames sampled, steps) is registered beside it (``registry.Family.recipes``). The BNs of
these published presets average their moving statistics as TF-slim's ``slim.batch_norm`` (``bn_momentum``
0.999, its default decay: layers.SLIM_BN_MOMENTUM); the small / cpu / local presets keep Keras' 0.99.

``netvlad``, ``gru`` and ``lstm`` also have a "cpu" preset (recipe ``CPU_TRAINING``): tuned so that
they beat the mean-pooled logistic baseline on synthetic data with segment-local evidence within
a few minutes on 2 CPU cores (benchmarks/bench_family_gap.py). They average windows of 4 frames
(``frame_pool``) so that every frame can be used at training time too; netvlad's keeps the inputs
it was tuned with (rgb and audio L2-normalised separately, no input BN).
"""

from __future__ import annotations

import keras

from yt8m import schema
from yt8m.models.heads import HEAD_SMALL, check_head, classifier_head
from yt8m.models.inputs import frame_inputs
from yt8m.models.layers import (KERAS_BN_MOMENTUM, SLIM_BN_MOMENTUM, DBoF, ContextGating, FeatureSlice, FrameBatchNorm,
                                FrameL2Normalize, FrameMask, GatedSoftDBoF, InferenceFrameSample, MaskedMaxPool,
                                MaskedMeanPool, NetFV, NetRVLAD, NetVLAD, SinusoidalPositions, SoftDBoF,
                                TemporalMeanPool, TransformerEncoderBlock, batch_norm, window_means)
from yt8m.models.registry import register
from yt8m.models.video_level import STARTER_RECIPE, STARTER_SOURCE

# The published presets' head (see heads.classifier_head).
HEAD_PUBLISHED = {"head": "moe", "num_mixtures": 2, "l2": 1e-6, "label_dim": 256, "output_gating": False}

INPUT_L2 = ("joint", "per_modality")

# WILLOW's training recipe (antoine77340/Youtube-8M-WILLOW train.py and README commands): Adam
# (``--optimizer`` default AdamOptimizer), ``--base_learning_rate=0.0002``, ``exponential_decay(lr,
# global_step * batch_size, learning_rate_decay_examples=4000000, learning_rate_decay, staircase=True)``,
# ``clip_gradient_norm=1.0``; ``--learning_rate_decay`` 0.8 where the command passes it, else the
# train.py default 0.9; ``--iterations=300`` frames sampled with replacement (``SampleRandomFrames``);
# ``--max_step`` N is epochs x steps_per_epoch = N.
_WILLOW_ADAM = {"learning_rate": 2e-4, "lr_decay_examples": 4_000_000, "clip_gradient_norm": 1.0}


def _willow_recipe(batch_size: int, lr_decay: float, num_samples: int, max_steps: int) -> dict:
    steps_per_epoch = 10_000
    assert max_steps % steps_per_epoch == 0, max_steps
    return {**_WILLOW_ADAM, "batch_size": batch_size, "lr_decay": lr_decay, "num_samples": num_samples,
            "epochs": max_steps // steps_per_epoch, "steps_per_epoch": steps_per_epoch}


def _late_fusion(inputs):
    """rgb and audio frames, each L2-normalised on its own."""
    return FrameL2Normalize()(inputs["rgb"]), FrameL2Normalize()(inputs["audio"])


def _early_fusion(inputs):
    """The 1152-d concatenated frames, L2-normalised (the reference normalisation)."""
    return FrameL2Normalize()(keras.layers.Concatenate()([inputs["rgb"], inputs["audio"]]))


def _check_input_params(input_l2: str) -> None:
    if input_l2 not in INPUT_L2:
        raise ValueError(f"input_l2 must be one of {', '.join(INPUT_L2)}; got {input_l2!r}")


def _willow_inputs(inputs, num_frames, input_l2: str, input_bn: bool, bn_momentum: float):
    """rgb ``[B, F, 1024]`` and audio ``[B, F, 128]`` frames as WILLOW's models see them.

    ``input_l2="joint"``: WILLOW's train.py L2-normalises the joint frame vector
    (``tf.nn.l2_normalize(model_input_raw, feature_dim)``: rgb and audio together); ``"per_modality"``:
    each modality on its own. ``input_bn``: then WILLOW's ``*ModelLF`` input BatchNorm
    (``add_batch_norm``, scope "input_bn") on the 1152-d frames, before the split
    ``reshaped_input[:, 0:1024]`` / ``reshaped_input[:, 1024:]``.
    """
    _check_input_params(input_l2)
    if input_l2 == "joint":
        x = _early_fusion(inputs)
    else:
        x = keras.layers.Concatenate()(list(_late_fusion(inputs)))
    if input_bn:
        x = FrameBatchNorm(bn_momentum, name="input_bn")(x, num_frames)
    rgb_size, total = schema.RGB_SIZE, schema.RGB_SIZE + schema.AUDIO_SIZE
    return FeatureSlice(0, rgb_size, name="rgb_frames")(x), FeatureSlice(rgb_size, total, name="audio_frames")(x)


def _hidden(x, hidden: int, relu: bool, hidden_bn: bool, context_gating: bool, dropout: float, bn_momentum: float):
    """Pooled features -> hidden FC -> BN (``hidden_bn``) or a bias [-> relu6] [-> context gating].

    WILLOW's ``*ModelLF``: ``if add_batch_norm and relu: slim.batch_norm(..., scope="hidden1_bn")
    else: activation += hidden1_biases`` (biases ~ N(0, 0.01)); the published commands pass
    ``--netvlad_relu=False`` / ``--fv_relu=False`` / ``--dbof_relu=False``, i.e. a bias and no BN.
    The starter's DbofModel: BN then the activation.
    """
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    if hidden_bn:
        x = keras.layers.Dense(hidden, use_bias=False, name="hidden")(x)
        x = batch_norm(bn_momentum, name="hidden_bn")(x)
    else:
        x = keras.layers.Dense(hidden, bias_initializer=keras.initializers.RandomNormal(stddev=0.01),
                               name="hidden")(x)
    if relu:
        x = keras.layers.Activation("relu6")(x)
    if context_gating:
        x = ContextGating(bn_momentum, name="context_gating")(x)
    return x


# Training settings the "cpu" presets were tuned with (their recipes, ``ModelConfig.training`` fields):
# every frame (no sampling, so training and evaluation see the same sequences), Adam 3e-3, batch 32.
CPU_TRAINING = {
    "netvlad": {"epochs": 6, "batch_size": 32, "learning_rate": 0.003, "num_samples": 0, "eval_batch_size": 32},
    "gru": {"epochs": 4, "batch_size": 32, "learning_rate": 0.003, "num_samples": 0, "eval_batch_size": 32},
    "lstm": {"epochs": 4, "batch_size": 32, "learning_rate": 0.003, "num_samples": 0, "eval_batch_size": 32},
}


# ---------------------------------------------------------------- VLAD family (WILLOW 2017)

def _vlad_presets(small_clusters: int, small_audio: int, small_hidden: int, published_clusters: int,
                  small_output_gating: bool) -> dict:
    return {
        "small": {"clusters": small_clusters, "audio_clusters": small_audio, "hidden": small_hidden,
                  "input_l2": "joint", "input_bn": True, "hidden_relu": True, "hidden_bn": True,
                  "context_gating": True, "dropout": 0.0, "frame_pool": 1,
                  **HEAD_SMALL, "output_gating": small_output_gating, "bn_momentum": KERAS_BN_MOMENTUM},
        # NetVLADModelLF / NetFVModelLF: audio cluster_size/2; --netvlad_relu=False / --fv_relu=False
        # (hidden bias, no BN), --gating=True, --moe_prob_gating=True, --moe_l2=1e-6. BN: slim.batch_norm's
        # default decay 0.999 (input_bn, cluster_bn, gating_bn, gating_prob_bn; no call passes a decay).
        "published": {"clusters": published_clusters, "audio_clusters": published_clusters // 2, "hidden": 1024,
                      "input_l2": "joint", "input_bn": True, "hidden_relu": False, "hidden_bn": False,
                      "context_gating": True, "dropout": 0.0, "frame_pool": 1,
                      **HEAD_PUBLISHED, "output_gating": True, "bn_momentum": SLIM_BN_MOMENTUM},
    }


# netvlad's small preset keeps the sizes the local pipeline was tuned with.
NETVLAD_PRESETS = _vlad_presets(16, 8, 256, 256, small_output_gating=False)
# "cpu": tuned to beat mean pooling on synthetic data with segment-local evidence on a 2-core CPU
# (benchmarks/bench_family_gap.py): 4-frame window means, hidden 128, dropout 0.5, sigmoid head, and
# the inputs it was tuned with (rgb / audio L2-normalised separately, no input BN); train with
# CPU_TRAINING["netvlad"] (every frame, num_samples 0), its recipe.
NETVLAD_PRESETS["cpu"] = {**NETVLAD_PRESETS["small"], "hidden": 128, "dropout": 0.5, "frame_pool": 4,
                          "head": "logistic", "input_l2": "per_modality", "input_bn": False}
# "local": the default local run's frame-level member until frame_conv_max "local" replaced it (0.03-0.10 holdout
# GAP better on 100-400 classes in half the time: second_place.py), screened on
# generator settings the "cpu" preset was not tuned on (benchmarks/results/family_gap_screen.md; 200 classes,
# 3,000 videos, label noise 0.2, seed 11: holdout GAP 0.39 vs the mean-pooled logistic's 0.32, oracle 0.78):
# 64 rgb + 32 audio clusters (the "cpu" preset's 16 + 8 are too few conjunction detectors beyond ~25
# classes), hidden 256, WILLOW's inputs (joint L2 + input BN), hidden BN + relu, context gating, MoE head,
# 8-frame window means so every frame is seen at 1/8 of the cost; recipe NETVLAD_LOCAL_TRAINING.
NETVLAD_PRESETS["local"] = {**NETVLAD_PRESETS["small"], "clusters": 64, "audio_clusters": 32, "hidden": 256,
                            "dropout": 0.3, "frame_pool": 8}
# Its recipe: a number of examples seen (not epochs: a 2,000-video dataset gets as many steps as a
# 10,000-video one), every frame, Adam 5e-4 at batch 32 (3e-3 at batch 64 stayed near the prior: GAP 0.26).
# 60,000 examples (family_gap_screen.md, holdout GAP@20 against the converged logistic; the earlier 20,000 was
# under it everywhere): 25 classes 0.764 vs 0.680; 100 classes 0.664 vs 0.598 (0.558 at 20,000); 200 classes,
# flatburst 0.544 vs 0.517 (0.567 at 120,000); 400 classes 0.423 vs 0.469 (0.296 at 20,000; 120,000 also
# 0.423 at three times the time, so no per-class floor).
NETVLAD_LOCAL_TRAINING = {"examples_to_see": 60_000, "batch_size": 32, "learning_rate": 5e-4, "num_samples": 0,
                          "eval_batch_size": 64}
NETRVLAD_PRESETS = _vlad_presets(8, 4, 64, 256, small_output_gating=True)
NETFV_PRESETS = _vlad_presets(8, 4, 64, 128, small_output_gating=True)

# README commands: gated NetVLAD --max_step=700000 (300k was the best single model), gated NetFV and
# gated NetRVLAD (--lightvlad=True) 600000; all --batch_size=80 --iterations=300 --learning_rate_decay=0.8.
NETVLAD_RECIPES = {"published": _willow_recipe(80, 0.8, 300, 700_000), "cpu": CPU_TRAINING["netvlad"],
                   "local": NETVLAD_LOCAL_TRAINING}
NETRVLAD_RECIPES = {"published": _willow_recipe(80, 0.8, 300, 600_000)}
NETFV_RECIPES = {"published": _willow_recipe(80, 0.8, 300, 600_000)}
WILLOW_README = "antoine77340/Youtube-8M-WILLOW README.md + train.py"


def _vlad_model(name: str, pooling, num_classes: int, clusters: int, audio_clusters: int, hidden: int,
                input_l2: str, input_bn: bool, hidden_relu: bool, hidden_bn: bool, context_gating: bool,
                dropout: float, frame_pool: int, head: str, num_mixtures: int, l2: float, label_dim: int,
                output_gating: bool, bn_momentum: float):
    check_head(head)
    inputs = frame_inputs()
    num_frames = inputs["num_frames"]
    rgb, audio = _willow_inputs(inputs, num_frames, input_l2, input_bn, bn_momentum)
    rgb, audio, num_frames = window_means(rgb, audio, num_frames, frame_pool)  # after the per-frame normalisation
    pooled = keras.layers.Concatenate()([
        pooling(clusters, bn_momentum=bn_momentum, name="rgb_pool")(rgb, num_frames),
        pooling(audio_clusters, bn_momentum=bn_momentum, name="audio_pool")(audio, num_frames),
    ])
    x = _hidden(pooled, hidden, hidden_relu, hidden_bn, context_gating, dropout, bn_momentum)
    out = classifier_head(x, num_classes, head, num_mixtures, l2, label_dim, output_gating, bn_momentum)
    return keras.Model(inputs, out, name=name)


@register("netvlad", "frame", NETVLAD_PRESETS,
          "gated NetVLAD (WILLOW 2017 best single model): rgb/audio VLAD, hidden FC, context gating, MoE, "
          "gating on output probabilities (published: K=256, H=1024, 321.5M parameters)",
          recipes=NETVLAD_RECIPES, recipe_sources={"published": WILLOW_README + " (gated NetVLAD)",
                                                   "cpu": "benchmarks/bench_family_gap.py",
                                                   "local": "benchmarks/bench_family_gap.py --screen"})
def netvlad(num_classes: int, **params):
    return _vlad_model("netvlad", NetVLAD, num_classes, **params)


@register("netrvlad", "frame", NETRVLAD_PRESETS,
          "gated NetRVLAD (WILLOW): residual-less VLAD (no cluster centres), otherwise as netvlad (K=256)",
          recipes=NETRVLAD_RECIPES, recipe_sources={"published": WILLOW_README + " (gated NetRVLAD)"})
def netrvlad(num_classes: int, **params):
    return _vlad_model("netrvlad", NetRVLAD, num_classes, **params)


@register("netfv", "frame", NETFV_PRESETS,
          "gated NetFV (WILLOW): first+second order Fisher-vector pooling, otherwise as netvlad (K=128)",
          recipes=NETFV_RECIPES, recipe_sources={"published": WILLOW_README + " (gated NetFV)"})
def netfv(num_classes: int, **params):
    return _vlad_model("netfv", NetFV, num_classes, **params)


# ---------------------------------------------------------------- bags of frames

DBOF_PRESETS = {
    # small keeps what the local run's dbof member was tuned with: no input BN, every frame at inference.
    "small": {"clusters": 64, "hidden": 32, "pooling": "max", "input_bn": False, "hidden_relu": True,
              "hidden_bn": True, "context_gating": False, "dropout": 0.0, "sample_frames_at_inference": 0,
              **HEAD_SMALL, "bn_momentum": KERAS_BN_MOMENTUM},
    # Starter code DbofModel: input BN, 8192 clusters, 1024 hidden (BN then the activation), max pool, MoE
    # (37.6M); 30 frames sampled (--iterations=30) at training AND at evaluation (inside the model). BN:
    # slim.batch_norm's default decay 0.999 (google/youtube-8m frame_level_models.py DbofModel input_bn,
    # cluster_bn, hidden1_bn: no decay passed).
    "published": {"clusters": 8192, "hidden": 1024, "pooling": "max", "input_bn": True, "hidden_relu": True,
                  "hidden_bn": True, "context_gating": False, "dropout": 0.0, "sample_frames_at_inference": 30,
                  **HEAD_PUBLISHED, "bn_momentum": SLIM_BN_MOMENTUM},
}

# The starter's train.py defaults (video_level.STARTER_RECIPE) and frame_level_models.py --iterations 30.
DBOF_RECIPES = {"published": {**STARTER_RECIPE, "num_samples": 30}}


@register("dbof", "frame", DBOF_PRESETS,
          "deep bag of frames (starter code): input BN, per-frame projection to K clusters (BN, relu6), max pool "
          "over frames, hidden FC, MoE; 30 frames sampled at training (reader) and at inference (in the model)",
          recipes=DBOF_RECIPES, recipe_sources={"published": STARTER_SOURCE + " (+ frame_level_models.py "
                                                                               "--iterations 30)"})
def dbof(num_classes: int, clusters: int, hidden: int, pooling: str, input_bn: bool, hidden_relu: bool,
         hidden_bn: bool, context_gating: bool, dropout: float, sample_frames_at_inference: int, head: str,
         num_mixtures: int, l2: float, label_dim: int, output_gating: bool, bn_momentum: float):
    check_head(head)
    if sample_frames_at_inference < 0:
        raise ValueError(f"sample_frames_at_inference must be >= 0 (0: every frame), got {sample_frames_at_inference}")
    inputs = frame_inputs()
    frames, num_frames = _early_fusion(inputs), inputs["num_frames"]
    if sample_frames_at_inference:
        frames, num_frames = InferenceFrameSample(sample_frames_at_inference, name="inference_frame_sample")(
            frames, num_frames)
    if input_bn:
        frames = FrameBatchNorm(bn_momentum, name="input_bn")(frames, num_frames)
    pooled = DBoF(clusters, pooling, bn_momentum, name="dbof_pool")(frames, num_frames)
    x = _hidden(pooled, hidden, hidden_relu, hidden_bn, context_gating, dropout, bn_momentum)
    out = classifier_head(x, num_classes, head, num_mixtures, l2, label_dim, output_gating, bn_momentum)
    return keras.Model(inputs, out, name="dbof")


_SOFT_DBOF_SMALL = {"clusters": 64, "audio_clusters": 8, "hidden": 32, "max_pool": False, "input_l2": "joint",
                    "input_bn": True, "hidden_relu": False, "hidden_bn": True, "dropout": 0.0, **HEAD_SMALL,
                    "bn_momentum": KERAS_BN_MOMENTUM}
SOFT_DBOF_PRESETS = {
    "small": {**_SOFT_DBOF_SMALL, "context_gating": False, "gated_pooling": False},
    # SoftDbofModelLF, README command: --dbof_cluster_size=8000 --dbof_hidden_size=1024 --dbof_relu=False and
    # no --moe_l2 (train.py default 1e-8); audio SoftDBoF cluster_size/8 = 1000 (the code; YT8M_FACTS' 40.8M
    # is the audio-K/2 figure, see sizes.CODE_PARAMETERS). BN: slim.batch_norm's default decay 0.999 (input_bn,
    # SoftDBoF cluster_bn; no call passes a decay).
    "published": {"clusters": 8000, "audio_clusters": 1000, "hidden": 1024, "max_pool": False, "input_l2": "joint",
                  "input_bn": True, "hidden_relu": False, "hidden_bn": False, "dropout": 0.0, "context_gating": False,
                  "gated_pooling": False, **HEAD_PUBLISHED, "l2": 1e-8, "bn_momentum": SLIM_BN_MOMENTUM},
}
GATED_SOFT_DBOF_PRESETS = {
    "small": {**_SOFT_DBOF_SMALL, "context_gating": False, "gated_pooling": True, "output_gating": True},
    # GatedDbofModelLF: GatedDBoF pooling of the rgb frames, SoftDBoF audio cluster_size/8, no hidden gating;
    # README: --dbof_cluster_size=4096 --dbof_hidden_size=1024 --moe_l2=1e-6 --dbof_relu=False. Gating on the
    # output probabilities as the README's inference command (--moe_prob_gating=True, train_dir
    # "gateddboflf-4096-1024-80-0002-300iter-gatedmoe": the member of the published ensemble); the README's
    # training command omits it (see sizes.CODE_PARAMETERS). BN: slim.batch_norm's default decay 0.999 (input_bn,
    # GatedDBoF cluster_bn / gating_bn, gating_prob_bn; no call passes a decay).
    "published": {"clusters": 4096, "audio_clusters": 512, "hidden": 1024, "max_pool": False, "input_l2": "joint",
                  "input_bn": True, "hidden_relu": False, "hidden_bn": False, "dropout": 0.0, "context_gating": False,
                  "gated_pooling": True, **HEAD_PUBLISHED, "output_gating": True, "bn_momentum": SLIM_BN_MOMENTUM},
}
# README: Soft-DBoF --max_step=800000, gated Soft-DBoF 1000000; both --batch_size=80 --iterations=300 and
# the default --learning_rate_decay 0.9.
SOFT_DBOF_RECIPES = {"published": _willow_recipe(80, 0.9, 300, 800_000)}
GATED_SOFT_DBOF_RECIPES = {"published": _willow_recipe(80, 0.9, 300, 1_000_000)}


def _soft_dbof_model(name: str, num_classes: int, clusters: int, audio_clusters: int, hidden: int, max_pool: bool,
                     input_l2: str, input_bn: bool, hidden_relu: bool, hidden_bn: bool, dropout: float,
                     context_gating: bool, gated_pooling: bool, head: str, num_mixtures: int, l2: float,
                     label_dim: int, output_gating: bool, bn_momentum: float):
    check_head(head)
    inputs = frame_inputs()
    num_frames = inputs["num_frames"]
    rgb, audio = _willow_inputs(inputs, num_frames, input_l2, input_bn, bn_momentum)
    if gated_pooling:  # WILLOW's GatedDBoF on the rgb frames (GatedDbofModelLF)
        rgb_pool = GatedSoftDBoF(clusters, bn_momentum, name="rgb_pool")(rgb, num_frames)
    else:
        rgb_pool = SoftDBoF(clusters, max_pool, bn_momentum, name="rgb_pool")(rgb, num_frames)
    audio_pool = SoftDBoF(audio_clusters, max_pool, bn_momentum, name="audio_pool")(audio, num_frames)
    x = _hidden(keras.layers.Concatenate()([rgb_pool, audio_pool]), hidden, hidden_relu, hidden_bn, context_gating,
                dropout, bn_momentum)
    out = classifier_head(x, num_classes, head, num_mixtures, l2, label_dim, output_gating, bn_momentum)
    return keras.Model(inputs, out, name=name)


@register("soft_dbof", "frame", SOFT_DBOF_PRESETS,
          "soft deep bag of frames (WILLOW SoftDbofModelLF): softmax cluster assignment, sum pool over real "
          "frames, L2 norm, hidden FC, MoE (published K=8000, audio K/8)",
          recipes=SOFT_DBOF_RECIPES, recipe_sources={"published": WILLOW_README + " (Soft-DBoW 8000)"})
def soft_dbof(num_classes: int, **params):
    return _soft_dbof_model("soft_dbof", num_classes, **params)


@register("gated_soft_dbof", "frame", GATED_SOFT_DBOF_PRESETS,
          "gated soft-DBoF (WILLOW GatedDbofModelLF): rgb soft assignments sum-pooled and gated by their "
          "max pool, audio Soft-DBoF (K/8), hidden FC, MoE, gating on the output probabilities (published K=4096)",
          recipes=GATED_SOFT_DBOF_RECIPES, recipe_sources={"published": WILLOW_README + " (gated Soft-DBoW 4096)"})
def gated_soft_dbof(num_classes: int, **params):
    return _soft_dbof_model("gated_soft_dbof", num_classes, **params)


# ---------------------------------------------------------------- recurrent

# RNN input options (off in "small" / "published"): ``frame_pool`` averages windows of that many
# consecutive frames before the RNN (fewer, cleaner steps); ``input_projection`` > 0 maps each
# (pooled) frame to that many dims with a bias-free Dense + LayerNormalization (the L2-normalised
# 1152-d frames have tiny per-direction components; the projection makes them O(1)).
_RNN_INPUT_OFF = {"frame_pool": 1, "input_projection": 0}


def _rnn_presets(published_units: int, published_l2: float, gru: bool) -> dict:
    # GRU: ``reset_after=False`` is TF1's GRUCell (the reset gate applied before the recurrent matmul, one
    # bias vector), as WILLOW's GruModel (tf.contrib.rnn.GRUCell); Keras' default True is the cuDNN form.
    def cell(published: bool) -> dict:
        return {"reset_after": not published} if gru else {}

    return {
        "small": {"units": 32, "layers": 2, "bidirectional": False, "state": "last", "dropout": 0.0,
                  **_RNN_INPUT_OFF, **cell(False), **HEAD_SMALL, "bn_momentum": KERAS_BN_MOMENTUM},
        # WILLOW's LstmModel / GruModel: 2 layers, the final state of every layer (TF1 MultiRNNCell with
        # state_is_tuple=False) into MoE: LSTM 2x1024 96.4M, GRU 2x1200 63.5M; state="last" (top layer's
        # final output only, as the starter code) gives 37.1M / 40.3M. MoE L2 as the README commands: GRU
        # --moe_l2=1e-6; LSTM none, so WILLOW's default 1e-8 (video_level_models.py). BN only in the optional
        # output gating (WILLOW's MoeModel gating_prob_bn, slim.batch_norm's default decay 0.999).
        "published": {"units": published_units, "layers": 2, "bidirectional": False, "state": "all",
                      "dropout": 0.0, **_RNN_INPUT_OFF, **cell(True), **HEAD_PUBLISHED, "l2": published_l2,
                      "bn_momentum": SLIM_BN_MOMENTUM},
        # "cpu": tuned to beat mean pooling on synthetic data with segment-local evidence on a 2-core CPU
        # (benchmarks/bench_family_gap.py): 4-frame window means (75 steps for 300 frames), a 64-d
        # projection + LayerNorm, one 64-unit layer, max over its outputs, MoE; train with
        # CPU_TRAINING (every frame, num_samples 0), its recipe.
        "cpu": {"units": 64, "layers": 1, "bidirectional": False, "state": "max", "dropout": 0.0,
                "frame_pool": 4, "input_projection": 64, **cell(False), **HEAD_SMALL, "bn_momentum": KERAS_BN_MOMENTUM},
    }


# README commands: GRU --batch_size=128 --learning_rate_decay=0.9 --max_step=300000, every frame;
# LSTM --batch_size=128 --iterations=150 --lstm_random_sequence=True --max_step=400000 (default decay 0.9).
GRU_RECIPES = {"published": _willow_recipe(128, 0.9, 0, 300_000), "cpu": CPU_TRAINING["gru"]}
LSTM_RECIPES = {"published": _willow_recipe(128, 0.9, 150, 400_000), "cpu": CPU_TRAINING["lstm"]}


def _rnn_model(name: str, cell, num_classes: int, units: int, layers: int, bidirectional: bool, state: str,
               dropout: float, frame_pool: int, input_projection: int, head: str, num_mixtures: int, l2: float,
               label_dim: int, output_gating: bool, bn_momentum: float, **cell_params):
    check_head(head)
    if state not in ("last", "all", "max"):
        raise ValueError(f"state must be 'last' (top layer's final output), 'all' (every layer's final "
                         f"state) or 'max' (max over the top layer's outputs at the real frames); got {state!r}")
    if layers < 1:
        raise ValueError(f"layers must be >= 1, got {layers}")
    if frame_pool < 1 or input_projection < 0:
        raise ValueError(f"need frame_pool >= 1 and input_projection >= 0, got {frame_pool}, {input_projection}")
    inputs = frame_inputs()
    x = _early_fusion(inputs)
    num_frames = inputs["num_frames"]
    if frame_pool > 1:
        x, num_frames = TemporalMeanPool(frame_pool, name="frame_pool")(x, num_frames)
    if input_projection:
        x = keras.layers.Dense(input_projection, use_bias=False, name="input_projection")(x)
        x = keras.layers.LayerNormalization(name="input_norm")(x)
    mask = FrameMask()(x, num_frames)
    finals, states = [], []
    for i in range(layers):
        rnn = cell(units, return_sequences=True, return_state=True, name=f"{name}_{i}", **cell_params)
        if bidirectional:
            rnn = keras.layers.Bidirectional(rnn, name=f"bi{name}_{i}")
        outputs = rnn(x, mask=mask)
        x, layer_states = outputs[0], list(outputs[1:])
        states += layer_states
        per_direction = len(layer_states) // (2 if bidirectional else 1)
        finals = layer_states[::per_direction]  # the h state of each direction
    if state == "max":
        features = [MaskedMaxPool()(x, num_frames)]  # x: the top layer's outputs [B, F, units (x2)]
    else:
        features = finals if state == "last" else states
    features = keras.layers.Concatenate()(features) if len(features) > 1 else features[0]
    if dropout:
        features = keras.layers.Dropout(dropout)(features)
    out = classifier_head(features, num_classes, head, num_mixtures, l2, label_dim, output_gating, bn_momentum)
    return keras.Model(inputs, out, name=name)


@register("lstm", "frame", _rnn_presets(1024, 1e-8, gru=False),
          "stacked LSTM over the real frames (masked), uni- or bidirectional, final state into MoE "
          "(published 2x1024)",
          recipes=LSTM_RECIPES, recipe_sources={"published": WILLOW_README + " (LSTM 2 layers)",
                                                "cpu": "benchmarks/bench_family_gap.py"})
def lstm(num_classes: int, **params):
    return _rnn_model("lstm", keras.layers.LSTM, num_classes, **params)


@register("gru", "frame", _rnn_presets(1200, 1e-6, gru=True),
          "stacked GRU over the real frames (masked), uni- or bidirectional, final state into MoE "
          "(published 2x1200; reset_after=False is TF1's GRUCell)",
          recipes=GRU_RECIPES, recipe_sources={"published": WILLOW_README + " (GRU 2 layers)",
                                               "cpu": "benchmarks/bench_family_gap.py"})
def gru(num_classes: int, **params):
    return _rnn_model("gru", keras.layers.GRU, num_classes, **params)


# ---------------------------------------------------------------- attention

TRANSFORMER_PRESETS = {
    "small": {"width": 32, "layers": 1, "num_heads": 2, "ff_dim": 64, "dropout": 0.0, "positional": True,
              **HEAD_SMALL, "bn_momentum": KERAS_BN_MOMENTUM},
    # No published YT8M figure: a mid-size encoder (~23M parameters at 3,862 classes). No reference code either,
    # so Keras' BN momentum (BN only in the optional output gating).
    "published": {"width": 512, "layers": 4, "num_heads": 8, "ff_dim": 2048, "dropout": 0.1, "positional": True,
                  **HEAD_PUBLISHED, "bn_momentum": KERAS_BN_MOMENTUM},
}


@register("transformer", "frame", TRANSFORMER_PRESETS,
          "transformer encoder over the frames (padding masked as attention keys), masked mean pool, MoE")
def transformer(num_classes: int, width: int, layers: int, num_heads: int, ff_dim: int, dropout: float,
                positional: bool, head: str, num_mixtures: int, l2: float, label_dim: int, output_gating: bool,
                bn_momentum: float):
    check_head(head)
    inputs = frame_inputs()
    x = keras.layers.Dense(width)(_early_fusion(inputs))
    if positional:
        x = SinusoidalPositions()(x)
    for i in range(layers):
        x = TransformerEncoderBlock(num_heads, ff_dim, dropout, name=f"encoder_{i}")(x, inputs["num_frames"])
    x = keras.layers.LayerNormalization(epsilon=1e-6)(x)
    pooled = MaskedMeanPool()(x, inputs["num_frames"])
    out = classifier_head(pooled, num_classes, head, num_mixtures, l2, label_dim, output_gating, bn_momentum)
    return keras.Model(inputs, out, name="transformer")
