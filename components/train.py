"""Training components: ``train_op`` trains one fold of one config (its out-of-fold predictions),
``train_final_op`` one config's final member.

Each is one task (one GPU on Vertex). The pipeline collects every fold task's output with
``collect_folds_op`` and hands the collection to the final-member tasks. A distillation student gets its
teacher (the previous ensemble's ``soft_labels`` artifact, ``kfold.with_teacher``) as an optional input.
"""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from yt8m_pipeline.images import GPU_IMAGE


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train_op(model_config: dict, fold: int, dataset: Input[Dataset], top_k: int,
             oof_predictions: Output[Dataset], metrics: Output[Metrics], teacher: Input[Dataset] = None):
    """Train ``model_config`` on every fold but ``fold``; predict ``fold`` (top-k by video id) + its metrics."""
    import logging

    from yt8m import config, fast_exit, kfold

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fast_exit.skip_final_garbage_collection()  # 2-3 s less at this task's exit (yt8m/fast_exit.py)
    cfg = kfold.with_teacher(config.model_config_from_dict(model_config), teacher.path if teacher else None)
    # The dataset is read through its dataset.json (training.open_dataset); the metadata must agree with it.
    result = kfold.train_fold(cfg, dataset.path, oof_predictions.path,
                              num_classes=dataset.metadata.get("num_classes"), folds=dataset.metadata.get("folds"),
                              fold=int(fold), top_k=top_k)
    # The config and fold live here (and in fold_metrics.json): a task's display name cannot hold a loop item.
    oof_predictions.metadata.update({"name": cfg.name, "family": cfg.family, "fold": int(fold),
                                     "config_hash": config.config_hash(cfg),
                                     "folds": result["folds"], "held_out": result["held_out"],
                                     "oof_gap": result["metrics"]["gap"], "dataset": dataset.uri})
    for key, value in result["metrics"].items():
        metrics.log_metric(f"fold_{key}", value)


@dsl.component(base_image=GPU_IMAGE, install_kfp_package=False)
def train_final_op(model_config: dict, dataset: Input[Dataset], collected_folds: Input[Dataset], top_k: int,
                   model: Output[Model], metrics: Output[Metrics], teacher: Input[Dataset] = None):
    """Gather this config's out-of-fold predictions, train the final member on all folds, export it."""
    import logging

    from yt8m import config, fast_exit, kfold

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    fast_exit.skip_final_garbage_collection()  # 2-3 s less at this task's exit (yt8m/fast_exit.py)
    cfg = kfold.with_teacher(config.model_config_from_dict(model_config), teacher.path if teacher else None)
    result = kfold.train_final(cfg, dataset.path, model.path, num_classes=dataset.metadata.get("num_classes"),
                               folds=dataset.metadata.get("folds"),
                               fold_dirs=kfold.member_fold_dirs(collected_folds.path, cfg.name), top_k=top_k)
    folds = result["folds"]
    model.metadata.update({"name": cfg.name, "family": cfg.family, "preset": cfg.preset,
                           "config_hash": config.config_hash(cfg),
                           "parameters": result["parameters"], "size_bytes": result["saved_model_bytes"],
                           "oof_gap": result["oof"]["gap"], "holdout_gap": result["holdout"]["gap"],
                           "folds": folds, "dataset": dataset.uri, "collected_folds": collected_folds.uri,
                           "teacher": teacher.uri if teacher else ""})
    for split in ("oof", "holdout"):
        for key, value in result[split].items():
            metrics.log_metric(f"{split}_{key}", value)
