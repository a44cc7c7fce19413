"""Preprocess component: validate, fold-split and featurize frame-level TFRecords (Beam)."""

from kfp import dsl
from kfp.dsl import HTML, Dataset, Input, Metrics, Output

from yt8m_pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def preprocess_op(raw_data: Input[Dataset], data_fingerprint: str, num_classes: int, folds: int,
                  holdout_fraction: float, runner: str, dataset: Output[Dataset], counts: Output[Metrics],
                  report: Output[HTML], standardized_features: bool = False):
    """Run the Beam job on the files ``raw_data`` names (its URI is the pattern, local or gs://, never a /gcs/
    path); the dataset artifact holds fold shards, video-level features and quarantine.

    ``data_fingerprint`` (the files' names, sizes and times, also in ``raw_data``'s metadata) is a
    parameter so that this task's cache key changes when the files do. ``standardized_features``: also
    write the z-scored means (``mean_rgb_z``, ``mean_audio_z``) that standardized members train on.
    """
    from yt8m import fast_exit
    from yt8m_pipeline.beam_jobs.preprocess import run_preprocess

    fast_exit.skip_final_garbage_collection()  # 2-3 s less at this task's exit (yt8m/fast_exit.py)
    input_pattern = raw_data.uri
    # num_shards=0: Beam picks the sharding and writes stream (a fixed count groups in memory locally).
    result = run_preprocess(input_pattern, dataset.path, num_classes=num_classes, folds=folds,
                            holdout_fraction=holdout_fraction, runner=runner, num_shards=0,
                            standardized_features=standardized_features)
    total = result["total"]
    dataset.metadata.update({"source": input_pattern, "source_fingerprint": data_fingerprint,
                             "num_classes": num_classes, "folds": folds,
                             "holdout_fraction": holdout_fraction, "standardized_features": standardized_features,
                             "records_read": total["read"],
                             "records_written": total["written_total"],
                             "records_quarantined": total["quarantined_total"], "written_per_split": total["written"],
                             "quarantined_per_reason": total["quarantined"]})
    from yt8m import data_report

    for key, value in data_report.count_metrics(total).items():
        counts.log_metric(key, value)
    data_report.copy_report(dataset.path, report.path)
