"""Load test of the preprocessing job on >= 5 GB of generated YT8M data (``pytest -m load``; not in CI).

Generates ``YT8M_LOAD_GB`` (default 5) GB of synthetic frame-level shards, damages one of
them (truncated), runs the job on the local runner with its at-scale settings
(``num_shards=0``, ``verify_outputs=False``), and checks that the counts reconcile, the
damaged file is reported and nothing was lost. The record bytes stream through the job (no
step holds them), so memory grows only with the per-video sums (~10-20 kB per video on the
local runner). Needs ~2x the data size of free disk. With ``YT8M_LOAD_REPORT=FILE.json`` it
writes what it measured (videos, GB, wall and CPU seconds of the job, peak RSS) there; the
last run is in benchmarks/results/preprocess_load.md.
"""

import json
import os
import resource
import time

import pytest

from yt8m import storage, synth
from yt8m.dataset import Dataset
from yt8m_pipeline.beam_jobs import preprocess

pytestmark = pytest.mark.load


def test_five_gigabytes_reconcile_with_a_damaged_shard(tmp_path):
    gigabytes = float(os.environ.get("YT8M_LOAD_GB", "5"))
    videos = int(gigabytes * 1e9 / 175e3)  # synthetic videos average ~185 kB: >= the size even after the damage
    started = time.time()
    synth.generate(str(tmp_path / "in"), videos=videos, classes=3862, seed=3, splits=(("train", 1.0),),
                   videos_per_shard=1000, progress=False)
    generated = time.time() - started
    files = storage.expand_pattern(str(tmp_path / "in" / "train" / "*.tfrecord"))
    size = sum(os.path.getsize(f) for f in files)
    with open(files[-1], "r+b") as f:  # truncate the last shard in the middle
        f.truncate(os.path.getsize(files[-1]) // 2)
    size = sum(os.path.getsize(f) for f in files)
    assert size >= gigabytes * 1e9
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    wall, cpu = time.perf_counter(), time.process_time()
    counts = preprocess.run_preprocess(str(tmp_path / "in" / "train" / "*.tfrecord"), str(tmp_path / "out"), 3862,
                                       5, 0.1, num_shards=0, verify_outputs=False)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert counts["reconciled"]
    total = counts["total"]
    assert total["unreadable_files"]["truncated"] == 1
    assert total["read"] == total["written_total"] + total["quarantined_total"]
    assert Dataset.open(str(tmp_path / "out")).num_videos() == total["written_total"]
    report = {"videos_generated": videos, "files": len(files), "input_bytes": size, "records_read": total["read"],
              "videos_written": total["written_total"], "quarantined": total["quarantined_total"],
              "unreadable_bytes": total["unreadable_bytes"], "generate_seconds": round(generated, 1),
              "job_wall_seconds": round(wall, 1), "job_cpu_seconds": round(cpu, 1),
              "job_elapsed_seconds_beam": counts["elapsed_seconds"],
              "peak_rss_mb_before_job": round(rss_before / 1024), "peak_rss_mb_after_job": round(rss_after / 1024),
              "load_avg_1m_at_end": os.getloadavg()[0], "cpus": os.cpu_count()}
    print(json.dumps(report))
    if os.environ.get("YT8M_LOAD_REPORT"):
        with open(os.environ["YT8M_LOAD_REPORT"], "w") as f:
            json.dump(report, f, indent=2)
