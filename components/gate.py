"""Validation gate component: size, fresh-process load and latency, GAP@20 threshold, and the previous
release's (or, first release, a logistic baseline's) GAP on the same holdout."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Markdown, Metrics, Model, Output

from yt8m_pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def gate_op(merged_model: Input[Model], dataset: Input[Dataset], gate_config: dict, publish_root: str,
            metrics: Output[Metrics], report: Output[Markdown], release_report: Output[HTML]) -> str:
    """Return "publish" or "refuse"; the Markdown report says which check failed, its value and limit; the
    HTML report shows every member's and combiner's GAP, the checks and per-class AP on the holdout.

    (A single ``str`` output: kfp.local 2.17 resolves only a task's ``Output`` in dsl.If conditions.)
    """
    import logging

    from yt8m import config, fast_exit, gate, storage, training
    from yt8m import release_report as report_lib

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fast_exit.skip_final_garbage_collection()  # 2-3 s less at this task's exit (yt8m/fast_exit.py)
    ds = training.open_dataset(dataset.path, dataset.metadata.get("num_classes"), dataset.metadata.get("folds"))
    settings = config.gate_config_from_dict(gate_config, "gate_config")
    result = gate.gate_release(storage.join(merged_model.path, "saved_model"), ds, settings, publish_root)
    with open(report.path, "w") as f:
        f.write(result.to_markdown())
    report_lib.write_report(release_report.path, result, merged_model.path, ds)
    for key, value in result.metrics.items():
        metrics.log_metric(key, value)
    metrics.log_metric("passed", int(result.passed))
    for reason in result.reasons():
        logging.getLogger("gate").warning("refused: %s", reason)
    return "publish" if result.passed else "refuse"
