"""Publish component: atomic, versioned copy of the gated model with a lineage manifest; on Vertex
also a new version of ONE model in the Vertex AI Model Registry."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from yt8m_pipeline.images import CPU_IMAGE


@dsl.component(base_image=CPU_IMAGE, install_kfp_package=False)
def publish_op(merged_model: Input[Model], dataset: Input[Dataset], gate_metrics: Input[Metrics], publish_root: str,
               test_pattern: str, run_config: dict, register_model: bool, gcp_project: str, gcp_region: str,
               published_model: Output[Model]) -> str:
    """Publish the merged model under ``publish_root/versions/``; return the version directory, which is
    also ``published_model``'s URI (and, when ``register_model``, upload it to the Model Registry)."""
    import logging

    from yt8m import config, fast_exit, model_registry, publish, storage

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fast_exit.skip_final_garbage_collection()  # 2-3 s less at this task's exit (yt8m/fast_exit.py)
    manifest = {"model": {"uri": merged_model.uri, **merged_model.metadata},
                "dataset": {"uri": dataset.uri, **dataset.metadata},
                "gate": dict(gate_metrics.metadata),
                "ensemble": storage.read_json(storage.join(merged_model.path, "ensemble.json")),
                "run_config": run_config}
    version_dir = publish.publish_model(storage.join(merged_model.path, "saved_model"), publish_root, manifest,
                                        test_data=test_pattern or None)
    published = storage.read_json(storage.join(version_dir, "manifest.json"))
    published_model.uri = version_dir  # the artifact IS the published version (lineage ends here)
    published_model.metadata.update({"version": published["version"], "size_bytes": published["model_bytes"],
                                     "gap": manifest["gate"].get("gap"), "dataset": dataset.uri,
                                     "members": merged_model.metadata.get("members"), "source_model": merged_model.uri})
    if register_model:
        settings = config.vertex_config_from_dict(run_config.get("vertex"), "run_config.vertex").model_registry
        published_model.metadata["registry_model"] = model_registry.upload_version(version_dir, settings, gcp_project,
                                                                                   gcp_region)
    return version_dir
