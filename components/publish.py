"""Publish component: atomic, versioned copy of the gated model with a lineage manifest."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model

from yt8m_pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def publish_op(merged_model: Input[Model], dataset: Input[Dataset], gate_metrics: Input[Metrics], publish_root: str,
               test_pattern: str, run_config: dict) -> str:
    """Publish the merged model under ``publish_root/versions/``; return the version directory."""
    import logging

    from yt8m import publish, storage

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    manifest = {"model": {"uri": merged_model.uri, **merged_model.metadata},
                "dataset": {"uri": dataset.uri, **dataset.metadata},
                "gate": dict(gate_metrics.metadata),
                "ensemble": storage.read_json(storage.join(merged_model.path, "ensemble.json")),
                "run_config": run_config}
    return publish.publish_model(storage.join(merged_model.path, "saved_model"), publish_root, manifest,
                                 test_data=test_pattern or None)
