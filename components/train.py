"""Training component: one model config, K folds (out-of-fold predictions) + the final member."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from yt8m_pipeline.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train_op(model_config: dict, dataset: Input[Dataset], top_k: int, model: Output[Model],
             metrics: Output[Metrics]):
    """Train ``model_config`` on ``dataset``'s folds; the model artifact holds weights, OOF preds, SavedModel."""
    import logging

    from yt8m import config, training

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config.model_config_from_dict(model_config)
    result = training.train_member(cfg, dataset.path, model.path, num_classes=int(dataset.metadata["num_classes"]),
                                   folds=int(dataset.metadata["folds"]), top_k=top_k)
    model.metadata.update({"name": cfg.name, "family": cfg.family, "preset": cfg.preset,
                           "parameters": result["parameters"], "size_bytes": result["saved_model_bytes"],
                           "oof_gap": result["oof"]["gap"], "holdout_gap": result["holdout"]["gap"],
                           "dataset": dataset.uri})
    for split in ("oof", "holdout"):
        for key, value in result[split].items():
            metrics.log_metric(f"{split}_{key}", value)
