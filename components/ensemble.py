"""Ensemble component: average the members, quantize large tensors, merge into ONE SavedModel."""

from typing import List

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from yt8m_pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def ensemble_op(members: Input[List[Model]], dataset: Input[Dataset], quantize_min_elements: int,
                merged_model: Output[Model], metrics: Output[Metrics]):
    """Probability-average ``members`` into one quantized graph; report OOF / holdout GAP."""
    import logging

    from yt8m import ensemble, readers, training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ds = training.open_dataset(dataset.path, dataset.metadata.get("num_classes"), dataset.metadata.get("folds"))
    num_classes = ds.num_classes
    labels = {split: readers.read_id_labels(training.dataset_files(ds, "video", names))
              for split, names in (("oof", ds.fold_names), ("holdout", [ds.holdout]))}
    report = ensemble.build_ensemble([m.path for m in members], merged_model.path, num_classes,
                                     holdout_labels=labels["holdout"], oof_labels=labels["oof"],
                                     quantize_min_elements=quantize_min_elements, transform_dir=ds.transform_path)
    merged_model.metadata.update({"members": [m["name"] for m in report["members"]],
                                  "size_bytes": report["saved_model_bytes"], "oof_gap": report["oof_gap"],
                                  "holdout_gap": report["holdout_gap"], "dataset": dataset.uri,
                                  "member_uris": [m.uri for m in members]})
    for key in ("oof_gap", "holdout_gap", "saved_model_bytes", "fp32_bytes", "compression_ratio"):
        metrics.log_metric(key, report[key])
