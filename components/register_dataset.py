"""Register dataset component: the Dataflow job's gs:// output, checked, as the pipeline's Dataset artifact."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from yt8m_pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def register_dataset_op(raw_data: Input[Dataset], output_dir: str, gcp_resources: str, data_fingerprint: str,
                        num_classes: int, folds: int, holdout_fraction: float, dataset: Output[Dataset],
                        counts: Output[Metrics], report: Output[HTML]):
    """Finalize (if needed) and check the preprocessing job's output folder ``output_dir`` (gs://, never a
    /gcs/ path), then make it the ``dataset`` artifact with the metadata the local preprocess task sets.

    ``gcp_resources`` is the finished Dataflow job (from WaitGcpResourcesOp: this task runs after it);
    ``raw_data`` is consumed for lineage (raw data -> dataset). Fails, listing why, if the counts do not
    reconcile or do not match dataset.json.
    """
    from yt8m import fast_exit
    from yt8m_pipeline import dataflow

    fast_exit.skip_final_garbage_collection()  # 2-3 s less at this task's exit (yt8m/fast_exit.py)
    metadata = dataflow.register_dataset(output_dir, num_classes, folds, holdout_fraction, data_fingerprint)
    totals = metadata.pop("counts")
    dataset.uri = output_dir  # the artifact IS the job's output folder
    dataset.metadata.update({**metadata, "raw_data": raw_data.uri,
                             "dataflow_job": dataflow.dataflow_job_uri(gcp_resources)})
    from yt8m import data_report

    for key, value in data_report.count_metrics(totals).items():
        counts.log_metric(key, value)
    data_report.copy_report(output_dir, report.path)
