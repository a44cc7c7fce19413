"""Ensemble component: combine the members (OOF-fitted), plan members x precision under the size budget,
compress large tensors, merge into ONE SavedModel; report every member's and combiner's GAP. With
``soft_label_kind`` (a distillation run) the combiner's OOF/holdout scores become the next round's teacher
(``soft_labels``); with ``teacher_model`` (the previous round's ensemble) the students are reported next to it,
and under ``distillation_keep: best`` the round passes the teacher (and ``teacher_soft_labels``) on when the
students' ensemble scores lower (``yt8m.distill_round``)."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from yt8m_pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ensemble_op(members: Input[List[Model]], dataset: Input[Dataset], quantize_min_elements: int, combiner: str,
                compression: str, size_budget_bytes: int, merged_model: Output[Model], metrics: Output[Metrics],
                soft_labels: Output[Dataset], soft_label_kind: str = "", soft_label_top_k: int = 20,
                teacher_model: Input[Model] = None, teacher_soft_labels: Input[Dataset] = None,
                stacking: dict = {}, distillation_round: int = 0, distillation_keep: str = "best"):
    """``yt8m.ensemble.build_ensemble``: ensemble.json, plan.json, frontier.png and saved_model/ in merged_model;
    ``{oof,holdout}_teacher.npz`` in soft_labels when ``soft_label_kind`` is topk | full."""
    import logging

    from yt8m import config, distill_round, ensemble, fast_exit, readers, training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fast_exit.skip_final_garbage_collection()  # 2-3 s less at this task's exit (yt8m/fast_exit.py)
    cfg = config.ensemble_config_from_dict({"quantize_min_elements": quantize_min_elements, "combiner": combiner,
                                            "compression": compression, "size_budget_bytes": size_budget_bytes,
                                            "stacking": stacking}, "ensemble")
    ds = training.open_dataset(dataset.path, dataset.metadata.get("num_classes"), dataset.metadata.get("folds"))
    labels = {split: readers.read_id_labels(training.dataset_files(ds, "video", names))
              for split, names in (("oof", ds.fold_names), ("holdout", [ds.holdout]))}
    teacher = distill_round.teacher_report(teacher_model.path) if teacher_model is not None else None
    report = ensemble.build_ensemble([m.path for m in members], merged_model.path, ds.num_classes,
                                     holdout_labels=labels["holdout"], oof_labels=labels["oof"],
                                     quantize_min_elements=cfg.quantize_min_elements, transform_dir=ds.transform_path,
                                     combiner=cfg.combiner, compression=cfg.compression,
                                     size_budget_bytes=cfg.size_budget_bytes,
                                     holdout_data=training.dataset_files(ds, "frame", [ds.holdout]),
                                     soft_labels=soft_label_kind, soft_label_top_k=soft_label_top_k,
                                     soft_label_dir=soft_labels.path,
                                     teacher_report=teacher, stacking_settings=cfg.stacking)
    member_uris, students = [m.uri for m in members], report
    if teacher_model is not None:
        report = distill_round.finish_round(merged_model.path, report, teacher_model.path, distillation_round,
                                            distillation_keep, soft_labels.path if soft_label_kind else None,
                                            teacher_soft_labels.path if teacher_soft_labels is not None else None,
                                            teacher=teacher)
        if report["distillation"]["kept"] == "teacher":
            member_uris = list(teacher_model.metadata.get("member_uris", []))
        for key, value in report["distillation"].items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                metrics.log_metric(f"distillation_{key}", value)
        for m in students["members"]:
            metrics.log_metric(f"student_{m['name']}_holdout_gap", m["holdout_gap"])
    merged_model.metadata.update({"members": report["plan"]["members"], "precisions": report["plan"]["precisions"],
                                  "weights": report["weights"], "combiner": report["combiner"],
                                  "size_bytes": report["saved_model_bytes"], "oof_gap": report["oof_gap"],
                                  "holdout_gap": report["holdout_gap"], "dataset": dataset.uri,
                                  "member_uris": member_uris})
    if soft_label_kind:
        soft_labels.metadata.update({"kind": soft_label_kind, "top_k": soft_label_top_k, "combiner": report["combiner"],
                                     "oof_gap": report["oof_gap"], "merged_model": merged_model.uri})
    for key in ("oof_gap", "holdout_gap", "saved_model_bytes", "fp32_bytes", "compression_ratio", "holdout_gap_fp32",
                "holdout_gap_compressed", "compression_gap_loss"):
        metrics.log_metric(key, report[key])
    for name, result in report["combiners"].items():
        metrics.log_metric(f"{name}_oof_gap", result["oof_gap"])
    metrics.log_metric("served_vs_combiner_max_abs_diff", report["served_vs_combiner"]["max_abs_diff"] or 0.0)
