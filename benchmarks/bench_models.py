"""Benchmark the model zoo on CPU: training speed of every family's small preset, the input
pipeline's own rate, and the published-size table.

    python benchmarks/bench_models.py [--videos 300 --classes 50 --batch 32 --num-samples 300
                                       --steps 5 --warmup 2 --out-dir benchmarks/results]

1. Generates a synthetic frame-level dataset (``yt8m.synth.generate``) in a temp directory.
2. Input pipeline: iterates ``yt8m.readers.frame_level_dataset`` over it (one repeating
   reader; the first pass is warm-up, then ``--passes`` passes are timed), at evaluation
   (every frame up to 300, zero-padded to 300) and at training (``num_samples`` frames
   sampled with replacement, shuffled); videos/s and frames/s (sum of ``num_frames``).
3. Training: per family (small preset, ``--classes`` classes), ``--warmup`` then ``--steps``
   ``train_on_batch`` steps on in-memory batches taken from the training reader (video-level
   families get the masked frame means, as the serving graph feeds them); examples/s.
4. Published sizes: ``yt8m.models.sizes.model_size_table()`` (builds each published model once).

Writes ``models.json`` and ``models.md`` into ``--out-dir``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from yt8m import readers, synth  # noqa: E402
from yt8m.models import registry, sizes  # noqa: E402


def pipeline_rate(files, classes: int, batch: int, videos: int, passes: int, training: bool,
                  num_samples: int | None) -> dict:
    """Steady-state rate of one repeating reader: one pass of warm-up, then ``passes`` passes timed."""
    ds = readers.frame_level_dataset(files, classes, batch, training=training,
                                     num_samples=num_samples if training else None, seed=0, repeat=True)
    per_pass = -(-videos // batch)
    it = iter(ds)
    for _ in range(per_pass):  # warm-up: tracing, thread pools, page cache
        next(it)
    start = time.perf_counter()
    count = frames = 0
    for _ in range(passes * per_pass):
        features, _ = next(it)
        count += int(features["num_frames"].shape[0])
        frames += int(np.sum(features["num_frames"]))
    secs = time.perf_counter() - start
    return {"mode": "training" if training else "evaluation", "num_samples": num_samples if training else None,
            "batch": batch, "videos": count, "seconds": round(secs, 3), "videos_per_s": round(count / secs, 1),
            "frames_per_s": round(frames / secs, 1)}


def training_batches(files, classes: int, batch: int, num_samples: int, count: int):
    ds = readers.frame_level_dataset(files, classes, batch, training=True, num_samples=num_samples, seed=0,
                                     repeat=True)
    out = []
    for features, labels in ds.take(count):
        out.append(({k: v.numpy() for k, v in features.items()}, labels.numpy()))
    return out


def video_level(features: dict) -> dict:
    denom = np.maximum(features["num_frames"], 1).astype(np.float32)[:, None]
    return {"mean_rgb": features["rgb"].sum(1) / denom, "mean_audio": features["audio"].sum(1) / denom}


def training_rate(family: str, classes: int, batches, warmup: int, steps: int) -> dict:
    keras.utils.set_random_seed(0)
    fam = registry.get_family(family)
    model = registry.build_model(family, classes, "small")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=keras.losses.BinaryCrossentropy())
    feed = [(x if fam.input_level == "frame" else video_level(x), y) for x, y in batches]
    start = time.perf_counter()
    for i in range(warmup):
        model.train_on_batch(*feed[i % len(feed)])
    warmup_secs = time.perf_counter() - start
    start = time.perf_counter()
    examples = 0
    for i in range(steps):
        x, y = feed[(warmup + i) % len(feed)]
        loss = model.train_on_batch(x, y)
        examples += len(y)
    secs = time.perf_counter() - start
    result = {"family": family, "input_level": fam.input_level, "parameters": int(model.count_params()),
              "batch": len(feed[0][1]), "frames": int(feed[0][0]["rgb"].shape[1]) if fam.input_level == "frame"
              else None, "steps": steps, "seconds": round(secs, 3), "examples_per_s": round(examples / secs, 1),
              "warmup_seconds": round(warmup_secs, 2), "final_loss": round(float(np.asarray(loss).reshape(-1)[0]), 4)}
    del model
    keras.backend.clear_session()
    return result


def _fmt_range(v):
    if v is None:
        return ""
    if isinstance(v, (list, tuple)):
        return f"{v[0] / 1e6:.0f}-{v[1] / 1e6:.0f}M" if v[0] > 1e4 else f"{v[0]}-{v[1]}"
    return f"{v / 1e6:.1f}M" if v > 1e4 else f"{v}"


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [
        "# Model zoo benchmark (CPU)",
        "",
        f"`python benchmarks/bench_models.py` on {env['cpus']} CPUs, Python {env['python']}, TensorFlow "
        f"{env['tensorflow']}, Keras {env['keras']}; 1-min load average {env['load_average_at_start'][0]} at start, "
        f"{env['load_average_at_end'][0]} at end (other jobs share the CPUs: rates are indicative). "
        f"Synthetic data: {report['data']['videos']} videos, "
        f"{report['data']['classes']} classes, {report['data']['mean_frames']:.0f} frames/video on average.",
        "",
        "## Input pipeline (`yt8m.readers.frame_level_dataset`)",
        "",
        "| mode | frames per video | videos/s | frames/s (sum of num_frames) |",
        "| --- | --- | --- | --- |",
    ]
    for p in report["pipeline"]:
        frames = f"{p['num_samples']} sampled" if p["num_samples"] else "all (<= 300)"
        lines.append(f"| {p['mode']} | {frames} | {p['videos_per_s']:,.0f} | {p['frames_per_s']:,.0f} |")
    t = report["settings"]
    lines += [
        "",
        f"## Training, small presets ({t['classes']} classes, batch {t['batch']}, {t['num_samples']} frames per "
        f"video, {t['steps']} steps after {t['warmup']} warm-up)",
        "",
        "Training examples/s on in-memory batches; `input-bound` if the training reader (same settings) is slower.",
        "",
        "| family | level | parameters | examples/s | step ms | vs reader |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    reader = next(p for p in report["pipeline"] if p["mode"] == "training")["videos_per_s"]
    for r in report["training"]:
        bound = "input-bound" if reader < r["examples_per_s"] else "model-bound"
        lines.append(f"| {r['family']} | {r['input_level']} | {r['parameters']:,} | {r['examples_per_s']:,.0f} | "
                     f"{1000 * r['seconds'] / r['steps']:.0f} | {bound} |")
    if report.get("published"):
        lines += [
            "",
            "## Published presets (3,862 classes; built, not trained)",
            "",
            "uint8: tensors > 17,000 elements as uint8 + 256-level codebook (1st place 2018); `uint8 export` is "
            "yt8m.export's per-channel scale/offset scheme.",
            "",
            "| family | parameters | published | error | fp32 MiB | published fp32 | uint8 MiB | published uint8 "
            "| uint8 export MiB |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in report["published"]:
            err = "" if r["relative_error"] is None else f"{100 * r['relative_error']:+.2f}%"
            lines.append(
                f"| {r['family']} | {r['parameters']:,} | {_fmt_range(r['published_parameters'])} | {err} | "
                f"{r['fp32_mib']:,.1f} | {_fmt_range(r['published_fp32_mib'])} | {r['uint8_mib']:,.1f} | "
                f"{_fmt_range(r['published_uint8_mib'])} | {r['uint8_export_mib']:,.1f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--videos", type=int, default=300)
    parser.add_argument("--classes", type=int, default=50)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--num-samples", type=int, default=300, help="frames sampled per video for training")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--passes", type=int, default=3, help="timed reader passes over the data")
    parser.add_argument("--families", nargs="*", default=None)
    parser.add_argument("--skip-published", action="store_true")
    parser.add_argument("--out-dir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    args = parser.parse_args(argv)

    registry._load_families()
    families = args.families or sorted(registry.FAMILIES, key=lambda f: (registry.FAMILIES[f].input_level, f))
    started = time.perf_counter()
    load_at_start = [round(v, 2) for v in os.getloadavg()]
    with tempfile.TemporaryDirectory() as data_dir:
        info = synth.generate(data_dir, videos=args.videos, classes=args.classes, seed=0, progress=False)
        files = sorted(glob.glob(os.path.join(data_dir, "*", "*.tfrecord")))
        pipeline = [pipeline_rate(files, args.classes, args.batch, args.videos, args.passes, training=False,
                                  num_samples=None),
                    pipeline_rate(files, args.classes, args.batch, args.videos, args.passes, training=True,
                                  num_samples=args.num_samples)]
        for p in pipeline:
            print(f"reader {p['mode']}: {p['videos_per_s']:.0f} videos/s", flush=True)
        batches = training_batches(files, args.classes, args.batch, args.num_samples, args.warmup + args.steps)
    mean_frames = float(info["stats"]["mean_frames"])
    training = []
    for family in families:
        r = training_rate(family, args.classes, batches, args.warmup, args.steps)
        training.append(r)
        print(f"train {family}: {r['examples_per_s']:.0f} examples/s", flush=True)
    published = [] if args.skip_published else sizes.model_size_table()
    report = {
        "environment": {"cpus": os.cpu_count(), "python": platform.python_version(), "tensorflow": tf.__version__,
                        "keras": keras.__version__, "platform": platform.platform(),
                        "load_average_at_start": load_at_start,
                        "load_average_at_end": [round(v, 2) for v in os.getloadavg()]},
        "data": {"videos": args.videos, "classes": args.classes, "mean_frames": mean_frames, "files": len(files)},
        "settings": {"classes": args.classes, "batch": args.batch, "num_samples": args.num_samples,
                     "steps": args.steps, "warmup": args.warmup, "passes": args.passes},
        "pipeline": pipeline,
        "training": training,
        "published": published,
        "seconds": round(time.perf_counter() - started, 1),
    }
    os.makedirs(args.out_dir, exist_ok=True)
    with open(os.path.join(args.out_dir, "models.json"), "w") as f:
        json.dump(report, f, indent=2)
    with open(os.path.join(args.out_dir, "models.md"), "w") as f:
        f.write(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
