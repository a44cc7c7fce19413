import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import random_video
from yt8m import validation, writers


def _record(video_id="vid1", labels=(1, 2), frames=5, rgb_bytes=1024, audio_frames=None):
    ex = tf.train.SequenceExample()
    if video_id is not None:
        ex.context.feature["id"].bytes_list.value.append(video_id.encode())
    ex.context.feature["labels"].int64_list.value.extend(labels)
    for _ in range(frames):
        ex.feature_lists.feature_list["rgb"].feature.add().bytes_list.value.append(b"\x01" * rgb_bytes)
    for _ in range(frames if audio_frames is None else audio_frames):
        ex.feature_lists.feature_list["audio"].feature.add().bytes_list.value.append(b"\x02" * 128)
    return ex.SerializeToString()


@pytest.mark.parametrize("record, reason", [
    (b"\xff\xff\xff garbage", validation.UNPARSABLE),
    (_record(video_id=None), validation.MISSING_ID),
    (_record(rgb_bytes=1000), validation.WRONG_RGB_BYTES),
    (_record(audio_frames=4), validation.FRAME_COUNT_MISMATCH),
    (_record(frames=0), validation.ZERO_FRAMES),
    (_record(labels=(3, 10)), validation.LABEL_OUT_OF_RANGE),
    (_record(labels=(-1,)), validation.LABEL_OUT_OF_RANGE),
])
def test_bad_records_are_rejected_with_reason_file_and_video(record, reason):
    with pytest.raises(validation.InvalidRecord) as err:
        validation.parse_frame_level(record, num_classes=10, source="shard-7.tfrecord")
    assert err.value.reason == reason
    assert "shard-7.tfrecord" in str(err.value)


def test_good_record_round_trips_frames_and_means():
    rng = np.random.default_rng(0)
    vid, labels, rgb, audio = random_video(rng, "abc", 7, 10)
    video = validation.parse_frame_level(writers.frame_level_example(vid, labels, rgb, audio).SerializeToString(), 10)
    assert video.video_id == "abc" and list(video.labels) == labels and video.num_frames == 7
    np.testing.assert_array_equal(video.rgb, rgb)
    mean_rgb, mean_audio = validation.video_level_means(video)
    np.testing.assert_allclose(mean_rgb, (rgb * (4 / 255) + 4 / 512 - 2).mean(0), atol=1e-5)
    np.testing.assert_allclose(mean_audio, (audio * (4 / 255) + 4 / 512 - 2).mean(0), atol=1e-5)
