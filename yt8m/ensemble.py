"""Ensemble trained members by probability averaging and merge them into ONE SavedModel.

Tensors with more than ``quantize_min_elements`` elements are stored as uint8 min-max
per channel and dequantized in the graph (the 2018 1st-place scheme); everything else
stays float32. Reports each member's and the ensemble's out-of-fold and holdout GAP.
"""

from __future__ import annotations

import logging

import numpy as np

from yt8m import config as config_lib
from yt8m import export, metrics, predictions, storage

log = logging.getLogger(__name__)


def _aligned_average(paths: list[str], weights: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Average dense scores of several top-k prediction files over the videos they share."""
    loaded = [predictions.load_topk(p) for p in paths]
    ids = [str(v) for v in loaded[0]["video_ids"]]
    total = None
    for w, pred in zip(weights, loaded):
        order = {str(v): i for i, v in enumerate(pred["video_ids"])}
        missing = [v for v in ids if v not in order]
        if missing:
            raise ValueError(f"prediction files disagree on videos (e.g. {missing[0]!r} is not in all of {paths})")
        idx = np.asarray([order[v] for v in ids])
        dense = predictions.densify_topk(pred["classes"][idx], pred["scores"][idx], int(pred["num_classes"]))
        total = w * dense if total is None else total + w * dense
    return ids, total


def _labels_for(ids: list[str], label_source: dict[str, list[int]], num_classes: int) -> np.ndarray:
    return metrics.dense_labels([label_source[v] for v in ids], num_classes)


def build_ensemble(member_dirs: list[str], output_dir: str, num_classes: int, holdout_labels: dict[str, list[int]],
                   oof_labels: dict[str, list[int]], quantize_min_elements: int | None = 17_000,
                   transform_dir: str | None = None) -> dict:
    """Merge the members under ``member_dirs`` into ``output_dir/saved_model``; write ``ensemble.json``.

    ``transform_dir``: the dataset's transform_fn (``Dataset.transform_path``), applied in the merged graph
    to compute the video-level members' features from raw records (``yt8m.export``)."""
    members, reports = [], []
    for d in member_dirs:
        cfg = config_lib.load_model_config(storage.join(d, "model_config.yaml"))
        members.append(export.member_from_weights(cfg.name, config_lib.to_dict(cfg),
                                                   storage.join(d, "model.weights.h5"), num_classes))
        reports.append(storage.read_json(storage.join(d, "metrics.json")))
    weights = np.full(len(members), 1.0 / len(members))
    report = {"members": [], "weights": weights.tolist(), "quantize_min_elements": quantize_min_elements}
    for d, r in zip(member_dirs, reports):
        report["members"].append({"name": r["name"], "family": r["family"], "oof_gap": r["oof"]["gap"],
                                  "holdout_gap": r["holdout"]["gap"], "parameters": r["parameters"],
                                  "saved_model_bytes": r["saved_model_bytes"], "dir": d})
    for split, labels, fname in (("oof", oof_labels, "oof_predictions.npz"),
                                 ("holdout", holdout_labels, "holdout_predictions.npz")):
        ids, avg = _aligned_average([storage.join(d, fname) for d in member_dirs], weights)
        report[f"{split}_gap"] = metrics.gap_at_k(avg, _labels_for(ids, labels, num_classes))
        log.info("ensemble of %d: %s GAP@20 %.4f (members: %s)", len(members), split, report[f"{split}_gap"],
                 ", ".join(f"{m['name']} {m[f'{split}_gap']:.4f}" for m in report["members"]))
    fp32_dir = storage.join(output_dir, "unquantized_saved_model")
    report["fp32_bytes"] = export.export_serving_model(members, fp32_dir, list(weights), transform_dir=transform_dir)
    storage.gfile.rmtree(fp32_dir)  # measured for the report only
    report["saved_model_bytes"] = export.export_serving_model(members, storage.join(output_dir, "saved_model"),
                                                              list(weights), quantize_min_elements,
                                                              transform_dir=transform_dir)
    report["compression_ratio"] = report["fp32_bytes"] / report["saved_model_bytes"]
    log.info("merged graph: %.1f MB (%.2fx smaller than fp32 %.1f MB)", report["saved_model_bytes"] / 1e6,
             report["compression_ratio"], report["fp32_bytes"] / 1e6)
    storage.write_json(storage.join(output_dir, "ensemble.json"), report)
    return report
