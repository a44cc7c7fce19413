"""Benchmark: the readers, the training path included, vs a plain per-record tf.data parse of the same files.

All read the same generated YT8M-format frame-level shards, in one run, best of N passes
(round-robin), each pipeline on ``--threads`` tf.data threads (default 1). The ratio is the cost
per thread: the process CPU seconds per video (``time.process_time``, which other jobs on a shared
machine barely move; wall-clock rates are reported beside it). The plain baseline is what a tf.data tutorial writes:
``TFRecordDataset -> map(parse_single_sequence_example) -> decode_raw -> cast/dequantize ->
padded_batch``. The yt8m candidates are the readers the code runs:
``readers.frame_level_dataset`` in evaluation mode (every frame, file order) and
``readers.training_batches``, what ``Trainer.fit`` reads (shuffled files and records, per-record
parse and checks, frames chosen before decoding, multi-hot labels, full batches): a frame-level
family with every frame (``max_frames`` 300) and with 300 frames sampled with replacement (more
frames decoded than the videos hold: ~165 here), and a video-level family on frame-level data
(the frames' means, as the serving graph computes them).

    python benchmarks/bench_reader.py [--videos 1500 --threads 1 --out benchmarks/results/reader.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import tensorflow as tf

from yt8m import config, readers, schema, storage, synth


def plain_tf_data(files, batch_size):
    def parse(record):
        ctx, seq = tf.io.parse_single_sequence_example(
            record, {"id": tf.io.FixedLenFeature([], tf.string), "labels": tf.io.VarLenFeature(tf.int64)},
            {"rgb": tf.io.FixedLenSequenceFeature([], tf.string), "audio": tf.io.FixedLenSequenceFeature([], tf.string)})
        rgb = tf.cast(tf.io.decode_raw(seq["rgb"], tf.uint8), tf.float32)[:schema.MAX_FRAMES]
        audio = tf.cast(tf.io.decode_raw(seq["audio"], tf.uint8), tf.float32)[:schema.MAX_FRAMES]
        return {"rgb": schema.tf_dequantize(rgb), "audio": schema.tf_dequantize(audio)}

    return (tf.data.TFRecordDataset(files).map(parse, num_parallel_calls=tf.data.AUTOTUNE)
            .padded_batch(batch_size, padded_shapes={"rgb": [schema.MAX_FRAMES, 1024], "audio": [schema.MAX_FRAMES, 128]})
            .prefetch(tf.data.AUTOTUNE))


def with_threads(dataset, threads: int):
    """``dataset`` on a private pool of ``threads`` threads (0: tf.data's shared pool)."""
    if not threads:
        return dataset
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    return dataset.with_options(options)


def training_path(files, classes: int, batch_size: int, videos: int, family: str, **training_fields):
    """``readers.training_batches`` as ``Trainer.fit`` calls it for ``family``: one epoch of full batches."""
    cfg = config.model_config_from_dict({"name": "bench", "family": family,
                                         "training": {"batch_size": batch_size, **training_fields}})
    level = "video" if family in ("logistic", "moe") else "frame"
    return readers.training_batches(files, "frame", level, classes, cfg.training, batches=videos // batch_size,
                                    records=videos)


def timed_pass(dataset) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, videos) of one pass over ``dataset``."""
    cpu, wall, videos = time.process_time(), time.perf_counter(), 0
    for element in dataset:
        features = element[0] if isinstance(element, tuple) else element
        videos += int(tf.shape(features["rgb" if "rgb" in features else "mean_rgb"])[0])
    return time.process_time() - cpu, time.perf_counter() - wall, videos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1500)
    parser.add_argument("--classes", type=int, default=3862)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="tf.data threads per pipeline (0: shared pool)")
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "reader.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        synth.generate(tmp, videos=args.videos, classes=args.classes, seed=0, splits=(("train", 1.0),),
                       progress=False)
        files = storage.expand_pattern(os.path.join(tmp, "train", "*.tfrecord"))
        megabytes = sum(os.path.getsize(f) for f in files) / 1e6
        batch = args.batch_size
        candidates = {
            "plain tf.data parse (baseline)": lambda: plain_tf_data(files, batch),
            "yt8m reader, evaluation (all frames)": lambda: readers.frame_level_dataset(files, args.classes, batch),
            "yt8m training path, frame-level (all frames)": lambda: training_path(
                files, args.classes, batch, args.videos, "dbof"),
            "yt8m training path, frame-level (300 sampled frames)": lambda: training_path(
                files, args.classes, batch, args.videos, "dbof", num_samples=300),
            "yt8m training path, video-level family (frame means)": lambda: training_path(
                files, args.classes, batch, args.videos, "moe"),
        }
        for make in candidates.values():
            timed_pass(with_threads(make(), args.threads))  # warm-up: graph tracing and page cache
        cpu = {name: float("inf") for name in candidates}  # seconds per video (training drops a partial batch)
        wall = dict(cpu)
        for _ in range(args.passes):  # round-robin, so a busy moment slows every candidate alike
            for name, make in candidates.items():
                cpu_s, wall_s, seen = timed_pass(with_threads(make(), args.threads))
                cpu[name], wall[name] = min(cpu[name], cpu_s / seen), min(wall[name], wall_s / seen)
    base = cpu["plain tf.data parse (baseline)"]
    mb_per_video = megabytes / args.videos
    results = {name: {"cpu_ms_per_video": round(cpu[name] * 1e3, 3), "videos_per_cpu_s": round(1 / cpu[name], 1),
                      "mb_per_cpu_s": round(mb_per_video / cpu[name], 1),
                      "wall_videos_per_s": round(1 / wall[name], 1), "speed_vs_baseline": round(base / cpu[name], 2)}
               for name in candidates}
    report = {"videos": args.videos, "megabytes": round(megabytes, 1), "batch_size": args.batch_size,
              "passes": args.passes, "threads": args.threads, "cpus": os.cpu_count(), "tensorflow": tf.__version__,
              "python": platform.python_version(), "results": results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print("| reader | videos per CPU s | MB per CPU s | x baseline (per thread) | wall videos/s |")
    print("|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['videos_per_cpu_s']} | {r['mb_per_cpu_s']} | {r['speed_vs_baseline']} | "
              f"{r['wall_videos_per_s']} |")


if __name__ == "__main__":
    main()
