"""Load test of the preprocessing job on >= 5 GB of generated YT8M data (``pytest -m load``; not in CI).

Generates ``YT8M_LOAD_GB`` (default 5) GB of synthetic frame-level shards, damages one of
them (truncated), runs the job on the local runner with its at-scale settings
(``num_shards=0``, ``verify_outputs=False``), and checks that the counts reconcile, the
damaged file is reported and nothing was lost. The local runner keeps its intermediate
collections in memory (see beam_jobs/preprocess.py): expect several GB of RAM per GB of
input. Needs ~2x the data size of free disk.
"""

import os

import pytest

from yt8m import storage, synth
from yt8m.dataset import Dataset
from yt8m_pipeline.beam_jobs import preprocess

pytestmark = pytest.mark.load


def test_five_gigabytes_reconcile_with_a_damaged_shard(tmp_path):
    gigabytes = float(os.environ.get("YT8M_LOAD_GB", "5"))
    videos = int(gigabytes * 1e9 / 200e3)  # synthetic videos average ~200 kB
    synth.generate(str(tmp_path / "in"), videos=videos, classes=3862, seed=3, splits=(("train", 1.0),),
                   videos_per_shard=1000, progress=False)
    files = storage.expand_pattern(str(tmp_path / "in" / "train" / "*.tfrecord"))
    size = sum(os.path.getsize(f) for f in files)
    assert size >= gigabytes * 1e9 * 0.9
    with open(files[-1], "r+b") as f:  # truncate the last shard in the middle
        f.truncate(os.path.getsize(files[-1]) // 2)
    counts = preprocess.run_preprocess(str(tmp_path / "in" / "train" / "*.tfrecord"), str(tmp_path / "out"), 3862,
                                       5, 0.1, num_shards=0, verify_outputs=False)
    assert counts["reconciled"]
    total = counts["total"]
    assert total["unreadable_files"]["truncated"] == 1
    assert total["read"] == total["written_total"] + total["quarantined_total"]
    assert Dataset.open(str(tmp_path / "out")).num_videos() == total["written_total"]
