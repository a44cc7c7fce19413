"""Model families by name: a builder, its input level, named presets and, per preset, the training
recipe its authors trained it with (configs as data).

A recipe is ``{TrainingConfig field: value}`` (``yt8m.config.TrainingConfig``): the config loader uses
it as the defaults of ``ModelConfig.training`` for that preset, under the user's own ``training:``
fields. Presets without a recipe (``small``) train with the library's defaults.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import keras


@dataclasses.dataclass(frozen=True)
class Family:
    name: str
    input_level: str  # "video" (mean_rgb, mean_audio) or "frame" (rgb, audio, num_frames)
    builder: Callable[..., keras.Model]
    presets: dict[str, dict]
    description: str = ""
    recipes: dict[str, dict] = dataclasses.field(default_factory=dict)  # preset -> {TrainingConfig field: value}
    recipe_sources: dict[str, str] = dataclasses.field(default_factory=dict)  # preset -> where the recipe is from


FAMILIES: dict[str, Family] = {}


def register(name: str, input_level: str, presets: dict[str, dict], description: str = "",
             recipes: dict[str, dict] | None = None, recipe_sources: dict[str, str] | None = None):
    """Decorator: register ``builder(num_classes, **params) -> keras.Model`` under ``name``, with the
    training ``recipes`` of some presets (and where each comes from, ``recipe_sources``)."""
    if input_level not in ("video", "frame"):
        raise ValueError(f"input_level must be 'video' or 'frame', got {input_level!r}")
    recipes, recipe_sources = dict(recipes or {}), dict(recipe_sources or {})
    for preset in set(recipes) | set(recipe_sources):
        if preset not in presets:
            raise ValueError(f"{name}: recipe for unknown preset {preset!r}")
    if set(recipes) != set(recipe_sources):
        raise ValueError(f"{name}: every recipe needs its source and every source a recipe")

    def wrap(builder):
        FAMILIES[name] = Family(name, input_level, builder, presets, description, recipes, recipe_sources)
        return builder

    return wrap


def get_family(name: str) -> Family:
    _load_families()
    if name not in FAMILIES:
        raise KeyError(f"unknown model family {name!r}; known: {', '.join(sorted(FAMILIES))}")
    return FAMILIES[name]


def resolve_params(family: str, preset: str, overrides: dict | None = None) -> dict:
    """The preset's parameters with ``overrides`` applied; unknown keys are an error."""
    fam = get_family(family)
    if preset not in fam.presets:
        raise KeyError(f"model family {family!r} has no preset {preset!r}; presets: {', '.join(fam.presets)}")
    params = dict(fam.presets[preset])
    for key, value in (overrides or {}).items():
        if key not in params:
            raise KeyError(f"override {key!r} is not a parameter of {family!r} (parameters: {', '.join(params)})")
        params[key] = value
    return params


def training_recipe(family: str, preset: str) -> dict:
    """The preset's training recipe ``{TrainingConfig field: value}`` ({} without one)."""
    fam = get_family(family)
    if preset not in fam.presets:
        raise KeyError(f"model family {family!r} has no preset {preset!r}; presets: {', '.join(fam.presets)}")
    return dict(fam.recipes.get(preset, {}))


def build_model(family: str, num_classes: int, preset: str = "small", overrides: dict | None = None) -> keras.Model:
    params = resolve_params(family, preset, overrides)
    return get_family(family).builder(num_classes, **params)


def _load_families() -> None:
    # Importing the family modules registers them.
    from yt8m.models import frame_level, mil, second_place, video_level  # noqa: F401
