"""Benchmark: the training reader vs a plain per-record tf.data parse of the same files.

Both read the same generated YT8M-format frame-level shards, in one run, best of N
passes. The plain baseline is what a tf.data tutorial writes: ``TFRecordDataset ->
map(parse_single_sequence_example) -> decode_raw -> cast/dequantize -> padded_batch``.
The reader is ``yt8m.readers.frame_level_dataset`` (batched parse, validation with named
errors, dequantize, truncate/pad to 300 frames, multi-hot labels), in its evaluation mode
(every frame) and its training mode (shuffle + 300 frames sampled with replacement).

    python benchmarks/bench_reader.py [--videos 1500 --out benchmarks/results/reader.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import tensorflow as tf

from yt8m import readers, schema, storage, synth


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


def timed_pass(dataset) -> tuple[float, int]:
    start, videos = time.perf_counter(), 0
    for features in dataset:
        videos += int(tf.shape((features[0] if isinstance(features, tuple) else features)["rgb"])[0])
    return time.perf_counter() - start, videos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=1500)
    parser.add_argument("--classes", type=int, default=3862)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "reader.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        synth.generate(tmp, videos=args.videos, classes=args.classes, seed=0, splits=(("train", 1.0),),
                       progress=False)
        files = storage.expand_pattern(os.path.join(tmp, "train", "*.tfrecord"))
        megabytes = sum(os.path.getsize(f) for f in files) / 1e6
        candidates = {
            "plain tf.data parse (baseline)": lambda: plain_tf_data(files, args.batch_size),
            "yt8m reader, evaluation (all frames)": lambda: readers.frame_level_dataset(
                files, args.classes, args.batch_size),
            "yt8m reader, training (shuffle, 300 sampled frames)": lambda: readers.frame_level_dataset(
                files, args.classes, args.batch_size, training=True, num_samples=300, seed=0),
        }
        for make in candidates.values():
            timed_pass(make())  # warm-up: graph tracing and page cache
        best = {name: float("inf") for name in candidates}
        for _ in range(args.passes):  # round-robin, so a busy moment slows every candidate alike
            for name, make in candidates.items():
                best[name] = min(best[name], timed_pass(make())[0])
        results = {name: {"seconds": round(sec, 3), "videos_per_s": round(args.videos / sec, 1),
                          "mb_per_s": round(megabytes / sec, 1)} for name, sec in best.items()}
    base = results["plain tf.data parse (baseline)"]["seconds"]
    for r in results.values():
        r["speed_vs_baseline"] = round(base / r["seconds"], 2)
    report = {"videos": args.videos, "megabytes": round(megabytes, 1), "batch_size": args.batch_size,
              "passes": args.passes, "cpus": os.cpu_count(), "tensorflow": tf.__version__,
              "python": platform.python_version(), "results": results}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(report, f, indent=2)
    print(f"| reader | videos/s | MB/s | x baseline |\n|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['videos_per_s']} | {r['mb_per_s']} | {r['speed_vs_baseline']} |")


if __name__ == "__main__":
    main()
