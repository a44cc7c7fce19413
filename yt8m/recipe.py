"""The winners' solutions as recipes: validated YAML files that fully describe a pipeline run (data).

A recipe (``yt8m/recipes/<name>.yaml``, or any path) is a run config (``yt8m.config`` schema: models with
their presets and training, folds, ensemble, distillation, gates, Vertex resources) plus a ``recipe:``
header saying what it reproduces::

    recipe:
      name: willow-2017
      title: ...
      source: where every choice comes from (each choice also carries a comment in the file)
      published_gap: 0.847           # the team's published GAP@20 for this system
      published_gap_note: ...        # which leaderboard / data
      size_limit_bytes: null         # the competition's model size rule (null: none, as in 2017)
      accelerator: NVIDIA_L4         # the GPU of the full-size training tasks (Vertex)

The whole file is validated before anything runs: unknown keys anywhere (e.g. a stage whose component
does not exist) and missing header fields are errors naming the file and the field.

``local_profile`` derives the ``scale: local`` run from the full recipe: the same members, families,
switches (augmentation, mixup, EMA, TTA, distillation) and stages (folds, combiner, distillation rounds,
compression), with each member's ``small`` preset, a few thousand examples seen, 2 folds and generated data.
``estimate`` gives the full recipe's parameters, fp32 and compressed sizes (models built, not trained) and
GPU-hours from its training steps and ``ASSUMED_EXAMPLES_PER_SECOND`` (assumptions, not measurements: no
GPU here; replace them with your own).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import glob
import math
import os

from yt8m import config as config_lib
from yt8m import storage

RECIPES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")

HEADER_FIELDS = ("name", "title", "source", "published_gap", "published_gap_note", "size_limit_bytes",
                 "accelerator")

# Training throughput per GPU (examples per second) ASSUMED for the GPU-hour estimates, by family, on
# one NVIDIA_L4 at the recipes' batch sizes and frames: NOT measured (this machine has no GPU). The
# other accelerators scale by ACCELERATOR_SPEED. Replace both with your own measurements.
ASSUMED_EXAMPLES_PER_SECOND = {
    "logistic": 20_000, "moe": 10_000, "resnet_like": 8_000,
    "dbof": 1_500, "soft_dbof": 600, "gated_soft_dbof": 500,
    "netvlad": 400, "netrvlad": 400, "netfv": 350,
    "gru": 300, "lstm": 250, "transformer": 400,
    "attention_net": 800, "bilstm_attention": 300, "frame_conv_max": 900, "vlad_bow": 600, "frame_mil": 3_000,
}
ACCELERATOR_SPEED = {"NVIDIA_L4": 1.0, "NVIDIA_TESLA_T4": 0.5, "NVIDIA_TESLA_V100": 1.2, "NVIDIA_TESLA_A100": 2.5,
                     "NVIDIA_A100_80GB": 2.5, "NVIDIA_H100_80GB": 4.0}
# Vertex AI custom training list prices per accelerator-hour (USD, machine included), ASSUMED at writing:
ASSUMED_PRICE_PER_GPU_HOUR = {"NVIDIA_L4": 0.90, "NVIDIA_TESLA_T4": 0.60, "NVIDIA_TESLA_V100": 2.90,
                              "NVIDIA_TESLA_A100": 3.70, "NVIDIA_A100_80GB": 4.50, "NVIDIA_H100_80GB": 10.0}


@dataclasses.dataclass(frozen=True)
class LocalScale:
    """How big a recipe's local profile is (its members, switches and stages are the recipe's whatever the scale)."""
    name: str
    videos: int  # generated videos (train split; synth adds validate and test)
    classes: int
    examples: int  # examples each training task sees (examples_to_see)
    max_frames: int  # frames a frame-level member reads per video (training, predictions, serving)
    max_distillation_rounds: int | None = None  # at most this many of the recipe's rounds (None: all)


# `yt8m run --local --recipe NAME`: a few minutes per recipe on 2 cores.
LOCAL = LocalScale("local", videos=800, classes=20, examples=1000, max_frames=300)
# The smallest run that still trains and serves every member and stage: the tests run each recipe at this scale
# (~1-2 minutes each: the cost is then the tasks' fixed start-up, tracing and export, not the data). One
# distillation round at most: a second round repeats the first's tasks (skalic-2018: 9 of its 27 training
# tasks) with the previous students' ensemble as teacher, which the compiled DAG (tests/test_pipeline.py) and
# yt8m/distill_round.py's tests cover.
SMOKE = LocalScale("smoke", videos=240, classes=20, examples=128, max_frames=40, max_distillation_rounds=1)
SCALES = {s.name: s for s in (LOCAL, SMOKE)}
LOCAL_FOLDS = 2
LOCAL_BATCH = 32
# A recipe's stacker at local (and smoke) scale: a few thousand candidate rows, so larger and fewer steps than the
# full recipe's (samsung-2018: 3,000 trees at lr 0.01).
LOCAL_STACKING = {"learning_rate": 0.1, "max_rounds": 100, "early_stopping_rounds": 10}
# Training fields that are a recipe's SWITCHES (kept by the local profile); the rest (steps, batch,
# learning-rate schedule, frames sampled) are sized for the full data and replaced.
SWITCHES = ("half_video_prob", "reverse_prob", "mixup_prob", "mixup_alpha", "ema_halflife", "distill_weight",
            "tta", "video_features", "seed")
# Model overrides that choose an architecture variant (kept by the local profile); sizes are the preset's.
ARCHITECTURE_SWITCHES = ("head", "output_gating", "bidirectional", "reset_after", "state")


class RecipeError(config_lib.ConfigError):
    """A recipe that does not validate; the message names the file and the field."""


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    header: dict
    raw: dict  # the run config part, as written
    config: config_lib.RunConfig
    path: str


def names() -> list[str]:
    return sorted(os.path.splitext(os.path.basename(p))[0] for p in glob.glob(os.path.join(RECIPES_DIR, "*.yaml")))


def path_of(name_or_path: str) -> str:
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        return name_or_path
    path = os.path.join(RECIPES_DIR, f"{name_or_path}.yaml")
    if not os.path.exists(path):
        raise RecipeError(f"unknown recipe {name_or_path!r}; recipes: {', '.join(names())} (or a path to a YAML file)")
    return path


def _check_header(header, where: str) -> dict:
    if not isinstance(header, dict):
        raise RecipeError(f"{where}: missing the 'recipe:' header ({', '.join(HEADER_FIELDS)})")
    for field in HEADER_FIELDS:
        if field not in header:
            raise RecipeError(f"{where}.{field}: missing (the header needs {', '.join(HEADER_FIELDS)})")
    unknown = sorted(set(header) - set(HEADER_FIELDS))
    if unknown:
        raise RecipeError(f"{where}.{unknown[0]}: unknown field (allowed: {', '.join(HEADER_FIELDS)})")
    gap = header["published_gap"]
    if gap is not None and (not isinstance(gap, (int, float)) or not 0 < gap <= 1):
        raise RecipeError(f"{where}.published_gap: expected a GAP in (0, 1] or null (none published), got {gap!r}")
    limit = header["size_limit_bytes"]
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise RecipeError(f"{where}.size_limit_bytes: expected a positive number of bytes or null, got {limit!r}")
    if header["accelerator"] not in config_lib.ACCELERATOR_TYPES:
        raise RecipeError(f"{where}.accelerator: expected one of {', '.join(config_lib.ACCELERATOR_TYPES)}, "
                          f"got {header['accelerator']!r}")
    return dict(header)


def _train_on_the_header_accelerator(raw: dict, accelerator: str, where: str) -> None:
    """The training tasks' GPU on Vertex is the header's ``accelerator`` (the one the GPU-hour estimate is
    for): filled in ``vertex.resources.train.accelerator_type`` unless the recipe sets it; a different value
    there is an error, never a silent mismatch between the estimate and the job."""
    vertex = raw.get("vertex") or {}
    resources = vertex.get("resources") or {}
    train = resources.get("train") or {}
    if not all(isinstance(d, dict) for d in (vertex, resources, train)):
        return  # run_config_from_dict names the malformed field
    chosen = train.get("accelerator_type", accelerator)
    if chosen != accelerator:
        raise RecipeError(f"{where}.vertex.resources.train.accelerator_type: {chosen!r} differs from the recipe's "
                          f"accelerator {accelerator!r} (recipe.accelerator, which the GPU-hour estimate uses)")
    raw["vertex"] = {**vertex, "resources": {**resources, "train": {**train, "accelerator_type": accelerator}}}


def load(name_or_path: str) -> Recipe:
    """Read and validate a recipe (a name in ``yt8m/recipes/`` or a path)."""
    path = path_of(name_or_path)
    where = os.path.basename(path)
    raw = config_lib.load_yaml(path)
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: expected a mapping with a 'recipe:' header and a run config")
    raw = dict(raw)
    header = _check_header(raw.pop("recipe", None), f"{where}.recipe")
    _train_on_the_header_accelerator(raw, header["accelerator"], where)
    try:
        cfg = config_lib.run_config_from_dict(raw, where)
    except config_lib.ConfigError as err:
        raise RecipeError(str(err)) from None
    limit = header["size_limit_bytes"]
    if limit is not None and cfg.gate.max_size_bytes > limit:
        raise RecipeError(f"{where}.gate.max_size_bytes: {cfg.gate.max_size_bytes:,} is over the recipe's size limit "
                          f"{limit:,} (recipe.size_limit_bytes)")
    return Recipe(header["name"], header, raw, cfg, path)


def with_size_limit(recipe: Recipe, limit_bytes: int) -> config_lib.RunConfig:
    """The recipe under a model size rule: the ensemble plans members and precisions within ``limit_bytes``
    (``yt8m.planner``) and the gate refuses anything over it."""
    return for_vertex(recipe, size_limit=limit_bytes)


def for_vertex(recipe: Recipe, size_limit: int | None = None, dataflow_template: str | None = None
               ) -> config_lib.RunConfig:
    """The full-size run config submitted to Vertex: optionally under a model size rule (``size_limit``) and
    with the preprocessing on Dataflow from the Flex Template at ``dataflow_template`` (gs://.../*.json)."""
    raw = copy.deepcopy(recipe.raw)
    where = recipe.name
    if size_limit:
        raw.setdefault("ensemble", {})["size_budget_bytes"] = int(size_limit)
        if raw["ensemble"].get("compression", "uint8") == "none":
            raw["ensemble"]["compression"] = "uint8"
        raw.setdefault("gate", {})["max_size_bytes"] = int(size_limit)
        where += f" (size limit {size_limit:,})"
    if dataflow_template:
        dataflow = raw.setdefault("vertex", {}).setdefault("dataflow", {})
        dataflow.update(runner="dataflow", flex_template=dataflow_template)
    return config_lib.run_config_from_dict(raw, where)


def _local_model(model: dict, scale: LocalScale) -> dict:
    from yt8m.models import registry

    family = registry.get_family(model["family"])
    training = {k: v for k, v in (model.get("training") or {}).items() if k in SWITCHES}
    training.update(examples_to_see=scale.examples, batch_size=LOCAL_BATCH, eval_batch_size=LOCAL_BATCH,
                    learning_rate=1e-3 if family.input_level == "frame" else 1e-2)
    if family.input_level == "frame":
        training["max_frames"] = scale.max_frames
    preset = "small" if "small" in family.presets else model.get("preset", "small")
    overrides = {k: v for k, v in (model.get("overrides") or {}).items()
                 if k in ARCHITECTURE_SWITCHES and k in family.presets[preset]}
    return {"name": model["name"], "family": model["family"], "preset": preset, "overrides": overrides,
            "training": training}


def local_profile(recipe: Recipe, scale: LocalScale = LOCAL) -> config_lib.RunConfig:
    """The ``scale: local`` run of ``recipe`` (or another ``LocalScale``, e.g. ``SMOKE``): same members and stages,
    small presets and steps (module doc)."""
    raw = copy.deepcopy(recipe.raw)
    raw["models"] = [_local_model(m, scale) for m in raw["models"]]
    distillation = raw.get("distillation")
    if isinstance(distillation, dict) and distillation.get("students"):
        distillation["students"] = [_local_model(m, scale) for m in distillation["students"]]
        if scale.max_distillation_rounds is not None and isinstance(distillation.get("rounds"), int):
            distillation["rounds"] = min(distillation["rounds"], scale.max_distillation_rounds)
    raw["data"] = {**raw.get("data", {}), "num_classes": scale.classes,
                   "folds": min(LOCAL_FOLDS, raw.get("data", {}).get("folds", LOCAL_FOLDS))}
    raw["synth"] = {"videos": scale.videos, "classes": scale.classes, "seed": 7}
    if "stacking" in raw.get("ensemble", {}):
        raw["ensemble"] = {**raw["ensemble"], "stacking": dict(LOCAL_STACKING)}
    # a smoke-scale run checks that every stage runs, it is not a release candidate: no GAP threshold and no
    # comparison with a baseline (the full recipe keeps both)
    raw["gate"] = {**raw.get("gate", {}), "min_gap": 0.0, "compare_with_previous": False}
    raw.pop("vertex", None)  # kfp.local ignores resources; Vertex settings belong to the full recipe
    return config_lib.run_config_from_dict(raw, f"{recipe.name} ({scale.name} profile)")


@functools.lru_cache(maxsize=None)
def _model_size(family: str, preset: str, num_classes: int, overrides: tuple) -> dict:
    """``sizes.model_size`` once per model in a process (recipes share families; building one is seconds)."""
    from yt8m.models import sizes

    return sizes.model_size(family, preset, num_classes, dict(overrides) or None)


def _training_examples(t: config_lib.TrainingConfig, train_videos: int, num_classes: int) -> int:
    target = t.examples_target(num_classes)
    if target:
        return target
    steps = t.steps_per_epoch or math.ceil(train_videos / t.batch_size)
    return t.epochs * steps * t.batch_size


def estimate(recipe: Recipe, size_limit: int | None = None, train_videos: int = 3_888_919) -> dict:
    """Sizes (models built at the recipe's classes, not trained) and GPU-hours of the full recipe (under
    ``size_limit`` when given: ``with_size_limit``).

    ``train_videos``: the 2018 train split (YT8M_FACTS.md). Each member trains ``folds`` fold models on
    (folds - 1) / folds of the videos plus one final member on all of them (``yt8m.kfold``)."""
    from yt8m import compression
    from yt8m.models import sizes

    cfg = with_size_limit(recipe, size_limit) if size_limit else recipe.config
    accelerator = recipe.header["accelerator"]
    speed = ACCELERATOR_SPEED[accelerator]
    members, total_fp32, total_compressed, gpu_hours = [], 0, 0, 0.0
    method = cfg.ensemble.compression
    rounds = cfg.distillation.rounds
    # (model, training rounds, in the final graph): with distillation, the last round's students are published
    models = [(m, 1, not rounds) for m in cfg.models] + [(m, rounds, True) for m in cfg.distillation.students
                                                          if rounds]
    for m, trained_rounds, in_graph in models:
        size = _model_size(m.family, m.preset, cfg.data.num_classes, tuple(sorted(m.overrides.items())))
        fp32 = int(size["fp32_mib"] * sizes.MIB)
        stored = {"none": fp32, "float16": fp32 // 2, "uint8": int(size["uint8_export_mib"] * sizes.MIB),
                  "codebook": int(size["uint8_mib"] * sizes.MIB)}[method if method in compression.METHODS else "none"]
        examples = _training_examples(m.training, train_videos, cfg.data.num_classes)
        runs = (cfg.data.folds + 1) * trained_rounds
        hours = runs * examples / (ASSUMED_EXAMPLES_PER_SECOND.get(m.family, 500) * speed) / 3600
        members.append({"name": m.name, "family": m.family, "preset": m.preset, "parameters": size["parameters"],
                        "fp32_bytes": fp32, "compressed_bytes": stored, "examples_per_run": examples,
                        "training_runs": runs, "gpu_hours": round(hours, 1), "in_final_graph": in_graph})
        if in_graph:
            total_fp32 += fp32
            total_compressed += stored
        gpu_hours += hours
    limit = size_limit or recipe.header["size_limit_bytes"]
    price = ASSUMED_PRICE_PER_GPU_HOUR[accelerator]
    return {"name": recipe.name, "title": recipe.header["title"], "published_gap": recipe.header["published_gap"],
            "published_gap_note": recipe.header["published_gap_note"], "accelerator": accelerator,
            "size_limit_bytes": limit, "compression": method, "members": members,
            "fp32_bytes": total_fp32, "compressed_bytes": total_compressed,
            "under_size_limit": None if limit is None else total_compressed < limit,
            "gpu_hours": round(gpu_hours, 1), "estimated_cost_usd": round(gpu_hours * price),
            "assumptions": "GPU-hours from ASSUMED_EXAMPLES_PER_SECOND (yt8m/recipe.py, not measured) and "
                           f"${price}/GPU-hour assumed for {accelerator}"}


def check_budget(recipe: Recipe, together: bool = True, size_limit: int | None = None) -> dict:
    """The recipe's estimate; refuse it when a compressed member cannot fit the size limit alone, or (``together``,
    the recipe's own limit: its members were chosen to fit) when all of them cannot. ``size_limit`` (a
    ``--size-limit`` run) replaces the recipe's; the planner then picks the members that fit together."""
    estimated = estimate(recipe, size_limit)
    limit = size_limit or recipe.header["size_limit_bytes"]
    if limit is None:
        return estimated
    where = os.path.basename(recipe.path)
    published = [m for m in estimated["members"] if m["in_final_graph"]]
    section = "distillation.students" if recipe.config.distillation.rounds else "models"
    for i, m in enumerate(published):
        if m["compressed_bytes"] >= limit:
            raise RecipeError(f"{where}.{section}[{i}] ({m['name']}): estimated {m['compressed_bytes']:,} bytes "
                              f"({estimated['compression']}) is over the recipe's size limit {limit:,}")
    if together and estimated["compressed_bytes"] >= limit:
        raise RecipeError(f"{where}.{section}: the final graph's members together are estimated at "
                          f"{estimated['compressed_bytes']:,} bytes ({estimated['compression']}), over the recipe's "
                          f"size limit {limit:,}")
    return estimated


def table_row(e: dict) -> dict:
    return {"recipe": e["name"], "members": ", ".join(f"{m['name']} ({m['family']})" for m in e["members"]),
            "published_gap": e["published_gap"], "fp32_mb": round(e["fp32_bytes"] / 1e6),
            "compressed_mb": round(e["compressed_bytes"] / 1e6), "gpu_hours": e["gpu_hours"],
            "accelerator": e["accelerator"]}


def write_yaml(cfg: config_lib.RunConfig, path: str) -> str:
    storage.write_text(path, config_lib.dump_yaml(cfg))
    return path
