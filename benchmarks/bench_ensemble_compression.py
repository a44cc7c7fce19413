"""Ensemble endgame on a finished run's members: each combiner's OOF GAP and each compression's served GAP.

    python benchmarks/bench_ensemble_compression.py --run-root runs/<run>/pipeline_root/<run>/<pipeline dir>
        [--dataset DIR --members DIR ...] [--out benchmarks/results/ensemble_compression.json]

Reads the run's dataset (preprocess-op) and final members (train-final-op), then calls
``yt8m.ensemble.build_ensemble`` (the ensemble component's code path) once per (combiner, compression):
the plan, the merged graph, and the SERVED graph's holdout GAP@20 before (float32) and after compression.
Prints one line per case and writes the reports' key numbers as JSON.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

KEYS = ("oof_gap", "holdout_gap", "holdout_gap_fp32", "holdout_gap_compressed", "compression_gap_loss",
        "fp32_bytes", "saved_model_bytes", "compression_ratio", "tensor_fp32_bytes", "tensor_bytes",
        "tensor_compression_ratio")


def main(argv=None) -> int:
    from yt8m import ensemble, readers, training

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-root", help="the pipeline folder holding preprocess-op/ and the loops")
    parser.add_argument("--dataset", help="a preprocessed dataset folder (default: the run's preprocess-op/dataset)")
    parser.add_argument("--members", nargs="*", help="member folders (default: the run's train-final-op/model)")
    parser.add_argument("--out", default="benchmarks/results/ensemble_compression.json")
    parser.add_argument("--cases", default="average:uint8,weighted:uint8,weighted:codebook,weighted:float16,"
                                           "weighted:none")
    args = parser.parse_args(argv)
    if not args.run_root and not (args.dataset and args.members):
        parser.error("give --run-root, or --dataset and --members")
    ds = training.open_dataset(args.dataset or os.path.join(args.run_root, "preprocess-op", "dataset"))
    members = args.members or sorted(glob.glob(os.path.join(args.run_root, "*", "train-final-op", "model")))
    labels = {split: readers.read_id_labels(training.dataset_files(ds, "video", names))
              for split, names in (("oof", ds.fold_names), ("holdout", [ds.holdout]))}
    holdout = training.dataset_files(ds, "frame", [ds.holdout])
    rows = []
    for case in args.cases.split(","):
        combiner, method = case.split(":")
        with tempfile.TemporaryDirectory() as out:
            started = time.time()
            report = ensemble.build_ensemble(members, out, ds.num_classes, labels["holdout"], labels["oof"],
                                             transform_dir=ds.transform_path, combiner=combiner,
                                             compression=method, holdout_data=holdout)
        row = {"combiner": combiner, "compression": method, **{k: report[k] for k in KEYS},
               "members": {m["name"]: {"oof_gap": m["oof_gap"], "holdout_gap": m["holdout_gap"]}
                           for m in report["members"]},
               "combiners": {k: {"oof_gap": v["oof_gap"], "holdout_gap": v["holdout_gap"], "weights": v["weights"]}
                             for k, v in report["combiners"].items()},
               "plan": report["plan"], "served_vs_combiner": report["served_vs_combiner"],
               "seconds": round(time.time() - started, 1)}
        rows.append(row)
        print(f"{combiner:8s} {method:8s} OOF {row['oof_gap']:.4f} holdout(served) fp32 {row['holdout_gap_fp32']:.5f}"
              f" -> {row['holdout_gap_compressed']:.5f} (loss {row['compression_gap_loss']:+.5f}); "
              f"{row['fp32_bytes'] / 1e6:.2f} MB -> {row['saved_model_bytes'] / 1e6:.2f} MB "
              f"({row['compression_ratio']:.2f}x; tensors {row['tensor_compression_ratio']:.2f}x); "
              f"served vs combiner {row['served_vs_combiner']['max_abs_diff']}",
              flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
