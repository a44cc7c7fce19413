import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import independent_sequence_example, random_video, write_videos
from yt8m import readers, schema, writers

NUM_CLASSES = 12


@pytest.fixture(scope="module")
def frame_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames")
    rng = np.random.default_rng(1)
    lengths = [[5, 310, 40], [1, 300, 77]]
    videos = [[random_video(rng, f"f{i}v{j}", n, NUM_CLASSES) for j, n in enumerate(ls)] for i, ls in enumerate(lengths)]
    paths = []
    for i, vids in enumerate(videos):
        paths.append(str(d / f"train{i:04d}.tfrecord"))
        write_videos(paths[-1], vids)
    return paths, [v for vids in videos for v in vids]


def test_eval_reader_dequantizes_truncates_pads_and_labels_every_video(frame_files):
    paths, videos = frame_files
    ds = readers.frame_level_dataset(paths, NUM_CLASSES, batch_size=4, include_ids=True, max_frames=300)
    seen = 0
    for features, labels in ds:
        for b, vid in enumerate(features["video_id"].numpy()):
            video_id, label_ids, rgb, audio = next(v for v in videos if v[0] == vid.decode())
            n = min(len(rgb), 300)
            assert features["num_frames"][b] == n
            np.testing.assert_array_equal(features["rgb"][b, :n].numpy(), schema.dequantize(rgb[:n]))
            np.testing.assert_array_equal(features["audio"][b, :n].numpy(), schema.dequantize(audio[:n]))
            assert not features["rgb"][b, n:].numpy().any()
            expected = np.zeros(NUM_CLASSES, np.float32)
            expected[label_ids] = 1
            np.testing.assert_array_equal(labels[b].numpy(), expected)
            seen += 1
    assert seen == len(videos)
    assert features["rgb"].shape[1:] == (300, 1024)


def test_training_reader_samples_frames_with_replacement_from_valid_frames_in_order(frame_files):
    paths, videos = frame_files
    ds = readers.frame_level_dataset(paths, NUM_CLASSES, batch_size=6, training=True, num_samples=32,
                                     include_ids=True, seed=3)
    features, _ = next(iter(ds))
    assert features["rgb"].shape == (6, 32, 1024)
    assert (features["num_frames"].numpy() == 32).all()
    for b, vid in enumerate(features["video_id"].numpy()):
        rgb = schema.dequantize(next(v for v in videos if v[0] == vid.decode())[2][:300])
        sampled = features["rgb"][b].numpy()
        # every sampled frame is one of the video's real frames, in temporal order
        positions = [int(np.flatnonzero((rgb == frame).all(axis=1))[0]) for frame in sampled]
        assert positions == sorted(positions)


def test_reader_reads_records_from_an_independent_writer(tmp_path):
    rng = np.random.default_rng(2)
    rgb, audio = rng.integers(0, 256, (9, 1024), np.uint8), rng.integers(0, 256, (9, 128), np.uint8)
    path = str(tmp_path / "x.tfrecord")
    writers.write_tfrecords(path, [independent_sequence_example(b"zz", [4], rgb, audio)])
    features, labels = next(iter(readers.frame_level_dataset(path, NUM_CLASSES, 1, include_ids=True)))
    assert features["video_id"][0] == b"zz" and labels[0, 4] == 1 and features["num_frames"][0] == 9


@pytest.mark.parametrize("bad, message", [
    (dict(rgb_bytes=1000), "rgb frames must have 1024 bytes"),
    (dict(audio_frames=3), "rgb/audio frame count mismatch"),
    (dict(labels=[99]), "label outside [0, 12)"),
])
def test_bad_record_error_names_reason_file_and_video(tmp_path, bad, message):
    ex = tf.train.SequenceExample()
    ex.context.feature["id"].bytes_list.value.append(b"badvid")
    ex.context.feature["labels"].int64_list.value.extend(bad.get("labels", [1]))
    for _ in range(5):
        ex.feature_lists.feature_list["rgb"].feature.add().bytes_list.value.append(b"\0" * bad.get("rgb_bytes", 1024))
    for _ in range(bad.get("audio_frames", 5)):
        ex.feature_lists.feature_list["audio"].feature.add().bytes_list.value.append(b"\0" * 128)
    good = writers.frame_level_example("goodvid", [1], np.zeros((5, 1024), np.uint8), np.zeros((5, 128), np.uint8))
    path = str(tmp_path / "broken0001.tfrecord")
    writers.write_tfrecords(path, [good.SerializeToString(), ex.SerializeToString()])
    with pytest.raises(tf.errors.InvalidArgumentError) as err:
        list(readers.frame_level_dataset(path, NUM_CLASSES, 2))
    text = str(err.value)
    assert message in text and "broken0001.tfrecord" in text and "badvid" in text and "goodvid" not in text


def test_video_level_reader_and_id_labels(tmp_path):
    path = str(tmp_path / "video.tfrecord")
    rng = np.random.default_rng(4)
    means = rng.normal(size=(3, 1152)).astype(np.float32)
    writers.write_tfrecords(path, [writers.video_level_example(f"v{i}", [i], m[:1024], m[1024:]).SerializeToString()
                                   for i, m in enumerate(means)])
    features, labels = next(iter(readers.video_level_dataset(path, NUM_CLASSES, 8, include_ids=True)))
    np.testing.assert_array_equal(features["mean_rgb"].numpy(), means[:, :1024])
    assert labels.numpy().argmax(1).tolist() == [0, 1, 2]
    assert readers.read_id_labels(path) == {"v0": [0], "v1": [1], "v2": [2]}


def test_missing_files_give_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no input files match"):
        readers.frame_level_dataset(str(tmp_path / "nothing*.tfrecord"), NUM_CLASSES, 2)


def _video_ids(ds):
    return [v.decode() for features, _ in ds for v in features["video_id"].numpy()]


def test_training_batches_are_a_function_of_seed_and_epoch_and_resume_skips_whole_batches(tmp_path):
    from yt8m import config as config_lib

    rng = np.random.default_rng(4)
    paths = []
    for i in range(3):
        paths.append(str(tmp_path / f"t{i}.tfrecord"))
        write_videos(paths[-1], [random_video(rng, f"t{i}v{j}", int(rng.integers(1, 6)), NUM_CLASSES)
                                 for j in range(10)])
    t = config_lib.model_config_from_dict({"name": "r", "family": "dbof", "training": {
        "batch_size": 4, "num_samples": 5, "seed": 9}}).training

    def batches(epoch, skip=0):
        return readers.training_batches(paths, "frame", "frame", NUM_CLASSES, t, epoch=epoch, skip_batches=skip,
                                        batches=7, records=30, include_ids=True)

    first = _video_ids(batches(0))
    assert len(first) == 28 and len(set(first)) == 28  # 7 full batches, no video twice within the epoch
    assert _video_ids(batches(0)) == first  # the same (seed, epoch): the same stream
    assert _video_ids(batches(1)) != first  # another epoch: another order
    assert _video_ids(batches(0, skip=3)) == first[12:]  # a resumed run continues where it stopped
    features, targets = next(iter(batches(0)))
    assert features["rgb"].shape == (4, 5, 1024) and targets["labels"].shape == (4, NUM_CLASSES)


def test_dequantize_frames_is_the_starter_formula_for_every_byte():
    codes = np.arange(256, dtype=np.uint8)
    for shape in ((256,), (4, 64), (2, 2, 64)):
        out = readers.dequantize_frames(tf.constant(codes.reshape(shape))).numpy()
        assert out.dtype == np.float32
        np.testing.assert_array_equal(out, schema.dequantize(codes).reshape(shape))


def test_training_batches_of_sampled_frames_are_the_dequantized_stored_frames_in_order(frame_files):
    """Sampled frames travel uint8 through the batch and are dequantized per batch: the same float32 frames."""
    from yt8m import config as config_lib

    paths, videos = frame_files
    t = config_lib.model_config_from_dict({"name": "r", "family": "dbof", "training": {
        "batch_size": 6, "num_samples": 32, "seed": 5}}).training
    (features, _), = list(readers.training_batches(paths, "frame", "frame", NUM_CLASSES, t, batches=1, records=6,
                                                   include_ids=True))
    assert features["rgb"].dtype == tf.float32 and features["rgb"].shape == (6, 32, 1024)
    assert features["audio"].dtype == tf.float32 and features["audio"].shape == (6, 32, 128)
    for b, vid in enumerate(features["video_id"].numpy()):
        _, _, rgb, audio = next(v for v in videos if v[0] == vid.decode())
        stored_rgb, stored_audio = schema.dequantize(rgb[:300]), schema.dequantize(audio[:300])
        positions = [int(np.flatnonzero((stored_rgb == frame).all(axis=1))[0]) for frame in features["rgb"][b].numpy()]
        assert positions == sorted(positions)
        np.testing.assert_array_equal(features["audio"][b].numpy(), stored_audio[positions])
