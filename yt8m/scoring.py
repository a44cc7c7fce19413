"""Score YT8M frame-level TFRecords with an exported SavedModel (raw records in, scores out).

Also a module entry point, so a model can be loaded and checked in a FRESH process:
``python -m yt8m.scoring --model DIR --data PATTERN --out FILE.npz``.
"""

from __future__ import annotations

import argparse
import io
import logging
import sys
import time
from typing import Iterable

import numpy as np
import tensorflow as tf

from yt8m import fast_exit, readers, storage

log = logging.getLogger(__name__)


def score_files(model_dir: str, data: str | list[str], batch_size: int = 64, timings: dict | None = None):
    """(video ids, scores [N, C], label id lists) for every record of ``data`` in file order.

    ``timings``, when given, receives ``load_seconds`` (loading the SavedModel) and ``score_seconds``
    (calling the serving signature, summed over batches: the model's latency, not the file reading)."""
    files = storage.expand_pattern(data, "data") if isinstance(data, str) else list(data)
    batches = tf.data.TFRecordDataset(files).batch(batch_size).as_numpy_iterator()
    return score_batches(model_dir, batches, f"{len(files)} files", data, timings)


def score_records(model_dir: str, records: Iterable[bytes], batch_size: int = 64, what: str = "records"):
    """Like ``score_files`` for a stream of serialized records (e.g. the valid ones of damaged files)."""
    def batches():
        batch = []
        for record in records:
            batch.append(record)
            if len(batch) == batch_size:
                yield np.array(batch, dtype=object)
                batch = []
        if batch:
            yield np.array(batch, dtype=object)

    return score_batches(model_dir, batches(), what, what)


def score_batches(model_dir: str, batches: Iterable, what: str, data, timings: dict | None = None):
    loading = time.perf_counter()
    serve = tf.saved_model.load(model_dir).signatures["serving_default"]
    load_seconds = time.perf_counter() - loading
    ids, scores, labels = [], [], []
    started, score_seconds = time.time(), 0.0
    for batch in batches:
        batch = tf.constant(batch, dtype=tf.string)
        calling = time.perf_counter()
        out = serve(serialized=batch)
        out = {key: value.numpy() for key, value in out.items()}
        score_seconds += time.perf_counter() - calling
        ids.extend(v.decode() for v in out["video_id"])
        scores.append(out["scores"])
        parsed = tf.io.parse_sequence_example(batch, {"labels": readers.CONTEXT_FEATURES["labels"]})[0]["labels"]
        labels.extend(tf.RaggedTensor.from_sparse(parsed).to_list())
    secs = time.time() - started
    log.info("scored %d videos from %s in %.1fs (%.0f videos/s)", len(ids), what, secs, len(ids) / max(secs, 1e-9))
    if not ids:
        raise ValueError(f"no records in {data!r}")
    if timings is not None:
        timings.update(load_seconds=load_seconds, score_seconds=score_seconds)
    return ids, np.concatenate(scores), labels


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True, help="npz with video_ids, scores and labels (ragged as lists)")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args(argv)
    timings: dict = {}
    ids, scores, labels = score_files(args.model, args.data, args.batch_size, timings)
    lengths = np.asarray([len(l) for l in labels], np.int64)
    flat = np.asarray([x for l in labels for x in l], np.int64)
    buffer = io.BytesIO()  # zipfile needs a seekable, readable file: build in memory, then write
    np.savez(buffer, video_ids=np.asarray(ids), scores=scores, label_lengths=lengths, label_values=flat,
             load_seconds=timings["load_seconds"], score_seconds=timings["score_seconds"])
    with storage.gfile.GFile(args.out, "wb") as f:
        f.write(buffer.getvalue())
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    fast_exit.skip_final_garbage_collection()  # a fresh-process scoring exits 2-3 s sooner
    sys.exit(main())
