"""6-way test-time augmentation as a per-member switch (``training.tta``): the trainer's predictions
(OOF and holdout, ``training.predict``) and the served graph (``export.ServingModule``) apply it alike."""

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import random_video, write_videos
from yt8m import config as config_lib
from yt8m import export, training
from yt8m.models import registry

CLASSES = 12


def _member(name, family, tta, seed):
    import keras

    keras.utils.set_random_seed(seed)
    cfg = config_lib.model_config_from_dict({"name": name, "family": family, "training": {"tta": tta,
                                                                                         "eval_batch_size": 8}})
    model = registry.build_model(family, CLASSES, "small")
    return cfg, export.Member(name, model, registry.get_family(family).input_level, config_lib.to_dict(cfg))


@pytest.fixture(scope="module")
def holdout(tmp_path_factory):
    rng = np.random.default_rng(0)
    lengths = [1, 2, 3, 7, 20, 41] + [int(n) for n in rng.integers(4, 60, 12)]
    videos = [random_video(rng, f"v{i}", n, CLASSES) for i, n in enumerate(lengths)]
    path = str(tmp_path_factory.mktemp("tta") / "holdout.tfrecord")
    return path, write_videos(path, videos)


def _served(members, records, tmp_path, weights=None):
    export_dir = str(tmp_path / "served")
    export.export_serving_model(members, export_dir, weights, compression="none")
    out = export.load_serving_model(export_dir)(serialized=tf.constant(records))
    return [v.decode() for v in out["video_id"].numpy()], out["scores"].numpy()


def test_served_tta_member_equals_the_trainers_tta_predictions(holdout, tmp_path):
    path, records = holdout
    cfg, member = _member("gru", "gru", True, 1)
    ids, tta_scores, _ = training.predict(member.model, "frame", [path], CLASSES, cfg.training)
    _, plain, _ = training.predict(member.model, "frame", [path], CLASSES, config_lib.TrainingConfig())
    assert np.abs(tta_scores - plain).max() > 1e-3  # the switch changes the predictions (an order-aware GRU)
    served_ids, served = _served([member], records, tmp_path)
    assert served_ids == ids
    np.testing.assert_allclose(served, tta_scores, atol=1e-5)


def test_tta_is_per_member_in_a_merged_graph(holdout, tmp_path):
    path, records = holdout
    cfg_a, a = _member("gru", "gru", True, 2)
    cfg_b, b = _member("lstm", "lstm", False, 3)
    _, pa, _ = training.predict(a.model, "frame", [path], CLASSES, cfg_a.training)
    _, pb, _ = training.predict(b.model, "frame", [path], CLASSES, cfg_b.training)
    _, served = _served([a, b], records, tmp_path, [0.25, 0.75])
    np.testing.assert_allclose(served, 0.25 * pa + 0.75 * pb, atol=1e-5)


def test_tta_is_refused_for_video_level_families():
    with pytest.raises(config_lib.ConfigError, match=r"models\[0\].training.tta: a frame-level recipe, but family "
                                                     "'moe' is video-level"):
        config_lib.run_config_from_dict({"models": [{"name": "m", "family": "moe", "training": {"tta": True}}]})
