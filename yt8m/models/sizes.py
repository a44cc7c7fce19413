"""Model sizes without training: parameters, fp32 MiB and uint8 MiB of each family's presets.

uint8 follows the 2018 1st-place scheme (YT8M_FACTS.md, "Quantisation"): every tensor with
more than 17,000 elements is stored as uint8 plus a 256-level float32 codebook; smaller
tensors stay float32. (``yt8m.export`` stores a per-channel scale and offset instead of a
codebook; ``uint8_export_mib`` is that scheme's size.)

``PUBLISHED_PARAMETERS`` holds YT8M_FACTS.md's "Model families and sizes" figures; a range
``(low, high)`` where the facts give one ("LSTM 2x1024 / GRU 2x1200: 37-96M"). Where a preset follows
the reference code rather than the facts' figure (or the facts have none), ``CODE_PARAMETERS`` /
``SECOND_PLACE_CODE_PARAMETERS`` hold the code's own parameter count and say why.
"""

from __future__ import annotations

import gc

import numpy as np

from yt8m import schema

MIB = float(1 << 20)
QUANTIZE_MIN_ELEMENTS = 17_000
CODEBOOK_LEVELS = 256

# fp32 parameters of the published models (YT8M_FACTS.md, 3,862 classes).
PUBLISHED_PARAMETERS: dict[str, float | tuple[float, float]] = {
    "logistic": 4.5e6,
    "moe": 22.3e6,
    "dbof": 37.6e6,
    "lstm": (37e6, 96e6),
    "gru": (37e6, 96e6),
    "netvlad": 321.5e6,
    "netrvlad": 321e6,
    "netfv": 321e6,
    # The facts' Soft-DBoF K=8000 figure; the published preset follows WILLOW's code instead (audio K/8,
    # 37.3M): see CODE_PARAMETERS. (With the audio branch at K/2 the same layers count 41.1M.)
    "soft_dbof": 40.8e6,
    "resnet_like": 153e6,
}

# Where the facts' figure (from the papers) and the reference code disagree, or the facts give none, the
# published preset follows the code that produced the published result, held here to the trainable
# parameters of that code at 3,862 classes, counted layer by layer (TF1 slim: BN gamma + beta trainable,
# the moving statistics not; MoE gates without biases):
# * soft_dbof: antoine77340/Youtube-8M-WILLOW frame_level_models.py SoftDbofModelLF with the README command
#   (--dbof_cluster_size=8000 --dbof_hidden_size=1024 --dbof_relu=False): input_bn 2,304; rgb SoftDBoF
#   1024x8000 + BN 16,000; audio SoftDBoF cluster_size/8 = 1000: 128x1000 + BN 2,000; hidden1 9000x1024 +
#   bias 1,024; MoE 1024x3862x3 gates + 1024x7724 experts + 7,724 biases = 37,338,492. YT8M_FACTS.md says
#   40.8M (the preset's -8.5%), which is the audio-K/2 variant's size.
# * gated_soft_dbof: GatedDbofModelLF (README: --dbof_cluster_size=4096 --dbof_hidden_size=1024
#   --dbof_relu=False; --moe_prob_gating=True as the inference command of the ensembled member): input_bn
#   2,304; rgb GatedDBoF cluster_weights 1024x4096, dim_red 4096x1024, cluster_weights_2 1024x4096, two BN
#   of 4096; audio SoftDBoF 512 clusters 128x512 + BN 1,024; hidden1 4608x1024 + bias; MoE as above;
#   gating_prob_weights 3862x3862 + BN 7,724 = 52,091,708. The facts give no figure (without the output
#   gating, as the README's training command: 37,168,940).
CODE_PARAMETERS: dict[str, tuple[int, str]] = {
    "soft_dbof": (37_338_492, "Youtube-8M-WILLOW frame_level_models.py SoftDbofModelLF, README K=8000"),
    "gated_soft_dbof": (52_091_708, "Youtube-8M-WILLOW frame_level_models.py GatedDbofModelLF, README K=4096 "
                        "(+ --moe_prob_gating of its inference command)"),
}

# The 2018 2nd place's families (second_place.py): neither the team's paper nor YT8M_FACTS.md gives
# their sizes, so there is NO published figure (they are not in PUBLISHED_PARAMETERS and
# ``published_relative_error`` is None for them). Their "published" presets are sized as the team's
# code; these are the trainable parameters of the team's PyTorch modules at 3,862 classes, counted
# from twoleggedeye/youtube8m (commit c640c50) layer by layer. Our Keras presets (trainable weights)
# match them: attention_net, frame_conv_max exactly; bilstm_attention 64,888,856 (Keras LSTMs have one
# bias vector per gate, PyTorch two: -9,216); vlad_bow 27,582,231 (the team's VLADBoW also holds
# 4,718,592 cluster_centers it never uses, left out here; with them the team's module has 32,300,823).
# Keras' count_params() adds BN moving statistics: 56,617,241 / 64,895,768 / 25,137,558 / 27,594,519.
SECOND_PLACE_CODE_PARAMETERS: dict[str, tuple[int, str]] = {
    "attention_net": (56_608_793, "sequence_models/models.py AttentionModel, configs/config21.yaml"),
    "bilstm_attention": (64_898_072, "sequence_models/models.py EarlyConcatLSTM4, configs/config27.yaml"),
    "frame_conv_max": (25_116_822, "sequence_models/models.py EarlyConcatAlternate + video_level_nn_models "
                       "ResNetLike, configs/config19.yaml"),
    "vlad_bow": (27_582_231, "sequence_models/models.py BoWResnetLike/VLADBoW (without the unused "
                 "cluster_centers), configs/config91.yaml"),
}

# fp32 / uint8 MiB of the same rows (None where the facts give none).
PUBLISHED_MIB: dict[str, tuple] = {
    "logistic": (17, 4), "moe": (85, 21), "dbof": (144, 36), "lstm": ((140, 370), None), "gru": ((140, 370), None),
    "netvlad": (1226, 307), "netrvlad": (1226, 306), "netfv": (1226, 306), "soft_dbof": (156, 39),
    "resnet_like": (584, None),
}


def published_relative_error(family: str, parameters: int) -> float | None:
    """``(parameters - published) / published``; for a published range, 0 inside it and the signed
    relative distance to the nearest bound outside it. ``None`` if the facts have no figure."""
    figure = PUBLISHED_PARAMETERS.get(family)
    if figure is None:
        return None
    if isinstance(figure, tuple):
        low, high = figure
        if parameters < low:
            return (parameters - low) / low
        if parameters > high:
            return (parameters - high) / high
        return 0.0
    return (parameters - figure) / figure


def check_published_size(family: str, parameters: int, tolerance: float = 0.05) -> float:
    """The relative error vs the facts; raises ``ValueError`` beyond ``tolerance`` or without a figure."""
    error = published_relative_error(family, parameters)
    if error is None:
        raise ValueError(f"YT8M_FACTS.md has no published size for {family!r}")
    if abs(error) > tolerance:
        raise ValueError(f"{family}: {parameters:,} parameters is {error:+.1%} off the published "
                         f"{PUBLISHED_PARAMETERS[family]} (tolerance {tolerance:.0%})")
    return error


def weight_shapes(model) -> list[tuple[int, ...]]:
    return [tuple(int(d) for d in w.shape) for w in model.weights]


def size_of_shapes(shapes: list[tuple[int, ...]], quantize_min_elements: int = QUANTIZE_MIN_ELEMENTS) -> dict:
    """Parameters, fp32 bytes, 1st-place uint8 bytes and export.py-scheme uint8 bytes of these tensors."""
    params = fp32 = uint8 = uint8_export = 0
    for shape in shapes:
        n = int(np.prod(shape)) if shape else 1
        params += n
        fp32 += 4 * n
        if n > quantize_min_elements:
            uint8 += n + 4 * CODEBOOK_LEVELS
            channels = shape[-1] if len(shape) > 1 else 1
            uint8_export += n + 2 * 4 * channels
        else:
            uint8 += 4 * n
            uint8_export += 4 * n
    return {"parameters": params, "fp32_bytes": fp32, "uint8_bytes": uint8, "uint8_export_bytes": uint8_export}


def model_size(family: str, preset: str = "published", num_classes: int = schema.NUM_CLASSES,
               overrides: dict | None = None) -> dict:
    """Build the model (no training) and measure it; the model is released before returning. The row also
    carries the preset's training recipe (``yt8m models --json`` shows it)."""
    import keras

    from yt8m.models import registry

    model = registry.build_model(family, num_classes, preset, overrides)
    shapes = weight_shapes(model)
    del model
    keras.backend.clear_session()
    gc.collect()
    size = size_of_shapes(shapes)
    fam = registry.get_family(family)
    figure = PUBLISHED_PARAMETERS.get(family) if preset == "published" and not overrides else None
    mib = PUBLISHED_MIB.get(family, (None, None)) if figure is not None else (None, None)
    return {
        "family": family,
        "preset": preset,
        "input_level": fam.input_level,
        "parameters": size["parameters"],
        "fp32_mib": round(size["fp32_bytes"] / MIB, 1),
        "uint8_mib": round(size["uint8_bytes"] / MIB, 1),
        "uint8_export_mib": round(size["uint8_export_bytes"] / MIB, 1),
        "published_parameters": list(figure) if isinstance(figure, tuple) else figure,
        "relative_error": (None if figure is None else round(published_relative_error(family, size["parameters"]), 5)),
        "published_fp32_mib": list(mib[0]) if isinstance(mib[0], tuple) else mib[0],
        "published_uint8_mib": mib[1],
        # the preset's training recipe (ModelConfig.training defaults) and where it comes from; {} / "" if none
        "recipe": dict(fam.recipes.get(preset, {})),
        "recipe_source": fam.recipe_sources.get(preset, ""),
    }


def model_size_table(num_classes: int = schema.NUM_CLASSES, presets: tuple[str, ...] = ("published",),
                     families: list[str] | None = None) -> list[dict]:
    """One row per (family, preset): see ``model_size``. Published models are built one at a time
    (the largest, 321M parameters, needs ~1.3 GB for its weights, ~4 GB peak while initialising)."""
    from yt8m.models import registry

    registry._load_families()
    names = families or sorted(registry.FAMILIES)
    return [model_size(name, preset, num_classes) for name in names for preset in presets
            if preset in registry.FAMILIES[name].presets]
