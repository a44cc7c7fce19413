"""Configs as data: YAML files validated on load, with errors that name the field.

Two kinds: a ``ModelConfig`` (one training run: family, preset, overrides, schedule) and
a ``RunConfig`` (a whole pipeline run: data, models, ensemble, gate). Recipes later are
just files of these kinds.
"""

from __future__ import annotations

import dataclasses
import json
import typing

import yaml

from yt8m import storage


class ConfigError(ValueError):
    """A config that does not match its schema; the message names the file and field."""


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_decay: float = 0.8  # WILLOW: multiply the learning rate by this ...
    lr_decay_examples: int = 4_000_000  # ... every this many examples
    clip_gradient_norm: float = 1.0
    num_samples: int = 0  # frames sampled with replacement per video at training time (0 = all)
    max_frames: int = 300
    eval_batch_size: int = 64
    seed: int = 0


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


@dataclasses.dataclass(frozen=True)
class EnsembleConfig:
    quantize_min_elements: int = 17_000  # tensors with more elements are stored as uint8
    top_k_predictions: int = 20


@dataclasses.dataclass(frozen=True)
class GateConfig:
    min_gap: float = 0.80
    max_size_bytes: int = 1 << 30  # the 2018 rule: one graph under 1 GB


@dataclasses.dataclass(frozen=True)
class SynthConfig:
    videos: int = 2000
    classes: int = 100
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class RunConfig:
    models: tuple[ModelConfig, ...]
    data: DataConfig = DataConfig()
    ensemble: EnsembleConfig = EnsembleConfig()
    gate: GateConfig = GateConfig()
    synth: SynthConfig = SynthConfig()


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
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads 1e-3 as a string
        except ValueError:
            pass
    if hint in (int, str) and isinstance(value, hint) and not isinstance(value, bool):
        return value
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)  # pipeline parameters travel as protobuf Struct, where every number is a float
    raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")


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
    if t.learning_rate <= 0 or not 0 < t.lr_decay <= 1:
        raise ConfigError(f"{where}.training: learning_rate must be > 0 and lr_decay in (0, 1]")
    if not model.name.replace("-", "").replace("_", "").isalnum():
        raise ConfigError(f"{where}.name: use letters, digits, '-' and '_' only, got {model.name!r}")
    return model


def model_config_from_dict(raw: dict, where: str = "model") -> ModelConfig:
    return _check_model(_build(ModelConfig, raw, where), where)


def run_config_from_dict(raw: dict, where: str = "config") -> RunConfig:
    cfg = _build(RunConfig, raw, where)
    cfg = dataclasses.replace(cfg, models=tuple(_check_model(m, f"{where}.models[{i}]")
                                                for i, m in enumerate(cfg.models)))
    names = [m.name for m in cfg.models]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.models: model names must be unique, got {names}")
    d = cfg.data
    if d.num_classes < 2 or d.folds < 2 or not 0 < d.holdout_fraction < 1:
        raise ConfigError(f"{where}.data: need num_classes >= 2, folds >= 2 and 0 < holdout_fraction < 1")
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
