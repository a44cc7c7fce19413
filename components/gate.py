"""Validation gate component: size, fresh-process load, GAP@20 threshold on the holdout."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from yt8m_pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def gate_op(merged_model: Input[Model], dataset: Input[Dataset], min_gap: float, max_size_bytes: int,
            metrics: Output[Metrics], report: Output[Markdown]) -> str:
    """Return "publish" or "refuse"; the Markdown report says which check failed, its value and limit.

    (A single ``str`` output: kfp.local 2.17 resolves only a task's ``Output`` in dsl.If conditions.)
    """
    import logging

    from yt8m import gate, storage, training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    ds = training.open_dataset(dataset.path, dataset.metadata.get("num_classes"), dataset.metadata.get("folds"))
    result = gate.run_gate(storage.join(merged_model.path, "saved_model"),
                           training.dataset_files(ds, "frame", [ds.holdout]), ds.num_classes, min_gap, max_size_bytes)
    with open(report.path, "w") as f:
        f.write(result.to_markdown())
    for key, value in result.metrics.items():
        metrics.log_metric(key, value)
    metrics.log_metric("passed", int(result.passed))
    for reason in result.reasons():
        logging.getLogger("gate").warning("refused: %s", reason)
    return "publish" if result.passed else "refuse"
