"""Configs as data: YAML files validated on load, with errors that name the field.

Two kinds: a ``ModelConfig`` (one training run: family, preset, overrides, schedule) and
a ``RunConfig`` (a whole pipeline run: data, models, ensemble, gate). Recipes later are
just files of these kinds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import typing

import yaml

from yt8m import schema, stacking, storage


class ConfigError(ValueError):
    """A config that does not match its schema; the message names the file and field."""


LR_SCHEDULES = ("staircase", "cosine")


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_decay: float = 0.8  # WILLOW: multiply the learning rate by this ...
    lr_decay_examples: int = 4_000_000  # ... every this many examples
    # "staircase": WILLOW's schedule above; "cosine": from learning_rate down to 0 over the run's planned steps
    # (train_loop.plan_steps), lr_decay and lr_decay_examples unused.
    lr_schedule: str = "staircase"
    clip_gradient_norm: float = 1.0  # per-tensor clip by norm; 0 = no clipping
    num_samples: int = 0  # frames sampled with replacement per video at training time (0 = all)
    max_frames: int = 300
    eval_batch_size: int = 64
    seed: int = 0
    # Steps and checkpoints: a run is epochs * steps_per_epoch steps (0 = ceil(records / batch_size)),
    # or, when examples_to_see is set, ceil(examples_to_see / batch_size) steps whatever the dataset size
    # (a 2,000-video dataset then gets enough steps; epochs is ignored); a checkpoint every
    # checkpoint_every_steps steps (and at the end) lets a killed run resume.
    steps_per_epoch: int = 0
    examples_to_see: int = 0
    # ... or at least examples_per_class x num_classes examples (the larger of the two): a run over more classes
    # sees each class's positives about as often (frame_conv_max local: 0.397 / 0.452 holdout GAP at 400 classes
    # after 60,000 / 120,000 examples; benchmarks/results/family_gap_screen.md)
    examples_per_class: int = 0
    checkpoint_every_steps: int = 1000
    mixed_precision: str = "auto"  # "auto": mixed_float16 when a GPU is visible (float32 on CPU); "off"
    # Recipes (off by default). Frame-level families: per video, with this probability keep one
    # half of the frames (first or second, equally likely) / reverse the frame order.
    half_video_prob: float = 0.0
    reverse_prob: float = 0.0
    # Video-level families: mixup, each example mixed (with this probability) with a random partner,
    # x = l*xi + (1-l)*xj and the labels likewise, l ~ Beta(mixup_alpha, mixup_alpha).
    mixup_prob: float = 0.0
    mixup_alpha: float = 0.4
    # EMA of the weights (0 = off): decay 1 - 1/ema_halflife per step after ema_start_step; the
    # evaluated and exported weights are then the EMA weights.
    ema_halflife: float = 0.0
    ema_start_step: int = 0
    # Distillation (off when empty): top-k teacher scores (predictions.save_topk npz keyed by video id;
    # a relative path is looked up beside the data); loss = w*BCE(p, teacher) + (1-w)*BCE(p, labels).
    teacher_predictions: str = ""
    distill_weight: float = 0.5
    # Also write every class's OOF / holdout probability (predictions.save_full, float16): what an ensemble
    # needs for full soft labels; set for the members and students of a run with distillation.soft_labels full.
    full_predictions: bool = False
    # Video-level families: "mean" (the shards' mean_rgb / mean_audio) or "standardized" (their z-scored
    # mean_rgb_z / mean_audio_z, written by `yt8m preprocess --standardized`; served through the same
    # transform_fn).
    video_features: str = "mean"
    # Frame-level families: 6-way test-time augmentation (full, halves, each reversed; their mean) in
    # this member's OOF / holdout predictions and in the served graph alike.
    tta: bool = False
    # A validation slice (0 = none): 1 in validation_every training records (by a hash of the record's bytes, so
    # the same ones every epoch and rerun) is held out of training and scored (GAP@20) after every epoch. The
    # 2018 2nd place's schedule runs on it (yt8m/plateau.py): the learning rate is multiplied by
    # lr_plateau_factor (0 = off) after more than lr_plateau_patience evaluations without a better GAP, and
    # training stops after more than early_stopping_patience (0 = never) such epochs. With a slice the member's
    # result is the weights of its best evaluation.
    validation_every: int = 0
    lr_plateau_factor: float = 0.0
    lr_plateau_patience: int = 1
    early_stopping_patience: int = 0

    def examples_target(self, num_classes: int) -> int:
        """The examples a run over ``num_classes`` classes sees (0: epochs x steps_per_epoch decide)."""
        return max(self.examples_to_see, self.examples_per_class * num_classes)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str
    family: str
    preset: str = "small"
    overrides: dict = dataclasses.field(default_factory=dict)
    training: TrainingConfig = TrainingConfig()


@dataclasses.dataclass(frozen=True)
class DataConfig:
    num_classes: int = 3862
    folds: int = 5
    holdout_fraction: float = 0.1


ENSEMBLE_COMPRESSIONS = ("uint8", "codebook", "float16", "none")  # yt8m.compression.METHODS
ENSEMBLE_COMBINERS = ("average", "weighted", "stacking")  # yt8m.ensemble.COMBINERS


@dataclasses.dataclass(frozen=True)
class StackingConfig:
    """The LightGBM stacker of ``combiner: stacking`` (its defaults are ``yt8m.stacking``'s)."""
    learning_rate: float = stacking.DEFAULT_PARAMS["learning_rate"]
    max_rounds: int = stacking.MAX_ROUNDS  # boosting rounds at most, each half of the cross-fit ...
    early_stopping_rounds: int = stacking.EARLY_STOPPING_ROUNDS  # ... stopping after this many without progress


@dataclasses.dataclass(frozen=True)
class EnsembleConfig:
    quantize_min_elements: int = 17_000  # float32 tensors with more elements are compressed ...
    compression: str = "uint8"  # ... as: uint8 (min-max per channel) | codebook (256 centroids) | float16 | none
    combiner: str = "average"  # probability average | weighted (non-negative weights fitted on OOF GAP) | stacking
    size_budget_bytes: int = 1 << 30  # the planner picks members and precisions under this (the 2018 1 GB rule)
    top_k_predictions: int = 20
    stacking: StackingConfig = StackingConfig()


@dataclasses.dataclass(frozen=True)
class GateConfig:
    min_gap: float = 0.80
    max_size_bytes: int = 1 << 30  # the 2018 rule: one graph under 1 GB
    # Against the last release (TFX Evaluator's change threshold): the candidate's holdout GAP@20 must
    # be >= the previous published version's GAP on the SAME holdout minus max_gap_drop; the first
    # release must reach a mean-pooled logistic trained on this run's training splits instead.
    compare_with_previous: bool = True
    max_gap_drop: float = 0.0
    # Latency in a fresh process (TFX InfraValidator): seconds to load the SavedModel, and mean
    # milliseconds per video over the holdout batches of 64 records.
    max_load_seconds: float = 600.0
    max_ms_per_video: float = 200.0


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    videos: int = 2000
    classes: int = 100
    seed: int = 0


# ---- Vertex AI: per-task resources, retries, fan-out cap, Model Registry (ignored by kfp.local
# except the retries). Full-scale settings are the defaults.

ACCELERATOR_TYPES = ("NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_H100_80GB", "NVIDIA_L4", "NVIDIA_TESLA_T4",
                     "NVIDIA_TESLA_V100")


@dataclasses.dataclass(frozen=True)
class TaskResources:
    """A task's CPU and memory limits, as kfp ``set_cpu_limit`` / ``set_memory_limit`` take them."""
    cpu: str = "4"  # cores ("8", "0.5") or millicores ("500m")
    memory: str = "16G"  # a number with an optional unit: K, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti


@dataclasses.dataclass(frozen=True)
class TrainResources:
    """A training task (each fold and each final member is one): CPU, memory and its GPUs."""
    cpu: str = "8"
    memory: str = "32G"
    accelerator_type: str = "NVIDIA_L4"  # one of ACCELERATOR_TYPES
    accelerator_count: int = 1  # 0: CPU only (accelerator_type is then ignored)


@dataclasses.dataclass(frozen=True)
class ResourcesConfig:
    preprocess: TaskResources = TaskResources(cpu="8", memory="32G")
    train: TrainResources = TrainResources()
    collect: TaskResources = TaskResources(cpu="4", memory="16G")  # gathers the folds' out-of-fold files
    # The ensemble and the gate hold every member in fp32 (~1.2 GB each at the published presets)
    # next to the merged graph and TensorFlow's own copies while exporting / loading.
    ensemble: TaskResources = TaskResources(cpu="16", memory="64G")
    gate: TaskResources = TaskResources(cpu="16", memory="64G")
    publish: TaskResources = TaskResources(cpu="8", memory="32G")


@dataclasses.dataclass(frozen=True)
class RetryConfig:
    """kfp ``set_retry`` on every training task (spot/preemptible GPUs). A retried task on Vertex
    gets the same output URI, so it resumes from the checkpoints the trainer writes there."""
    num_retries: int = 3
    backoff_duration: str = "60s"  # wait before the first retry; then times backoff_factor each retry
    backoff_factor: float = 2.0
    backoff_max_duration: str = "3600s"


@dataclasses.dataclass(frozen=True)
class ModelRegistryConfig:
    """Runs submitted to Vertex upload each published version to the Vertex AI Model Registry as a
    new version of ONE model (local runs never do)."""
    register: bool = True
    model_id: str = "yt8m"  # the Vertex model's ID; the first upload creates it
    display_name: str = "yt8m-ensemble"
    # The newest TensorFlow serving image google-cloud-aiplatform 1.165 lists. The model is saved by
    # TensorFlow 2.21: check that this image loads it before deploying (or use a custom image).
    serving_image: str = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"


DATAFLOW_RUNNERS = ("local", "dataflow")


@dataclasses.dataclass(frozen=True)
class DataflowConfig:
    """Where the preprocessing Beam job runs in a Vertex run (the pipeline graph is chosen at compile time).

    ``local``: inside the preprocess task, on Beam's local runner (the only choice under kfp.local,
    which ignores this section). ``dataflow``: launched on Dataflow from a Flex Template
    (``flex_template``, built with ``yt8m_pipeline.dataflow.flex_template_build_command``) whose
    launcher and workers run the project's Dataflow image; the pipeline waits for the job and
    registers its output as the Dataset artifact. Empty strings take the defaults below.
    """
    runner: str = "local"  # one of DATAFLOW_RUNNERS
    flex_template: str = ""  # gs:// path of the Flex Template spec (required with runner dataflow)
    project: str = ""  # default: the project the run is submitted to
    region: str = ""  # default: the region the run is submitted to
    machine_type: str = "n2-highmem-8"  # Dataflow workers (the duplicate-id grouping and TFT hold records)
    max_workers: int = 50
    temp_location: str = ""  # gs://; default <pipeline root>/dataflow/<run id>/tmp
    staging_location: str = ""  # gs://; default <pipeline root>/dataflow/<run id>/staging
    service_account: str = ""  # the workers' service account (infra: `terraform output dataflow_service_account`);
    # default: the project's Compute Engine default service account
    worker_image: str = ""  # launcher and worker image; default: the dataflow image of yt8m_pipeline/images.py


@dataclasses.dataclass(frozen=True)
class VertexConfig:
    resources: ResourcesConfig = ResourcesConfig()
    training_retry: RetryConfig = RetryConfig()
    parallelism: int = 8  # at most this many training tasks at once (the GPU quota)
    model_registry: ModelRegistryConfig = ModelRegistryConfig()
    dataflow: DataflowConfig = DataflowConfig()


SOFT_LABELS = ("topk", "full")  # yt8m.ensemble.SOFT_LABELS
DISTILLATION_KEEP = ("best", "students")  # yt8m.distill_round.RULES


@dataclasses.dataclass(frozen=True)
class DistillationConfig:
    """Rounds of distillation (issue 15; off with rounds 0): round n's students train on the soft labels of
    round n-1's ensemble (round 1: the members' ensemble) with the mixed loss, and are ensembled in turn."""

    rounds: int = 0
    students: tuple[ModelConfig, ...] = ()
    # topk: each video's top_k classes | full: every class's probability (the members then also write their
    # full OOF/holdout predictions, training.full_predictions; float16, 7,724 bytes per video at 3,862 classes)
    soft_labels: str = "topk"
    top_k: int = 20
    distill_weight: float = 0.5  # the students' training.distill_weight unless they set their own
    # best: a round's students replace their teacher only when their ensemble's served holdout GAP@20 is higher,
    # else the round passes the teacher on (its model and soft labels) | students: always the students
    # (yt8m/distill_round.py says why holdout: the students' OOF GAP is inflated)
    keep: str = "best"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    models: tuple[ModelConfig, ...]
    data: DataConfig = DataConfig()
    ensemble: EnsembleConfig = EnsembleConfig()
    distillation: DistillationConfig = DistillationConfig()
    gate: GateConfig = GateConfig()
    synth: SynthConfig = SynthConfig()
    vertex: VertexConfig = VertexConfig()


def needs_standardized_features(cfg: RunConfig) -> bool:
    """Whether the run's preprocessing must also write the z-scored means (``mean_rgb_z``, ``mean_audio_z``):
    some member, or some student of a run with distillation rounds, has ``training.video_features:
    standardized``. The pipeline's ``standardized_features`` parameter (``yt8m preprocess --standardized``)."""
    trained = [*cfg.models, *(cfg.distillation.students if cfg.distillation.rounds else ())]
    return any(m.training.video_features == "standardized" for m in trained)


def _build(cls, raw, where: str):
    """Instantiate dataclass ``cls`` from a mapping, checking keys and types."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, field in fields.items():
        if name not in raw:
            if field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{where}: missing required field '{name}'")
            continue
        values[name] = _coerce(hints[name], raw[name], f"{where}.{name}")
    return cls(**values)


def _coerce(hint, value, where: str):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item,) = typing.get_args(hint)[:1]
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: expected a non-empty list")
        return tuple(_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value))
    if hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite(float(value), where)
    if hint is float and isinstance(value, str):
        try:
            number = float(value)  # YAML reads 1e-3 as a string
        except ValueError:
            pass
        else:
            return _finite(number, where)
    if hint is bool and isinstance(value, bool):
        return value
    if hint in (int, str) and isinstance(value, hint) and not isinstance(value, bool):
        return value
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)  # pipeline parameters travel as protobuf Struct, where every number is a float
    raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")


def _finite(value: float, where: str) -> float:
    if not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number, got {value!r}")
    return value


def _check_range(where: str, value, low=None, high=None, low_open: bool = False) -> None:
    """``low <= value <= high`` (``low < value`` when ``low_open``), else a ConfigError naming the field."""
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and value > high
    if too_low or too_high:
        lower = "" if low is None else f"{'>' if low_open else '>='} {low}"
        upper = "" if high is None else f"<= {high}"
        bounds = " and ".join(b for b in (lower, upper) if b)
        raise ConfigError(f"{where}: must be {bounds}, got {value!r}")


def _check_model(model: ModelConfig, where: str) -> ModelConfig:
    from yt8m.models import registry  # keras import only when models are checked

    try:
        defaults = registry.resolve_params(model.family, model.preset)
        registry.resolve_params(model.family, model.preset, model.overrides)
    except KeyError as exc:
        raise ConfigError(f"{where}: {exc.args[0]}") from None
    # Pipeline parameters travel as protobuf Struct, where every number is a float: give
    # integer-valued overrides back the integer type of the preset's value.
    overrides = {k: int(v) if isinstance(defaults[k], int) and not isinstance(defaults[k], bool)
                 and isinstance(v, float) and v.is_integer() else v for k, v in model.overrides.items()}
    model = dataclasses.replace(model, overrides=overrides)
    t = model.training
    for name in ("epochs", "batch_size", "max_frames", "eval_batch_size"):
        if getattr(t, name) < 1:
            raise ConfigError(f"{where}.training.{name}: must be >= 1, got {getattr(t, name)}")
    if t.max_frames > schema.MAX_FRAMES:  # THE frames rule: features see the first 300 frames only
        raise ConfigError(f"{where}.training.max_frames: must be <= {schema.MAX_FRAMES} (models see the first "
                          f"{schema.MAX_FRAMES} frames of a video), got {t.max_frames}")
    _check_range(f"{where}.training.learning_rate", t.learning_rate, 0, low_open=True)
    _check_range(f"{where}.training.lr_decay", t.lr_decay, 0, 1, low_open=True)
    if t.lr_schedule not in LR_SCHEDULES:
        raise ConfigError(f"{where}.training.lr_schedule: must be one of {', '.join(LR_SCHEDULES)}, "
                          f"got {t.lr_schedule!r}")
    _check_recipes(t, registry.get_family(model.family).input_level, model.family, f"{where}.training")
    if not model.name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"{where}.name: use letters, digits, '-' and '_' only, got {model.name!r}")
    return model


def _check_recipes(t: TrainingConfig, input_level: str, family: str, where: str) -> None:
    """The trainer's fields: ranges, and recipes that only make sense at one input level."""
    for name in ("num_samples", "steps_per_epoch", "ema_start_step", "examples_to_see", "examples_per_class"):
        if getattr(t, name) < 0:
            raise ConfigError(f"{where}.{name}: must be >= 0, got {getattr(t, name)}")
    for name in ("checkpoint_every_steps", "lr_decay_examples"):
        if getattr(t, name) < 1:
            raise ConfigError(f"{where}.{name}: must be >= 1, got {getattr(t, name)}")
    if t.clip_gradient_norm < 0:
        raise ConfigError(f"{where}.clip_gradient_norm: must be >= 0 (0 = no clipping), got {t.clip_gradient_norm}")
    for name in ("half_video_prob", "reverse_prob", "mixup_prob", "distill_weight"):
        if not 0.0 <= getattr(t, name) <= 1.0:
            raise ConfigError(f"{where}.{name}: must be in [0, 1], got {getattr(t, name)}")
    if t.mixup_alpha <= 0:
        raise ConfigError(f"{where}.mixup_alpha: must be > 0, got {t.mixup_alpha}")
    if t.ema_halflife != 0 and t.ema_halflife < 1:
        raise ConfigError(f"{where}.ema_halflife: must be 0 (off) or >= 1 step, got {t.ema_halflife}")
    for name in ("validation_every", "lr_plateau_patience", "early_stopping_patience"):
        if getattr(t, name) < 0:
            raise ConfigError(f"{where}.{name}: must be >= 0, got {getattr(t, name)}")
    if t.validation_every == 1:
        raise ConfigError(f"{where}.validation_every: 1 would hold out every record; use 0 (no validation) or >= 2")
    if not 0.0 <= t.lr_plateau_factor < 1.0:
        raise ConfigError(f"{where}.lr_plateau_factor: must be in [0, 1) (0 = off), got {t.lr_plateau_factor}")
    if (t.lr_plateau_factor or t.early_stopping_patience) and not t.validation_every:
        raise ConfigError(f"{where}: lr_plateau_factor and early_stopping_patience follow a validation slice; set "
                          "validation_every (e.g. 20: 1 in 20 training records)")
    if t.mixed_precision not in ("auto", "off"):
        raise ConfigError(f"{where}.mixed_precision: must be 'auto' or 'off', got {t.mixed_precision!r}")
    if t.video_features not in ("mean", "standardized"):
        raise ConfigError(f"{where}.video_features: must be 'mean' or 'standardized', got {t.video_features!r}")
    if input_level == "video":
        for name in ("half_video_prob", "reverse_prob", "num_samples", "tta"):
            if getattr(t, name):
                raise ConfigError(f"{where}.{name}: a frame-level recipe, but family {family!r} is video-level")
    elif t.video_features != "mean":
        raise ConfigError(f"{where}.video_features: a video-level input, but family {family!r} is frame-level")
    if input_level == "frame" and t.mixup_prob:
        raise ConfigError(f"{where}.mixup_prob: mixup is for video-level inputs, but family {family!r} is "
                          "frame-level")


def with_recipe_defaults(raw):
    """A model config mapping whose ``training`` is the preset's training recipe (``registry.Family.recipes``:
    WILLOW's Adam 2e-4 / batch 80 / 300 frames for its published presets, the 2nd-place team's configs for
    theirs, ...) with the user's own ``training:`` fields on top. Unchanged when the preset has no recipe
    or the mapping is not well formed (``_build`` / ``_check_model`` then name the problem)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("family"), str):
        return raw
    preset = raw.get("preset", ModelConfig.__dataclass_fields__["preset"].default)
    training = raw.get("training")
    if not isinstance(preset, str) or not isinstance(training, (dict, type(None))):
        return raw
    from yt8m.models import registry  # keras import only when models are loaded

    try:
        recipe = registry.training_recipe(raw["family"], preset)
    except KeyError:
        return raw
    return {**raw, "training": {**recipe, **(training or {})}} if recipe else raw


def model_config_from_dict(raw: dict, where: str = "model") -> ModelConfig:
    return _check_model(_build(ModelConfig, with_recipe_defaults(raw), where), where)


def _student_defaults(raw):
    """The ``distillation`` mapping with each student's ``training.distill_weight`` defaulting to the section's
    (``students: []``, as ``to_dict`` writes the default, is no students)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("students"), list):
        return raw
    if not raw["students"]:
        return {k: v for k, v in raw.items() if k != "students"}
    weight = raw.get("distill_weight", DistillationConfig.distill_weight)
    students = []
    for s in raw["students"]:
        s = with_recipe_defaults(s)
        if isinstance(s, dict) and isinstance(s.get("training", {}) or {}, dict):
            s = {**s, "training": {"distill_weight": weight, **(s.get("training") or {})}}
        students.append(s)
    return {**raw, "students": students}


def _check_distillation(d: DistillationConfig, where: str) -> DistillationConfig:
    _check_range(f"{where}.rounds", d.rounds, 0)
    _check_range(f"{where}.top_k", d.top_k, 1)
    _check_range(f"{where}.distill_weight", d.distill_weight, 0, 1)
    if d.soft_labels not in SOFT_LABELS:
        raise ConfigError(f"{where}.soft_labels: expected one of {', '.join(SOFT_LABELS)}, got {d.soft_labels!r}")
    if d.keep not in DISTILLATION_KEEP:
        raise ConfigError(f"{where}.keep: expected one of {', '.join(DISTILLATION_KEEP)}, got {d.keep!r}")
    if d.rounds and not d.students:
        raise ConfigError(f"{where}.students: rounds is {d.rounds}, but no student model configs are given")
    students = tuple(_check_model(m, f"{where}.students[{i}]") for i, m in enumerate(d.students))
    names = [m.name for m in students]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.students: student names must be unique, got {names}")
    for i, m in enumerate(students):
        if m.training.teacher_predictions:
            raise ConfigError(f"{where}.students[{i}].training.teacher_predictions: a student's teacher is the "
                              "previous round's ensemble; leave it empty")
    return dataclasses.replace(d, students=students)


def run_config_from_dict(raw: dict, where: str = "config") -> RunConfig:
    if isinstance(raw, dict) and isinstance(raw.get("models"), list):
        raw = {**raw, "models": [with_recipe_defaults(m) for m in raw["models"]]}
    if isinstance(raw, dict) and "distillation" in raw:
        raw = {**raw, "distillation": _student_defaults(raw["distillation"])}
    cfg = _build(RunConfig, raw, where)
    cfg = dataclasses.replace(cfg, models=tuple(_check_model(m, f"{where}.models[{i}]")
                                                for i, m in enumerate(cfg.models)))
    names = [m.name for m in cfg.models]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.models: model names must be unique, got {names}")
    cfg = dataclasses.replace(cfg, distillation=_check_distillation(cfg.distillation, f"{where}.distillation"))
    if cfg.distillation.rounds and cfg.distillation.soft_labels == "full":  # the teachers need every class
        full = [dataclasses.replace(m, training=dataclasses.replace(m.training, full_predictions=True))
                for m in cfg.models]
        cfg = dataclasses.replace(cfg, models=tuple(full), distillation=dataclasses.replace(
            cfg.distillation, students=tuple(dataclasses.replace(
                m, training=dataclasses.replace(m.training, full_predictions=True))
                for m in cfg.distillation.students)))
    _check_run_ranges(cfg, where)
    _check_vertex(cfg.vertex, f"{where}.vertex")
    return cfg


def _check_run_ranges(cfg: RunConfig, where: str) -> None:
    """Every numeric field of a run config in its range, so a bad value stops the run before it starts."""
    d, e, g, s = cfg.data, cfg.ensemble, cfg.gate, cfg.synth
    _check_range(f"{where}.data.num_classes", d.num_classes, 2)
    _check_range(f"{where}.data.folds", d.folds, 2)
    _check_range(f"{where}.data.holdout_fraction", d.holdout_fraction, 0, 1, low_open=True)
    if d.holdout_fraction >= 1:
        raise ConfigError(f"{where}.data.holdout_fraction: must be < 1, got {d.holdout_fraction!r}")
    _check_range(f"{where}.ensemble.quantize_min_elements", e.quantize_min_elements, 1)
    _check_range(f"{where}.ensemble.top_k_predictions", e.top_k_predictions, 1)
    _check_ensemble_choices(e, f"{where}.ensemble")
    _check_gate(g, f"{where}.gate")
    _check_range(f"{where}.synth.videos", s.videos, 1)
    _check_range(f"{where}.synth.classes", s.classes, 2)


_CPU = re.compile(r"^([0-9]*[.])?[0-9]+m?$")  # kfp's own checks (PipelineTask.set_cpu_limit / set_memory_limit)
_MEMORY = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
_DURATION = re.compile(r"^[0-9]+[smhd]$")
_MODEL_ID = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")


def _check_vertex(v: VertexConfig, where: str) -> None:
    """Resources in the forms kfp accepts, accelerators Vertex offers, retry and fan-out ranges."""
    for kind in (f.name for f in dataclasses.fields(ResourcesConfig)):
        r = getattr(v.resources, kind)
        at = f"{where}.resources.{kind}"
        if not _CPU.match(r.cpu) or float(r.cpu.rstrip("m")) <= 0:
            raise ConfigError(f"{at}.cpu: expected a positive number of cores ('8', '0.5') or millicores "
                              f"('500m'), got {r.cpu!r}")
        if not _MEMORY.match(r.memory) or not int(re.match(r"[0-9]+", r.memory).group()):
            raise ConfigError(f"{at}.memory: expected a positive size like '64G', '512M' or '16Gi', got {r.memory!r}")
    t = v.resources.train
    if t.accelerator_type not in ACCELERATOR_TYPES:
        raise ConfigError(f"{where}.resources.train.accelerator_type: expected one of "
                          f"{', '.join(ACCELERATOR_TYPES)}, got {t.accelerator_type!r}")
    _check_range(f"{where}.resources.train.accelerator_count", t.accelerator_count, 0, 16)
    r = v.training_retry
    _check_range(f"{where}.training_retry.num_retries", r.num_retries, 0, 100)
    for name in ("backoff_duration", "backoff_max_duration"):
        if not _DURATION.match(getattr(r, name)):
            raise ConfigError(f"{where}.training_retry.{name}: expected a duration like '60s', '5m', '1h', "
                              f"got {getattr(r, name)!r}")
    _check_range(f"{where}.training_retry.backoff_factor", r.backoff_factor, 1)
    _check_range(f"{where}.parallelism", v.parallelism, 1)
    m = v.model_registry
    if not _MODEL_ID.match(m.model_id):
        raise ConfigError(f"{where}.model_registry.model_id: lowercase letters, digits, '-' and '_', starting "
                          f"with a letter, at most 63 characters; got {m.model_id!r}")
    for name in ("display_name", "serving_image"):
        if not getattr(m, name).strip():
            raise ConfigError(f"{where}.model_registry.{name}: must not be empty")
    _check_dataflow(v.dataflow, f"{where}.dataflow")


_GCS_PATH = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")
_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_GCP_REGION = re.compile(r"^[a-z]+(-[a-z]+)+[0-9]+$")
_MACHINE_TYPE = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
_SERVICE_ACCOUNT = re.compile(r"^[a-z0-9-]+@[a-z0-9.-]+\.gserviceaccount\.com$")


def _check_dataflow(d: DataflowConfig, where: str) -> None:
    """The runner, gs:// locations, and the Flex Template a Dataflow runner needs."""
    if d.runner not in DATAFLOW_RUNNERS:
        raise ConfigError(f"{where}.runner: expected one of {', '.join(DATAFLOW_RUNNERS)}, got {d.runner!r}")
    if d.runner == "dataflow" and not d.flex_template:
        raise ConfigError(f"{where}.flex_template: required with runner dataflow (the gs:// path of the Flex "
                          "Template spec; see infra/README.md)")
    for name in ("flex_template", "temp_location", "staging_location"):
        value = getattr(d, name)
        if value and not _GCS_PATH.match(value):
            raise ConfigError(f"{where}.{name}: expected a gs://BUCKET/... path, got {value!r}")
    if d.flex_template and not d.flex_template.endswith(".json"):
        raise ConfigError(f"{where}.flex_template: expected the template spec file (.json), got {d.flex_template!r}")
    checks = (("project", _GCP_PROJECT, "a project ID (6-30 lowercase letters, digits, '-')"),
              ("region", _GCP_REGION, "a region like us-central1"),
              ("service_account", _SERVICE_ACCOUNT, "a service account email (NAME@PROJECT.iam.gserviceaccount.com)"))
    for name, pattern, expected in checks:
        value = getattr(d, name)
        if value and not pattern.match(value):
            raise ConfigError(f"{where}.{name}: expected {expected}, got {value!r}")
    if not _MACHINE_TYPE.match(d.machine_type):
        raise ConfigError(f"{where}.machine_type: expected a Compute Engine machine type like n2-highmem-8, "
                          f"got {d.machine_type!r}")
    _check_range(f"{where}.max_workers", d.max_workers, 1, 1000)
    if d.worker_image != d.worker_image.strip() or any(c.isspace() for c in d.worker_image):
        raise ConfigError(f"{where}.worker_image: expected an image reference without spaces, got {d.worker_image!r}")


def _check_gate(g: GateConfig, where: str) -> None:
    _check_range(f"{where}.min_gap", g.min_gap, 0, 1)
    _check_range(f"{where}.max_size_bytes", g.max_size_bytes, 1)
    _check_range(f"{where}.max_gap_drop", g.max_gap_drop, 0, 1)
    _check_range(f"{where}.max_load_seconds", g.max_load_seconds, 0, low_open=True)
    _check_range(f"{where}.max_ms_per_video", g.max_ms_per_video, 0, low_open=True)


def gate_config_from_dict(raw: dict | None, where: str = "gate") -> GateConfig:
    """The ``gate`` section alone (the gate component gets it as a pipeline parameter)."""
    cfg = _build(GateConfig, raw or {}, where)
    _check_gate(cfg, where)
    return cfg


def _check_ensemble_choices(e: EnsembleConfig, where: str) -> None:
    _check_range(f"{where}.size_budget_bytes", e.size_budget_bytes, 1)
    _check_range(f"{where}.stacking.learning_rate", e.stacking.learning_rate, 0, 1, low_open=True)
    _check_range(f"{where}.stacking.max_rounds", e.stacking.max_rounds, 1)
    _check_range(f"{where}.stacking.early_stopping_rounds", e.stacking.early_stopping_rounds, 1)
    for field, allowed in (("compression", ENSEMBLE_COMPRESSIONS), ("combiner", ENSEMBLE_COMBINERS)):
        if getattr(e, field) not in allowed:
            raise ConfigError(f"{where}.{field}: expected one of {', '.join(allowed)}, got {getattr(e, field)!r}")


def ensemble_config_from_dict(raw: dict | None, where: str = "ensemble") -> EnsembleConfig:
    """The ``ensemble`` section alone (the ensemble component gets it as a pipeline parameter)."""
    cfg = _build(EnsembleConfig, raw or {}, where)
    _check_range(f"{where}.quantize_min_elements", cfg.quantize_min_elements, 1)
    _check_range(f"{where}.top_k_predictions", cfg.top_k_predictions, 1)
    _check_ensemble_choices(cfg, where)
    return cfg


def vertex_config_from_dict(raw: dict | None, where: str = "vertex") -> VertexConfig:
    """The ``vertex`` section alone (the pipeline is built from it; see pipelines/yt8m_pipeline.py)."""
    cfg = _build(VertexConfig, raw or {}, where)
    _check_vertex(cfg, where)
    return cfg


def load_yaml(path: str) -> dict:
    if not storage.gfile.exists(path):
        raise ConfigError(f"{path}: config file not found")
    try:
        raw = yaml.safe_load(storage.read_text(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return raw


def load_run_config(path: str) -> RunConfig:
    return run_config_from_dict(load_yaml(path), where=path)


def load_model_config(path: str) -> ModelConfig:
    return model_config_from_dict(load_yaml(path), where=path)


def to_dict(cfg) -> dict:
    """Plain JSON-compatible data (tuples become lists), as pipeline parameters need."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def dump_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def config_hash(cfg) -> str:
    """A short, stable digest of a config (as JSON with sorted keys): the lineage key of what trained a model."""
    import hashlib

    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()[:12]
