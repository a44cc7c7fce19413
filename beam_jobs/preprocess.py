"""Beam job: read, validate, de-duplicate and split frame-level YT8M records; TFT statistics + video-level features.

Stages (named PTransforms; the table of contents of the job)::

    ReadWithSource (ListFiles -> SpreadFiles [Reshuffle] -> ReadFramedRecords: own TFRecord framing reader)
      -> ParseAndValidate (+ per-video frame sums: validation.frame_sums, first 300 frames)
      -> DropDuplicateIds (a light 2nd read groups (id, file, offset) by id; only repeated ids are a
                           side input; only their copies are grouped with their bytes)
      -> AssignSplit -> WriteFrame                             (the records, byte-identical)
                     -> AnalyzeAndTransform (tensorflow-transform on the per-video sums: yt8m.transform)
                        -> WriteVideo
    quarantine (damaged records, bad records, duplicates, unreadable byte ranges) -> WriteQuarantine
    every stage feeds (key, n) pairs into CountRecords (CombinePerKey(sum)) -> OUT/_counts/

No step groups or materializes the record bytes (num_shards=0): the frame shards are written
where the records are read (one temporary file per split per bundle, renamed at the end),
and the TFT stages see ~2x1152 integers per video instead of its frames.

Output layout under ``OUT`` (``dataset.json`` lists the actual files; read it through
``yt8m.dataset.Dataset.open(OUT)``, never by globbing)::

    frame/<split>/part-SSSSS-of-NNNNN.tfrecord   the input SequenceExamples, byte-identical, ALL frames (uint8)
    video/<split>/part-SSSSS-of-NNNNN.tfrecord   tf.train.Example id, labels, mean_rgb, mean_audio
                                                 (means of the first 300 dequantized frames, from the TFT graph)
    quarantine/part-SSSSS-of-NNNNN.tfrecord      tf.train.Example raw, reason, detail, source, video_id, offset,
                                                 unreadable_bytes
    transform_fn/                                tft_beam.WriteTransformFn: load with tft.TFTransformOutput
    counts.json                                  counts per input file and in total (reconciled)
    report.html                                  data report: labels, frames, folds, quarantine, files (inline SVG)
    dataset.json                                 the dataset contract (written last: its presence = complete)

``<split>`` is ``fold-0 .. fold-<k-1>`` and ``holdout`` (``yt8m.folds``: a stable hash of
the video id, so a video lands in the same split whatever the sharding or the runner).

Damage never fails the job: a truncated or CRC-damaged file is read up to the damage; the
file, the byte offset and the number of unreadable bytes go to the quarantine and to
``counts.json`` (empty and non-TFRecord files too). No message contains record bytes.

After the run the job reconciles the counts (per input file and in total: records read ==
written + quarantined, file bytes == record bytes + unreadable bytes; per split: what went
into each write == what was written) and raises ``RuntimeError`` if anything is missing.
``verify_outputs=True`` also re-reads the headers of every written file (off by default at
scale: it doubles the output I/O). Locally it runs on Beam's FnApiRunner with ONE worker
(the DirectRunner would first try Prism; multi-worker local runs lost rows on this stack);
the local runner keeps the collections that cross its stages in memory (here: the per-video
sums and the small count / position tuples, ~10 kB per video; the record bytes stream through),
so memory grows slowly with the input (Dataflow streams). On Dataflow the workers run the project's Dataflow image
(``docker/dataflow``: no kfp, no aiplatform) or install ``--setup_file``.

Measured (``benchmarks/bench_preprocess.py``): see ``benchmarks/results/preprocess.md``.
"""

from __future__ import annotations

import argparse
import collections
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import struct
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import (
    DebugOptions,
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from yt8m import folds as folds_lib
from yt8m import schema, storage, validation, wire
from yt8m import transform as transform_lib

_LOG = logging.getLogger("yt8m.preprocess")

METRICS_NAMESPACE = "yt8m.preprocess"
QUARANTINE_TAG = "quarantine"
COUNTS_TAG = "counts"
CONTESTED_TAG = "contested"
COUNTS_SCHEMA_VERSION = 2
DATASET_SCHEMA_VERSION = 2
DEFAULT_LOCAL_SHARDS = 2
LOCAL_FIXED_SHARDS_WARN_BYTES = 2_000_000_000
SHARD_SUFFIX = ".tfrecord"
TRANSFORM_DIR = "transform_fn"
REPORT_FILE = "report.html"
FRAMES_BUCKET, FRAMES_BUCKETS = 30, 12  # frames-per-video histogram in counts.json: 0-29, ..., 330+
WRITE_TEMP = "_write_tmp"
TRANSFORM_BATCH_SIZE = 256  # videos per RecordBatch into the TFT stages (at most; a bundle's last batch is smaller)
_TEMP_OUTPUTS = ("_counts", "_tft_tmp", WRITE_TEMP)
_JOB_OUTPUTS = ("frame", "video", "quarantine", TRANSFORM_DIR, "counts.json", REPORT_FILE, "dataset.json",
                *_TEMP_OUTPUTS)


# ----------------------------------------------------------------------------- options

def _default_setup_file() -> str | None:
    """The repo's setup.py: next to the ``beam_jobs/`` folder (editable install / checkout) or in the cwd."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "setup.py", Path.cwd() / "setup.py"):
        if candidate.is_file():
            return str(candidate)
    return None


def _default_worker_image() -> str | None:
    """The project's Dataflow worker image, unless it is still the placeholder of images.yaml."""
    try:
        from yt8m_pipeline import images
    except ImportError:  # the job also runs from a checkout without the package
        return None
    try:
        image = images.image("dataflow")
    except images.ImageConfigError as err:
        _LOG.warning("dataflow: no worker image from images.yaml (%s)", err)
        return None
    return None if images.is_placeholder(image) else image


def _normalise_runner(runner: str) -> str:
    name = (runner or "").strip().lower()
    if name in ("local", "fnapi", "fnapirunner"):
        return "local"
    if name in ("dataflow", "dataflowrunner"):
        return "dataflow"
    raise ValueError(f"runner must be 'local' or 'dataflow', got {runner!r}")


def build_pipeline_options(
    runner: str,
    output_dir: str,
    *,
    project: str | None = None,
    region: str | None = None,
    temp_location: str | None = None,
    staging_location: str | None = None,
    setup_file: str | None = None,
    machine_type: str | None = None,
    max_num_workers: int | None = None,
    sdk_container_image: str | None = None,
    job_name: str | None = None,
    service_account_email: str | None = None,
    num_workers: int | None = None,
    extra_args: Sequence[str] | None = None,
) -> PipelineOptions:
    """PipelineOptions for ``runner`` ("local" or "dataflow"); keyword arguments override ``extra_args``.

    * local: single-worker, in-memory (run it with the FnApiRunner, see ``run_preprocess``);
      any other ``direct_num_workers`` / running mode is refused.
    * dataflow: DataflowRunner with project, region, a gs:// temp/staging location (default
      ``<output_dir>/_beam/tmp`` and ``/staging``), machine type, worker counts, and the worker
      software: ``sdk_container_image`` (default: the project's Dataflow image from
      ``yt8m_pipeline/configs/images.yaml`` / ``YT8M_DATAFLOW_IMAGE`` when it is not the
      placeholder; slim: Beam + TF + TFT + the library, no kfp or aiplatform; runner v2 is
      switched on, custom containers need it) or else ``--setup_file`` (this repo's setup.py:
      installs every project dependency, kfp and aiplatform included, on every worker).
      No network access happens here.
    """
    kind = _normalise_runner(runner)
    options = PipelineOptions(list(extra_args or []))
    if kind == "local":
        direct = options.view_as(DirectOptions)
        given = options.get_all_options(drop_default=True)
        if given.get("direct_num_workers", 1) != 1 or given.get("direct_running_mode", "in_memory") != "in_memory":
            raise ValueError("the local runner runs with ONE in-memory worker (multi-worker local runs lost rows); "
                             "do not pass --direct_num_workers / --direct_running_mode")
        direct.direct_num_workers = 1
        direct.direct_running_mode = "in_memory"
        return options

    std = options.view_as(StandardOptions)
    std.runner = "DataflowRunner"
    gco = options.view_as(GoogleCloudOptions)
    gco.project = project or gco.project
    gco.region = region or gco.region
    base = output_dir.rstrip("/")
    on_gcs = base.startswith("gs://")
    gco.temp_location = temp_location or gco.temp_location or (f"{base}/_beam/tmp" if on_gcs else None)
    gco.staging_location = (staging_location or gco.staging_location
                            or (f"{base}/_beam/staging" if on_gcs else None))
    if job_name or not gco.job_name:
        gco.job_name = job_name or f"yt8m-preprocess-{_dt.datetime.now(_dt.timezone.utc):%Y%m%d-%H%M%S}"
    workers = options.view_as(WorkerOptions)
    if machine_type:
        workers.machine_type = machine_type
    if max_num_workers:
        workers.max_num_workers = int(max_num_workers)
    if num_workers:
        workers.num_workers = int(num_workers)
    if service_account_email:
        gco.service_account_email = service_account_email
    setup = options.view_as(SetupOptions)
    if sdk_container_image:
        workers.sdk_container_image = sdk_container_image
    elif not setup_file and not setup.setup_file and not workers.sdk_container_image:
        workers.sdk_container_image = _default_worker_image()
    if setup_file:
        setup.setup_file = setup_file
    elif not setup.setup_file and not workers.sdk_container_image:
        setup.setup_file = _default_setup_file()
        if not setup.setup_file:
            raise ValueError("dataflow: cannot find the repo's setup.py; pass setup_file= or sdk_container_image=")
        _LOG.warning("dataflow: no worker image; --setup_file installs every project dependency (kfp, aiplatform "
                     "included) on each worker; build and pass the Dataflow image (docker/dataflow) instead")
    if workers.sdk_container_image:
        debug = options.view_as(DebugOptions)
        if "use_runner_v2" not in (debug.experiments or []):
            debug.add_experiment("use_runner_v2")

    problems = []
    if not gco.project:
        problems.append("project is required")
    if not gco.region:
        problems.append("region is required")
    for name in ("temp_location", "staging_location"):
        value = getattr(gco, name)
        if not value or not str(value).startswith("gs://"):
            problems.append(f"{name} must be a gs:// path (got {value!r})")
    if not base.startswith("gs://"):
        problems.append(f"output_dir must be a gs:// path for Dataflow (got {output_dir!r})")
    if not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", gco.job_name or ""):
        problems.append(f"job_name {gco.job_name!r} must match [a-z]([-a-z0-9]*[a-z0-9])?")
    if setup.setup_file and not os.path.isfile(setup.setup_file):
        problems.append(f"setup_file {setup.setup_file!r} does not exist")
    if problems:
        raise ValueError("dataflow options: " + "; ".join(problems))
    return options


# ----------------------------------------------------------------------------- transforms

def _bytes_feature(value: str | bytes):
    import tensorflow as tf  # already imported by yt8m.validation

    data = value.encode("utf-8") if isinstance(value, str) else value
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[data]))


def _int_feature(value: int):
    import tensorflow as tf

    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def quarantine_example(raw: bytes, reason: str, detail: str, source: str, video_id: str = "", offset: int = -1,
                       unreadable_bytes: int = 0) -> bytes:
    """The serialized quarantine record: a tf.train.Example keeping the original bytes.

    ``offset``: byte offset of the record (or of the unreadable range) in ``source``;
    ``unreadable_bytes``: the size of an unreadable range (``raw`` is then empty).
    """
    import tensorflow as tf

    feature = {"raw": _bytes_feature(raw), "reason": _bytes_feature(reason), "detail": _bytes_feature(detail),
               "source": _bytes_feature(source), "video_id": _bytes_feature(video_id),
               "offset": _int_feature(offset), "unreadable_bytes": _int_feature(unreadable_bytes)}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _reason_counters(prefix: str, reasons: Sequence[str]) -> dict:
    return {r: Metrics.counter(METRICS_NAMESPACE, f"{prefix}{r}") for r in reasons}


class ReadFramedRecordsFn(beam.DoFn):
    """file name -> main: (source, offset, raw); ``quarantine``: (source, reason, example); ``counts``: pairs.

    Parses the TFRecord framing itself (``validation.scan_tfrecord``) so that damage never
    fails the job: a data-CRC failure quarantines that record (``crc_mismatch``, raw bytes
    kept) and the scan goes on; a truncated file, a length-CRC failure, an empty file or a
    file that is not a TFRecord ends the file with ONE quarantine entry naming the byte
    offset and the number of unreadable bytes (no bytes copied). Per-file totals (size,
    framed bytes, records read, unreadable bytes) go out once per file on ``counts``.

    One file is read by one worker, sequentially (YT8M shards are ~300 MB, so 1.3 TB is
    ~4,000 files: plenty of parallelism); a single very large file is not split across
    workers (splitting needs a resync on a damaged framing, which TFRecord cannot do).
    """

    def setup(self):
        self._files = Metrics.counter(METRICS_NAMESPACE, "files")
        self._read = Metrics.counter(METRICS_NAMESPACE, "read")
        self._read_bytes = Metrics.counter(METRICS_NAMESPACE, "read_bytes")
        self._unreadable_bytes = Metrics.counter(METRICS_NAMESPACE, "unreadable_bytes")
        self._unreadable = _reason_counters("unreadable_", validation.UNREADABLE_REASONS)
        self._crc = Metrics.counter(METRICS_NAMESPACE, f"quarantined_{validation.CRC_MISMATCH}")

    def process(self, path):
        self._files.inc()
        size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
        read = read_bytes = framed = 0
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for item in validation.scan_tfrecord(f, size):
                if isinstance(item, validation.Unreadable):
                    self._unreadable[item.reason].inc()
                    self._unreadable_bytes.inc(item.num_bytes)
                    yield beam.pvalue.TaggedOutput(COUNTS_TAG, (("unreadable", path, f"{item.reason}@{item.offset}"),
                                                                item.num_bytes))
                    yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, (path, item.reason, quarantine_example(
                        b"", item.reason, item.detail, path, offset=item.offset, unreadable_bytes=item.num_bytes)))
                    continue
                read += 1
                read_bytes += len(item.data)
                framed += item.framed_bytes
                if not item.crc_ok:
                    self._crc.inc()
                    yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, (path, validation.CRC_MISMATCH, quarantine_example(
                        item.data, validation.CRC_MISMATCH,
                        f"record at offset {item.offset} ({len(item.data)} bytes) fails its data checksum",
                        path, offset=item.offset)))
                    continue
                yield path, item.offset, item.data
        self._read.inc(read)
        self._read_bytes.inc(read_bytes)
        for kind, n in (("size_bytes", size), ("framed_bytes", framed), ("read", read), ("read_bytes", read_bytes)):
            yield beam.pvalue.TaggedOutput(COUNTS_TAG, ((kind, path, ""), n))


class ReadWithSource(beam.PTransform):
    """Expanded file list -> main (source, offset, raw) + ``quarantine`` + ``counts`` (tagged outputs)."""

    def __init__(self, files: Sequence[str]):
        super().__init__()
        self.files = list(files)

    def expand(self, pbegin):
        return (pbegin
                | "ListFiles" >> beam.Create(self.files)
                # Fusion break: without it the whole read -> validate -> write chain fuses with the
                # one-element-per-file Create and runs on one worker.
                | "SpreadFiles" >> beam.Reshuffle()
                | "ReadFramedRecords" >> beam.ParDo(ReadFramedRecordsFn()).with_outputs(
                    QUARANTINE_TAG, COUNTS_TAG, main="records"))


class ReadVideoIdsFn(beam.DoFn):
    """file name -> (video_id, (source, offset)) for every framed record whose id can be found.

    The first, light pass of the duplicate detection: framing only (no data checksums, no
    frame decoding; ``validation.video_id_of`` parses the context alone). Damage is not
    reported here: the main pass (``ReadFramedRecordsFn``) reports it. An id found in a
    record that later fails its checksum or its validation only makes that id "contested"
    (resolved exactly among its valid copies), never drops a good record.
    """

    def process(self, path):
        size = FileSystems.match([path])[0].metadata_list[0].size_in_bytes
        with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for item in validation.scan_tfrecord(f, size, check_data_crc=False):
                if isinstance(item, validation.ScannedRecord):
                    video_id = validation.video_id_of(item.data)
                    if video_id is not None:
                        yield video_id, (path, item.offset)


class ParseAndValidateFn(beam.DoFn):
    """(source, offset, raw) -> main: (video_id, source, offset, raw, labels, FrameSums); quarantine: (source, reason, ex).

    A valid record leaves with its per-video sufficient statistics (``validation.frame_sums``:
    integer sums of the first 300 frames, computed here while the frames are decoded anyway),
    which is all the TFT stage needs: the frames themselves stay bytes.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = int(num_classes)

    def setup(self):
        self._valid = Metrics.counter(METRICS_NAMESPACE, "valid")
        self._quarantined = Metrics.counter(METRICS_NAMESPACE, "quarantined")
        self._by_reason = _reason_counters("quarantined_", validation.REASONS)

    def process(self, element):
        if len(element) == 2:  # (source, raw): the record's offset is unknown
            (source, raw), offset = element, -1
        else:
            source, offset, raw = element
        try:
            video = validation.parse_frame_level(raw, self.num_classes, source)
        except validation.InvalidRecord as err:
            self._quarantined.inc()
            self._by_reason[err.reason].inc()
            where = f" (offset {offset})" if offset >= 0 else ""
            yield beam.pvalue.TaggedOutput(
                QUARANTINE_TAG,
                (source, err.reason, quarantine_example(raw, err.reason, err.detail + where, source, err.video_id,
                                                        offset=offset)))
            return
        self._valid.inc()
        yield video.video_id, source, offset, raw, video.labels, validation.frame_sums(video)


class ParseAndValidate(beam.PTransform):
    """(source, offset, raw) -> tagged ``valid`` and ``quarantine`` PCollections."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def expand(self, records):
        return records | "Validate" >> beam.ParDo(ParseAndValidateFn(self.num_classes)).with_outputs(
            QUARANTINE_TAG, main="valid")


def _repeated_ids(element):
    """(video_id, positions) -> (video_id, number of positions) when the id occurs more than once."""
    video_id, positions = element
    n = sum(1 for _ in positions)
    if n > 1:
        yield video_id, n


class RouteRepeatedIdsFn(beam.DoFn):
    """valid record -> main (its id occurs once in the input) or ``contested``: (video_id, copy)."""

    def setup(self):
        self._contested = Metrics.counter(METRICS_NAMESPACE, "contested")

    def process(self, element, repeated):
        if element[0] in repeated:
            self._contested.inc()
            yield beam.pvalue.TaggedOutput(CONTESTED_TAG, (element[0], element[1:]))
        else:
            yield element


class KeepFirstCopyFn(beam.DoFn):
    """(video_id, copies) -> main: (video_id, source, offset, raw, labels, sums); quarantine: the other copies.

    The copy kept is the one at the smallest (file name, byte offset) among the VALID copies:
    the same whatever the runner, the worker or the order the copies arrive in.
    """

    def setup(self):
        self._duplicates = Metrics.counter(METRICS_NAMESPACE, f"quarantined_{validation.DUPLICATE_VIDEO_ID}")
        self._quarantined = Metrics.counter(METRICS_NAMESPACE, "quarantined")

    def process(self, element):
        video_id, copies = element
        copies = sorted(copies, key=lambda c: (c[0], c[1]))
        source, offset = copies[0][0], copies[0][1]
        yield (video_id,) + tuple(copies[0])
        for dup_source, dup_offset, dup_raw, *_ in copies[1:]:
            self._duplicates.inc()
            self._quarantined.inc()
            detail = (f"video id {video_id!r} at offset {dup_offset} is also at offset {offset} of {source}, "
                      "the copy kept")
            yield beam.pvalue.TaggedOutput(QUARANTINE_TAG, (dup_source, validation.DUPLICATE_VIDEO_ID, quarantine_example(
                dup_raw, validation.DUPLICATE_VIDEO_ID, detail, dup_source, video_id, offset=dup_offset)))


class DropDuplicateIds(beam.PTransform):
    """valid records -> {"kept": one copy per video id (a tuple of streams), ``quarantine``: the other copies}.

    Still a keyed grouping, without moving the record bytes through a shuffle:

    1. ``ReadVideoIds``: a second, light read of the input files yields only
       ``(video_id, (file, offset))`` of every record (framing + the context proto: no
       checksums, no frames; ~50 bytes per record instead of ~200 kB) and a GroupByKey on the
       id (``GroupByVideoId``, then ``RepeatedIds``) finds the ids seen more than once. The
       grouping is keyed, so on Dataflow it is spread over the workers by id: no worker ever
       holds the id set of the whole input.
    2. Only its RESULT, the repeated ids (rare: a re-uploaded video, a shard given twice), is
       a side input (``AsDict``) of the main stream: a record whose id is not in it goes
       straight on; the copies of a repeated id (and only those) are grouped by id with their
       bytes and the valid copy at the smallest (file, offset) is kept (``KeepFirstCopyFn``).
       If a whole input were duplicated the side input would hold that many ids (a dict of
       short strings per worker: ~100 MB per million ids).

    Why a second read and not the positions of the main stream: a ParDo can never be fused
    with the producer of its own side input, so filtering the main stream against ids
    computed FROM it would materialize every record's bytes at that fusion break (on
    Dataflow: through the shuffle, 1.3 TB, the cost this design avoids). Re-reading the
    framing of the files costs one sequential read and no decoding.
    """

    def __init__(self, files: Sequence[str]):
        super().__init__()
        self.files = list(files)

    def expand(self, valid):
        repeated = (valid.pipeline
                    | "ListFiles" >> beam.Create(self.files)
                    | "SpreadFiles" >> beam.Reshuffle()
                    | "ReadVideoIds" >> beam.ParDo(ReadVideoIdsFn())
                    | "GroupByVideoId" >> beam.GroupByKey()
                    | "RepeatedIds" >> beam.FlatMap(_repeated_ids))
        routed = valid | "RouteRepeatedIds" >> beam.ParDo(
            RouteRepeatedIdsFn(), beam.pvalue.AsDict(repeated)).with_outputs(CONTESTED_TAG, main="unique")
        resolved = (routed[CONTESTED_TAG]
                    | "GroupCopies" >> beam.GroupByKey()
                    | "KeepFirstCopy" >> beam.ParDo(KeepFirstCopyFn()).with_outputs(QUARANTINE_TAG, main="kept"))
        # Two kept streams, NOT flattened here: a Flatten of streams from different stages is
        # materialized by the local runner (every record's bytes in memory); the consumers
        # (AssignSplit, the frame write) process each stream where it is produced.
        return {"kept": (routed.unique, resolved.kept), QUARANTINE_TAG: resolved[QUARANTINE_TAG]}


def _with_split(element, folds: int, holdout_fraction: float):
    video_id, source, offset, raw, labels, sums = element
    return folds_lib.assign_split(video_id, folds, holdout_fraction), source, video_id, raw, labels, sums


class AssignSplit(beam.PTransform):
    """kept record streams -> the same streams of (split, source, id, raw, labels, sums) (split: stable hash of the id)."""

    def __init__(self, folds: int, holdout_fraction: float):
        super().__init__()
        self.folds, self.holdout_fraction = folds, holdout_fraction

    def expand(self, streams):
        return tuple(kept | f"Assign{i or ''}" >> beam.Map(_with_split, self.folds, self.holdout_fraction)
                     for i, kept in enumerate(streams))


class TransformRowBatchesFn(beam.DoFn):
    """Assigned records -> Arrow RecordBatches of TFT input rows (``yt8m.transform.record_batch``), per bundle.

    The rows (id, labels and the ~9 KB of frame sums per video) are batched in the stage that
    produces them, so only whole batches cross to the TFT stages: a batching step of its own
    (``BatchElements``) starts a new stage on the local runner, and every row would be pickled
    and unpickled on the way.
    """

    def __init__(self, batch_size: int = TRANSFORM_BATCH_SIZE):
        super().__init__()
        self.batch_size = int(batch_size)

    def start_bundle(self):
        self._rows = []

    def process(self, element):
        _, _, video_id, _, labels, sums = element
        self._rows.append((video_id, labels) + tuple(sums))
        if len(self._rows) >= self.batch_size:
            yield transform_lib.record_batch(self._rows)
            self._rows = []

    def finish_bundle(self):
        if self._rows:
            yield _windowed(transform_lib.record_batch(self._rows))
        self._rows = []


def _list_values(batch, name: str):
    column = batch.column(batch.schema.get_field_index(name))
    return column.flatten().to_numpy(zero_copy_only=False), column.offsets.to_numpy()


def _feature_entry(key: bytes, feature: bytes) -> bytes:
    """One ``Features.feature`` map entry (Features field 1: {key: 1, value: 2})."""
    return wire.delimited(b"\x0a", wire.delimited(b"\x0a", key) + wire.delimited(b"\x12", feature))


def _floats_feature(values: np.ndarray) -> bytes:
    data = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return wire.delimited(b"\x12", wire.delimited(b"\x0a", data) if data else b"")  # Feature.float_list, packed


def _int64s_feature(values) -> bytes:
    data = b"".join(wire.encode_varint(int(v)) for v in values)
    return wire.delimited(b"\x1a", wire.delimited(b"\x0a", data) if data else b"")  # Feature.int64_list, packed


def video_example_bytes(video_id: bytes, labels, floats: Mapping[str, np.ndarray]) -> bytes:
    """The serialized video-level ``tf.train.Example`` (id, labels, float features), built without protobuf objects.

    Parses to exactly ``writers.video_level_example(video_id, labels, mean_rgb, mean_audio, ...)``
    (tested): the same wire format protobuf writes (packed float and int64 lists), ~10x cheaper
    than building the message per video.
    """
    entries = [_feature_entry(b"id", wire.delimited(b"\x0a", wire.delimited(b"\x0a", video_id))),
               _feature_entry(b"labels", _int64s_feature(labels))]
    entries += [_feature_entry(name.encode(), _floats_feature(values)) for name, values in floats.items()]
    return wire.delimited(b"\x0a", b"".join(entries))


def _video_examples(batch_and_passthrough, folds: int, holdout_fraction: float, standardized: bool):
    """A transformed RecordBatch (yt8m.transform outputs) -> (split, serialized video-level Example) per video."""
    batch = batch_and_passthrough[0] if isinstance(batch_and_passthrough, tuple) else batch_and_passthrough
    n = batch.num_rows
    ids, _ = _list_values(batch, transform_lib.ID)
    labels, label_offsets = _list_values(batch, transform_lib.LABELS)
    names = (transform_lib.MEAN_RGB, transform_lib.MEAN_AUDIO) + (
        transform_lib.STANDARDIZED_OUTPUTS if standardized else ())
    floats = {name: _list_values(batch, name)[0].reshape(n, -1) for name in names}
    for i in range(n):
        video_id = bytes(ids[i])
        example = video_example_bytes(video_id, labels[label_offsets[i]:label_offsets[i + 1]].tolist(),
                                      {name: floats[name][i] for name in names})
        # the split of the decoded id, exactly as the frame shards (AssignSplit) route this video
        split = folds_lib.assign_split(video_id.decode("utf-8", errors="replace"), folds, holdout_fraction)
        yield split, example


class AnalyzeAndTransform(beam.PTransform):
    """Assigned records -> (transform_fn written to ``transform_dir``, (split, video-level Example bytes)).

    tensorflow-transform in the same pipeline, on per-video sufficient statistics (the
    ``FrameSums`` computed while validating; ``yt8m.transform``): rows batched
    (``TransformRowBatchesFn``) into Arrow RecordBatches -> ``AnalyzeDataset(yt8m.transform
    preprocessing_fn)`` -> ``TransformDataset`` (the statistics outputs excluded; RecordBatch
    output) -> one video-level Example per video, routed to its split by the same stable hash
    of its id.
    """

    def __init__(self, num_classes: int, folds: int, holdout_fraction: float, transform_dir: str, temp_dir: str,
                 standardized_features: bool = False):
        super().__init__()
        self.num_classes, self.folds, self.holdout_fraction = num_classes, folds, holdout_fraction
        self.transform_dir, self.temp_dir = transform_dir, temp_dir
        self.standardized = standardized_features
        self.splits = folds_lib.split_names(folds, holdout_fraction)

    def expand(self, streams):
        import tensorflow_transform.beam as tft_beam

        exclude = list(transform_lib.STAT_OUTPUTS)
        if not self.standardized:
            exclude += list(transform_lib.STANDARDIZED_OUTPUTS)
        with tft_beam.Context(temp_dir=self.temp_dir):
            # batched into RecordBatches where each stream is produced: only whole batches (a few
            # Arrow buffers each) cross to the TFT stages, never one pickled row per video
            per_stream = tuple(assigned | f"ToRecordBatches{i or ''}" >> beam.ParDo(TransformRowBatchesFn())
                               for i, assigned in enumerate(streams))
            batches = per_stream[0] if len(per_stream) == 1 else per_stream | "AllBatches" >> beam.Flatten()
            dataset = (batches, transform_lib.tensor_adapter_config())
            transform_fn = dataset | "Analyze" >> tft_beam.AnalyzeDataset(
                transform_lib.make_preprocessing_fn(self.num_classes))
            transformed, _ = ((dataset, transform_fn)
                              | "Transform" >> tft_beam.TransformDataset(exclude_outputs=exclude,
                                                                         output_record_batches=True))
            _ = transform_fn | "WriteTransformFn" >> tft_beam.WriteTransformFn(self.transform_dir)
        return transformed | "ToVideoExamples" >> beam.FlatMap(_video_examples, self.folds, self.holdout_fraction,
                                                              self.standardized)


def count_tfrecords(path: str) -> int:
    """Number of records in one uncompressed TFRecord file (headers only; raises on a truncated file)."""
    n = 0
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        pos = 0
        while pos < size:
            f.seek(pos, os.SEEK_SET)
            header = f.read(8)
            if len(header) < 8:
                raise IOError(f"truncated TFRecord header in {path} after {n} records")
            (length,) = struct.unpack("<Q", header)
            pos += 8 + 4 + length + 4
            if pos > size:
                raise IOError(f"truncated TFRecord payload in {path} (record {n})")
            n += 1
    return n


def _write_framed(f, data: bytes) -> None:
    """One TFRecord (u64 length, masked crc32c of the length, data, masked crc32c of the data)."""
    length = struct.pack("<Q", len(data))
    f.write(length)
    f.write(struct.pack("<I", validation.masked_crc32c(length)))
    f.write(data)
    f.write(struct.pack("<I", validation.masked_crc32c(data)))


def _windowed(value):
    from apache_beam.transforms.window import GlobalWindow
    from apache_beam.utils.timestamp import MIN_TIMESTAMP
    from apache_beam.utils.windowed_value import WindowedValue

    return WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()])


class WriteBundleFilesFn(beam.DoFn):
    """(split, record bytes) -> per bundle, ONE temporary TFRecord file per split; emits (split, -1, path, n).

    The records are written as they arrive (no grouping, no copy of the bytes); the file
    list goes out in ``finish_bundle``, so only files of bundles that committed reach the
    finalize step (a retried bundle's orphan files stay in the temporary folder, deleted
    with it).
    """

    def __init__(self, temp_dir: str, kind: str):
        super().__init__()
        self.temp_dir, self.kind = temp_dir, kind

    def start_bundle(self):
        self._open = {}

    def process(self, element):
        split, data = element
        entry = self._open.get(split)
        if entry is None:
            # Named by the first record's checksum, then a random suffix: the finalize step numbers a split's files
            # by name, so a rerun that forms the same bundles numbers them alike (with a uuid alone, reruns swapped
            # which records landed in part-00000 and part-00001, and with them the order readers see).
            first = validation.masked_crc32c(data)
            path = storage.join(self.temp_dir, f"{self.kind}-{first:08x}-{uuid.uuid4().hex}{SHARD_SUFFIX}")
            entry = self._open[split] = [FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED),
                                         path, 0]
        _write_framed(entry[0], data)
        entry[2] += 1

    def finish_bundle(self):
        for split, (f, path, n) in self._open.items():
            f.close()
            yield _windowed((split, -1, path, n))
        self._open = {}


class WriteShardFn(beam.DoFn):
    """((split, shard), records) -> the shard written as one temporary file; emits (split, shard, path, n)."""

    def __init__(self, temp_dir: str, kind: str):
        super().__init__()
        self.temp_dir, self.kind = temp_dir, kind

    def process(self, element):
        (split, shard), records = element
        path = storage.join(self.temp_dir, f"{self.kind}-{split or 'all'}-{shard}-{uuid.uuid4().hex}{SHARD_SUFFIX}")
        n = 0
        with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
            for data in records:
                _write_framed(f, data)
                n += 1
        yield split, shard, path, n


class _RoundRobinShard(beam.DoFn):
    """(split, record) -> ((split, shard), record), shards 0..N-1 of that split in turn from a random start."""

    def __init__(self, num_shards: Mapping[str, int]):
        super().__init__()
        self.num_shards = dict(num_shards)

    def start_bundle(self):
        import random

        self._next = random.randrange(1 << 30)

    def process(self, element):
        split, data = element
        self._next += 1
        yield (split, self._next % self.num_shards[split]), data


def _local_makedirs(path: str) -> None:
    if "://" not in path:
        os.makedirs(path, exist_ok=True)


def _shard_name(prefix: str, index: int, total: int) -> str:
    return f"{prefix}-{index:05d}-of-{total:05d}{SHARD_SUFFIX}"


def _finalize_files(results, kind: str, prefixes: Mapping[str, str], num_shards: Mapping[str, int]):
    """Every written temporary file -> its final name ``<prefix>-SSSSS-of-NNNNN.tfrecord``; counts and file lines.

    Runs once, after every write (a global combine over the small (split, shard, path, n)
    tuples): per split, the files are numbered in a deterministic order (by shard, then by
    temporary name, which starts with the checksum of the file's first record); the shards that
    got no record (with a fixed shard count; or a split with no record at all) are created empty
    (valid, empty TFRecord files), as WriteToTFRecord does. A rename already done (a retried
    finalize) is skipped. Emits main: (kind, split, final path) per file and ``counts``:
    (("write_records", kind, split), records written into the files) for every split.
    """
    by_split: dict[str, list] = {split: [] for split in prefixes}
    for split, shard, path, n in results:
        by_split[split].append((shard, path, n))
    for split, items in by_split.items():
        items.sort(key=lambda item: (item[0], item[1]))
        fixed = num_shards[split] > 0
        total = num_shards[split] if fixed else max(len(items), 1)
        _local_makedirs(os.path.dirname(_shard_name(prefixes[split], 0, total)))
        moves = [(path, _shard_name(prefixes[split], shard if fixed else i, total))
                 for i, (shard, path, _) in enumerate(items)]
        pending = [(src, dst) for src, dst in moves if FileSystems.exists(src) or not FileSystems.exists(dst)]
        if pending:
            FileSystems.rename([src for src, _ in pending], [dst for _, dst in pending])
        targets = [dst for _, dst in moves]
        for index in sorted(set(range(total)) - ({shard for shard, _, _ in items} if fixed else set(range(len(items))))):
            target = _shard_name(prefixes[split], index, total)  # no record: a valid, empty TFRecord file
            FileSystems.create(target, compression_type=CompressionTypes.UNCOMPRESSED).close()
            targets.append(target)
        for target in sorted(targets):
            yield kind, split, target
        yield beam.pvalue.TaggedOutput(COUNTS_TAG, (("write_records", kind, split), sum(n for _, _, n in items)))


class WriteShards(beam.PTransform):
    """(split, record bytes) streams -> the TFRecord shards of every split of one ``kind`` (frame, video, quarantine).

    ONE write for all the splits of a kind (one WriteToTFRecord per split cost ~15 Beam
    transforms each, ~200 in the job), same layout: ``<prefixes[split]>-SSSSS-of-NNNNN.tfrecord``.
    ``num_shards[split]`` 0: one file per split per bundle, written as the records stream by
    (no grouping, no copy of the bytes); N > 0: exactly N files (records spread round-robin
    and grouped by shard: a shuffle of the bytes, as with any fixed shard count). Returns
    (count pairs: the records that went INTO the files per split [+ the records found on disk
    with ``verify``], file lines: json [kind, split, path]). Temporary files live in
    ``temp_dir`` (the job removes it at the end).
    """

    def __init__(self, kind: str, prefixes: Mapping[str, str], num_shards: Mapping[str, int], temp_dir: str,
                 verify: bool = False):
        super().__init__()
        self.kind, self.prefixes, self.temp_dir, self.verify = kind, dict(prefixes), temp_dir, verify
        self.num_shards = {split: int(num_shards[split]) for split in self.prefixes}

    def expand(self, streams):
        fixed = {s for s, n in self.num_shards.items() if n > 0}
        written, grouped = [], []
        for i, records in enumerate(streams):  # each stream written where it is produced (no Flatten of bytes)
            suffix = str(i or "")
            if fixed and len(fixed) < len(self.num_shards):
                parts = records | f"FixedOrNot{suffix}" >> beam.Partition(lambda e, _: int(e[0] in fixed), 2)
                streamed, to_group = parts[0], parts[1]
            else:
                streamed, to_group = (None, records) if fixed else (records, None)
            if streamed is not None:
                written.append(streamed | f"WriteBundleFiles{suffix}" >> beam.ParDo(
                    WriteBundleFilesFn(self.temp_dir, self.kind)))
            if to_group is not None:
                grouped.append(to_group)
        if grouped:
            written.append((grouped[0] if len(grouped) == 1 else tuple(grouped) | "ToGroup" >> beam.Flatten())
                           | "AssignShard" >> beam.ParDo(_RoundRobinShard(self.num_shards))
                           | "GroupByShard" >> beam.GroupByKey()
                           | "WriteShard" >> beam.ParDo(WriteShardFn(self.temp_dir, self.kind)))
        written = written[0] if len(written) == 1 else tuple(written) | "AllFiles" >> beam.Flatten()
        final = (written
                 | "CollectFiles" >> beam.combiners.ToList()
                 | "Finalize" >> beam.FlatMap(_finalize_files, self.kind, self.prefixes, self.num_shards)
                 .with_outputs(COUNTS_TAG, main="files"))
        lines = final.files | "FileLines" >> beam.Map(json.dumps)
        counts = [final[COUNTS_TAG]]
        if self.verify:
            counts.append(final.files | "CountOnDisk" >> beam.ParDo(CountOutputRecordsFn()))
        return counts, lines


class CountOutputRecordsFn(beam.DoFn):
    """(kind, split, final output file name) -> ((\"output_records\", kind, split), n) and ((\"output_files\", ...), 1).

    Counts the records actually on disk by walking the TFRecord headers (length, crc, skip).
    """

    def process(self, element):
        kind, split, path = element
        n = count_tfrecords(path)
        yield ("output_records", kind, split), n
        yield ("output_files", kind, split), 1


def _count_line(kv) -> str:
    (kind, a, b), n = kv
    return json.dumps([kind, a, b, int(n)])


def _frames_bucket(num_frames: int) -> str:
    low = min(int(num_frames) // FRAMES_BUCKET, FRAMES_BUCKETS - 1) * FRAMES_BUCKET
    return f"{low}+" if low == (FRAMES_BUCKETS - 1) * FRAMES_BUCKET else f"{low}-{low + FRAMES_BUCKET - 1}"


class CountWrittenFn(beam.DoFn):
    """Assigned records -> (("written", source, split), n) and (("frames_hist", "", bucket), n), summed per bundle.

    Counted where the records are produced and emitted once per bundle, so a handful of
    pairs, not two per record, cross to the ``CountRecords`` combine.
    """

    def start_bundle(self):
        self._counts = collections.Counter()

    def process(self, element):
        self._counts[("written", element[1], element[0])] += 1
        self._counts[("frames_hist", "", _frames_bucket(element[5].num_frames))] += 1

    def finish_bundle(self):
        for key, n in self._counts.items():
            yield _windowed((key, n))
        self._counts = collections.Counter()


def build_pipeline(pipeline: beam.Pipeline, files: Sequence[str], output_dir: str, num_classes: int, folds: int,
                   holdout_fraction: float, shards: Mapping[str, int], verify_outputs: bool = False, *,
                   temp_dir: str | None = None, standardized_features: bool = False) -> None:
    """Attach the preprocessing graph to ``pipeline`` (used by run_preprocess; handy in tests).

    Counts come from the steps themselves (records read per file, quarantined per reason,
    written per split, and what went INTO each write); ``verify_outputs`` also re-reads the
    written files' headers and counts the records on disk (one extra read of the outputs).
    """
    splits = folds_lib.split_names(folds, holdout_fraction)
    temp_dir = temp_dir or storage.join(output_dir, "_tft_tmp")
    read = pipeline | "ReadWithSource" >> ReadWithSource(files)
    parsed = read.records | "ParseAndValidate" >> ParseAndValidate(num_classes)
    deduped = parsed.valid | "DropDuplicateIds" >> DropDuplicateIds(files)
    assigned = deduped["kept"] | "AssignSplit" >> AssignSplit(folds, holdout_fraction)
    quarantine = ((read[QUARANTINE_TAG], parsed[QUARANTINE_TAG], deduped[QUARANTINE_TAG])
                  | "FlattenQuarantine" >> beam.Flatten())
    unreadable = set(validation.UNREADABLE_REASONS)

    counts = [read[COUNTS_TAG]]
    counts += [stream | f"CountWritten{i or ''}" >> beam.ParDo(CountWrittenFn()) for i, stream in enumerate(assigned)]
    counts.append(quarantine | "CountQuarantined" >> beam.FlatMap(
        lambda e: [] if e[1] in unreadable else [(("quarantined", e[0], e[1]), 1)]))
    file_lines = []
    write_temp = storage.join(output_dir, WRITE_TEMP)
    writes = (
        ("frame", tuple(stream | f"FrameRecords{i or ''}" >> beam.Map(lambda e: (e[0], e[3]))
                        for i, stream in enumerate(assigned)),
         {s: storage.join(output_dir, "frame", s, "part") for s in splits}, splits),
        ("video", (assigned | "AnalyzeAndTransform" >> AnalyzeAndTransform(
            num_classes, folds, holdout_fraction, storage.join(output_dir, TRANSFORM_DIR), temp_dir,
            standardized_features),), {s: storage.join(output_dir, "video", s, "part") for s in splits}, splits),
        ("quarantine", (quarantine | "QuarantineRecords" >> beam.Map(lambda e: ("", e[2])),),
         {"": storage.join(output_dir, "quarantine", "part")}, ["quarantine"]),
    )
    for kind, records, prefixes, shard_keys in writes:
        c, names = records | f"Write{kind.capitalize()}" >> WriteShards(
            kind, prefixes, {split: shards[key] for split, key in zip(prefixes, shard_keys)},
            storage.join(write_temp, kind), verify_outputs)
        counts += c
        file_lines.append(names)
    _ = (counts
         | "FlattenCounts" >> beam.Flatten()
         | "CountRecords" >> beam.CombinePerKey(sum)
         | "CountLines" >> beam.Map(_count_line)
         | "WriteCounts" >> beam.io.WriteToText(storage.join(output_dir, "_counts", "counts"),
                                                file_name_suffix=".jsonl", num_shards=1, shard_name_template=""))
    _ = (file_lines
         | "FlattenFileNames" >> beam.Flatten()
         | "WriteFileNames" >> beam.io.WriteToText(storage.join(output_dir, "_counts", "files"),
                                                   file_name_suffix=".jsonl", num_shards=1, shard_name_template=""))


# ----------------------------------------------------------------------------- counts & reconciliation

def _empty_file_counts(splits: Sequence[str]) -> dict:
    return {"size_bytes": 0, "framed_bytes": 0, "read": 0, "read_bytes": 0, "unreadable_bytes": 0, "unreadable": [],
            "written": {s: 0 for s in splits}, "written_total": 0,
            "quarantined": {r: 0 for r in validation.REASONS}, "quarantined_total": 0}


_SUMMED = ("size_bytes", "framed_bytes", "read", "read_bytes", "unreadable_bytes", "written_total",
           "quarantined_total")


def assemble_counts(lines: Sequence[str], files: Sequence[str], splits: Sequence[str]) -> dict:
    """counts.json content (without reconciliation) from the job's count lines."""
    per_file = {f: _empty_file_counts(splits) for f in files}
    writes = {"frame": {s: 0 for s in splits}, "video": {s: 0 for s in splits}, "quarantine": 0}
    outputs = {"frame": {s: 0 for s in splits}, "video": {s: 0 for s in splits}, "quarantine": 0}
    output_files = {"frame": {s: 0 for s in splits}, "video": {s: 0 for s in splits}, "quarantine": 0}
    frames_hist: dict[str, int] = {}
    unexpected_sources: set[str] = set()
    for line in lines:
        if not line.strip():
            continue
        kind, a, b, n = json.loads(line)
        if kind in ("write_records", "output_records", "output_files"):
            target = {"write_records": writes, "output_records": outputs, "output_files": output_files}[kind]
            if a == "quarantine":
                target["quarantine"] += n
            else:
                target[a][b] = target[a].get(b, 0) + n
            continue
        if kind == "frames_hist":
            frames_hist[b] = frames_hist.get(b, 0) + n
            continue
        if a not in per_file:
            unexpected_sources.add(a)
            per_file[a] = _empty_file_counts(splits)
        entry = per_file[a]
        if kind in ("read", "read_bytes", "size_bytes", "framed_bytes"):
            entry[kind] += n
        elif kind == "unreadable":
            reason, _, offset = b.rpartition("@")
            entry["unreadable"].append({"offset": int(offset), "bytes": n, "reason": reason})
            entry["unreadable_bytes"] += n
        elif kind == "written":
            entry["written"][b] = entry["written"].get(b, 0) + n
            entry["written_total"] += n
        elif kind == "quarantined":
            entry["quarantined"][b] = entry["quarantined"].get(b, 0) + n
            entry["quarantined_total"] += n
        else:
            raise ValueError(f"unknown count line {line!r}")
    total = _empty_file_counts(splits)
    del total["unreadable"]
    total["unreadable_files"] = {r: 0 for r in validation.UNREADABLE_REASONS}
    for entry in per_file.values():
        entry["unreadable"].sort(key=lambda u: u["offset"])
        for key in _SUMMED:
            total[key] += entry[key]
        for s, n in entry["written"].items():
            total["written"][s] = total["written"].get(s, 0) + n
        for r, n in entry["quarantined"].items():
            total["quarantined"][r] = total["quarantined"].get(r, 0) + n
        for u in entry["unreadable"]:
            total["unreadable_files"][u["reason"]] = total["unreadable_files"].get(u["reason"], 0) + 1
    return {"schema_version": COUNTS_SCHEMA_VERSION, "splits": list(splits), "total": total, "per_file": per_file,
            "write_records": writes, "output_records": outputs, "output_files": output_files,
            "frames_histogram": dict(sorted(frames_hist.items(), key=lambda kv: int(kv[0].split("-")[0].rstrip("+")))),
            "unexpected_sources": sorted(unexpected_sources)}


def _record_balance(name: str, e: dict) -> list[str]:
    problems = []
    if e["read"] != e["written_total"] + e["quarantined_total"]:
        problems.append(f"{name}: read {e['read']} != written {e['written_total']} + quarantined "
                        f"{e['quarantined_total']}")
    if e["size_bytes"] != e["framed_bytes"] + e["unreadable_bytes"]:
        problems.append(f"{name}: {e['size_bytes']} bytes != {e['framed_bytes']} bytes of records + "
                        f"{e['unreadable_bytes']} unreadable bytes")
    return problems


def reconcile(counts: dict, verify_outputs: bool = True) -> list[str]:
    """Every way the counts disagree (empty list = reconciled).

    Per input file and in total: records read == written + quarantined, and file bytes ==
    bytes of framed records + unreadable bytes. Per split: records written == records that
    went into the frame write == into the video write; quarantined records + unreadable
    ranges == records that went into the quarantine write. With ``verify_outputs``, the
    records found in the written files equal what went into the writes.
    """
    problems = [f"records came from a file that was not in the input list: {src}"
                for src in counts["unexpected_sources"]]
    for src, e in counts["per_file"].items():
        if e["size_bytes"] == 0 and e["read"] == 0 and not e["unreadable"]:
            problems.append(f"{src}: never read (no size, no records, no unreadable range)")
        problems += _record_balance(src, e)
    t = counts["total"]
    problems += _record_balance("total", t)
    writes = counts["write_records"]
    for kind in ("frame", "video"):
        for split, n in t["written"].items():
            went = writes[kind].get(split, 0)
            if went != n:
                problems.append(f"{kind}/{split}: {n} records written but {went} went into the {kind} write")
    ranges = sum(t["unreadable_files"].values())
    if writes["quarantine"] != t["quarantined_total"] + ranges:
        problems.append(f"quarantine: {t['quarantined_total']} records + {ranges} unreadable ranges quarantined "
                        f"but {writes['quarantine']} went into the quarantine write")
    if not verify_outputs:
        return problems
    for kind in ("frame", "video"):
        for split, n in writes[kind].items():
            on_disk = counts["output_records"][kind].get(split, 0)
            if on_disk != n:
                problems.append(f"{kind}/{split}: {n} records sent to the writer but {on_disk} found in the files")
    if counts["output_records"]["quarantine"] != writes["quarantine"]:
        problems.append(f"quarantine: {writes['quarantine']} records sent to the writer but "
                        f"{counts['output_records']['quarantine']} found in the files")
    return problems


# ----------------------------------------------------------------------------- run

def _resolve_shards(num_shards, splits: Sequence[str], kind: str) -> dict[str, int]:
    default = DEFAULT_LOCAL_SHARDS if kind == "local" else 0
    if num_shards is None:
        shards = {s: default for s in splits}
        shards["quarantine"] = 1 if kind == "local" else 0
    elif isinstance(num_shards, Mapping):
        unknown = set(num_shards) - set(splits) - {"quarantine"}
        if unknown:
            raise ValueError(f"num_shards has unknown splits {sorted(unknown)}; splits are {list(splits)}")
        shards = {s: int(num_shards.get(s, default)) for s in splits}
        shards["quarantine"] = int(num_shards.get("quarantine", 1 if kind == "local" else 0))
    else:
        shards = {s: int(num_shards) for s in list(splits) + ["quarantine"]}
    if any(n < 0 for n in shards.values()):
        raise ValueError(f"num_shards must be >= 0 (0 = let Beam decide), got {shards}")
    if kind == "dataflow" and any(n == 1 for n in shards.values()):
        raise ValueError("num_shards=1 on Dataflow funnels a whole split through one worker; use 0 (Beam decides) "
                         "or a count >= 2")
    return shards


def _clear_previous_outputs(output_dir: str) -> None:
    for name in _JOB_OUTPUTS:
        path = storage.join(output_dir, name)
        if storage.gfile.exists(path):
            _LOG.warning("removing previous output %s", path)
            if storage.gfile.isdir(path):
                storage.gfile.rmtree(path)
            else:
                storage.gfile.remove(path)


def _file_sizes(files: Sequence[str]) -> dict[str, int]:
    result = {}
    for match in FileSystems.match(list(files)):
        for m in match.metadata_list:
            result[m.path] = m.size_in_bytes
    return result


def source_fingerprint(sizes: Mapping[str, int]) -> dict:
    """sha256 over the sorted (file, size) of the input: changes when a file is added, removed or resized."""
    h = hashlib.sha256()
    for path in sorted(sizes):
        h.update(f"{path}\t{sizes[path]}\n".encode("utf-8"))
    return {"digest": f"sha256:{h.hexdigest()}", "files": len(sizes), "bytes": int(sum(sizes.values())),
            "method": "sha256 of sorted (path, size in bytes)"}


def _relative(path: str, root: str) -> str:
    root = root.rstrip("/") + "/"
    if not path.startswith(root):
        raise ValueError(f"output file {path} is not under {root}")
    return path[len(root):]


def _output_files(lines: Sequence[str], output_dir: str, splits: Sequence[str]) -> dict:
    files: dict = {"frame": {s: [] for s in splits}, "video": {s: [] for s in splits}, "quarantine": []}
    for line in lines:
        if not line.strip():
            continue
        kind, split, path = json.loads(line)
        target = files["quarantine"] if kind == "quarantine" else files[kind][split]
        target.append(_relative(path, output_dir))
    for kind in ("frame", "video"):
        for split in splits:
            files[kind][split].sort()
    files["quarantine"].sort()
    return files


def _metric_counters(result) -> dict[str, int]:
    """The job's Beam counters (``yt8m.preprocess`` namespace), committed values; {} if the runner has none."""
    try:
        query = result.metrics().query(beam.metrics.MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except (NotImplementedError, AttributeError):
        return {}
    out: dict[str, int] = {}
    for c in query["counters"]:
        value = c.committed if c.committed is not None else c.attempted
        out[c.key.metric.name] = out.get(c.key.metric.name, 0) + int(value or 0)
    return dict(sorted(out.items()))


def _raise_if_nothing_valid(files: Sequence[str], num_classes: int) -> None:
    """After a failed run: if not one input record is valid, say so in one line (tensorflow-transform cannot
    analyze an empty dataset, and its error names a graph node, not the cause). Stops at the first valid record."""
    from yt8m import record_check

    first = None
    for _path, _index, _record, problem in record_check.scan(files, num_classes, "frame"):
        if not problem.reason:
            return
        first = first or problem
    detail = f"; first: {first.line()}" if first else ""
    raise ValueError(f"no valid record in the {len(files)} input file(s): every record would be quarantined, "
                     f"nothing to preprocess{detail}")


def video_feature_sizes(standardized: bool) -> dict[str, int]:
    """dataset.json's ``video_features``: each video-level feature the job wrote and its size (the z-scored
    means only when asked for)."""
    sizes = {"mean_rgb": schema.RGB_SIZE, "mean_audio": schema.AUDIO_SIZE}
    if standardized:
        sizes.update({transform_lib.MEAN_RGB_Z: schema.RGB_SIZE, transform_lib.MEAN_AUDIO_Z: schema.AUDIO_SIZE})
    return sizes


def run_preprocess(
    input_pattern: str,
    output_dir: str,
    num_classes: int,
    folds: int,
    holdout_fraction: float,
    runner: str = "local",
    pipeline_args: list[str] | None = None,
    *,
    num_shards: int | Mapping[str, int] | None = None,
    pipeline_options: PipelineOptions | None = None,
    clear_output: bool = True,
    verify_outputs: bool = False,
    standardized_features: bool = False,
    write_report: bool = True,
    source_fingerprint_value: str | None = None,
) -> dict:
    """Run the job and return the reconciled counts (also written to ``OUT/counts.json``).

    ``num_shards``: shards per split output (an int, or ``{split: n, "quarantine": n}``);
    0 lets Beam decide; default 2 per split and 1 for quarantine locally, 0 on Dataflow
    (where 1 is refused). ``pipeline_args`` go to ``build_pipeline_options`` (e.g.
    ``--project``, ``--region`` for Dataflow) unless ``pipeline_options`` is given.
    ``verify_outputs``: also count the records found in the written files (one extra read of
    the outputs); the counts always reconcile against what went into each write.
    ``standardized_features``: also write the z-scored means (``mean_rgb_z``, ``mean_audio_z``)
    into the video-level shards. ``source_fingerprint_value``: the caller's fingerprint of the
    input (kept in dataset.json beside the job's own (path, size) digest).
    Raises FileNotFoundError if no input file matches, RuntimeError if the counts do not
    reconcile; damaged input is quarantined, never raised.
    """
    kind = _normalise_runner(runner)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    splits = folds_lib.split_names(folds, holdout_fraction)
    files = [f if "://" in f else os.path.abspath(f) for f in storage.expand_pattern(input_pattern)]
    if "://" not in output_dir:
        output_dir = os.path.abspath(output_dir)
    shards = _resolve_shards(num_shards, splits, kind)
    options = pipeline_options or build_pipeline_options(kind, output_dir, extra_args=pipeline_args)
    sizes = _file_sizes(files)
    input_bytes = sum(sizes.values())
    if kind == "local" and input_bytes > LOCAL_FIXED_SHARDS_WARN_BYTES and any(shards.values()):
        _LOG.warning("preprocess: a fixed shard count groups every record in memory on the local runner (%.1f GB "
                     "of input); pass num_shards=0 to stream the writes", input_bytes / 1e9)
    if clear_output:
        _clear_previous_outputs(output_dir)
    storage.gfile.makedirs(output_dir)

    _LOG.info("preprocess: %d input files (%.1f MB) matching %r -> %s; runner=%s; splits=%s; shards=%s",
              len(files), input_bytes / 1e6, input_pattern, output_dir, kind, splits, shards)
    start = time.time()
    if kind == "local":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    else:
        pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, files, output_dir, int(num_classes), folds, holdout_fraction, shards, verify_outputs,
                   standardized_features=standardized_features)
    try:
        result = pipeline.run()
        state = result.wait_until_finish()
    except Exception:
        _raise_if_nothing_valid(files, int(num_classes))
        raise
    elapsed = time.time() - start
    if str(state).split(".")[-1] not in ("DONE", "None"):
        raise RuntimeError(f"preprocess: the Beam job ended in state {state}")
    _LOG.info("preprocess: Beam job finished (%s) in %.1f s; reconciling counts", state, elapsed)

    lines = storage.read_text(storage.join(output_dir, "_counts", "counts.jsonl")).splitlines()
    counts = assemble_counts(lines, files, splits)
    problems = reconcile(counts, verify_outputs)
    if not verify_outputs:
        counts["output_records"] = counts["output_files"] = None
    total = counts["total"]
    counts.update({
        "input_pattern": input_pattern, "num_input_files": len(files), "runner": kind,
        "elapsed_seconds": round(elapsed, 3),
        "records_per_second": round(total["read"] / elapsed, 2) if elapsed > 0 else None,
        "mb_per_second": round(total["size_bytes"] / 1e6 / elapsed, 2) if elapsed > 0 else None,
        "reconciled": not problems, "problems": problems, "outputs_verified": bool(verify_outputs),
        "counters": _metric_counters(result),
    })
    storage.write_json(storage.join(output_dir, "counts.json"), counts)
    if problems:
        raise RuntimeError(f"preprocess: counts do not reconcile ({len(problems)} problems; see "
                           f"{storage.join(output_dir, 'counts.json')}): " + "; ".join(problems[:10]))
    out_files = _output_files(storage.read_text(storage.join(output_dir, "_counts", "files.jsonl")).splitlines(),
                              output_dir, splits)
    stats = transform_lib.statistics(storage.join(output_dir, TRANSFORM_DIR)) if total["written_total"] else None
    if write_report:
        from yt8m_pipeline.beam_jobs import report

        report.write_report(storage.join(output_dir, REPORT_FILE), counts, stats, num_classes=int(num_classes))
    for name in _TEMP_OUTPUTS:
        if storage.gfile.exists(storage.join(output_dir, name)):
            storage.gfile.rmtree(storage.join(output_dir, name))

    dataset = {
        "schema_version": DATASET_SCHEMA_VERSION,
        "num_classes": int(num_classes), "folds": folds, "holdout_fraction": float(holdout_fraction),
        "split_hash": folds_lib.HASH_DESCRIPTION, "max_frames": schema.MAX_FRAMES,
        "frame_rule": f"frame shards keep every frame; features use the first {schema.MAX_FRAMES}",
        "input_pattern": input_pattern, "input_files": files,
        "source_fingerprint": dict(source_fingerprint(sizes), given=source_fingerprint_value),
        "paths_relative_to": "the directory of this file",
        "splits": {s: {"num_videos": total["written"][s], "frame_files": out_files["frame"][s],
                       "video_files": out_files["video"][s]} for s in splits},
        "video_features": video_feature_sizes(standardized_features),
        "transform_fn": TRANSFORM_DIR if total["written_total"] else None,
        "report": REPORT_FILE if write_report else None,
        "counts_file": "counts.json",
        "quarantine": {"num_records": total["quarantined_total"], "by_reason": total["quarantined"],
                       "unreadable_bytes": total["unreadable_bytes"], "unreadable_files": total["unreadable_files"],
                       "files": out_files["quarantine"]},
        "counts": {"read": total["read"], "written": total["written"], "written_total": total["written_total"],
                   "quarantined": total["quarantined"], "quarantined_total": total["quarantined_total"],
                   "unreadable_bytes": total["unreadable_bytes"], "size_bytes": total["size_bytes"]},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    storage.write_json(storage.join(output_dir, "dataset.json"), dataset)
    for line in summary_lines(counts, output_dir):
        _LOG.info("preprocess: %s", line)
    return counts


def summary_lines(counts: dict, output_dir: str) -> list[str]:
    """The job's summary: what was read, written, quarantined and unreadable, and where it went."""
    t = counts["total"]
    quarantined = ", ".join(f"{r} {n}" for r, n in t["quarantined"].items() if n) or "none"
    unreadable = ", ".join(f"{r} {n}" for r, n in t["unreadable_files"].items() if n) or "none"
    written = ", ".join(f"{s} {n}" for s, n in t["written"].items())
    return [
        f"read {t['read']:,} records ({t['size_bytes'] / 1e6:,.1f} MB) from {counts['num_input_files']} files in "
        f"{counts['elapsed_seconds']:.1f} s ({counts['records_per_second'] or 0:,.0f} records/s, "
        f"{counts['mb_per_second'] or 0:,.1f} MB/s)",
        f"written {t['written_total']:,} ({written})",
        f"quarantined {t['quarantined_total']:,} ({quarantined}); unreadable {t['unreadable_bytes']:,} bytes "
        f"(files: {unreadable})",
        f"dataset: {output_dir}",
    ]


# ----------------------------------------------------------------------------- CLI

class _OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad flag in ONE line (``prog: error: ...``), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The job's flags, for this module's CLI and for the ``yt8m preprocess`` verb."""
    p.add_argument("--input", required=True, help="frame-level TFRecords: a glob, or several comma-separated "
                   "(local or gs://)")
    p.add_argument("--output", required=True, help="output directory (local or gs://)")
    p.add_argument("--num-classes", type=int, default=schema.NUM_CLASSES)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--holdout", type=float, default=0.1, help="fraction of videos in the holdout split")
    p.add_argument("--runner", choices=["local", "dataflow"], default="local")
    p.add_argument("--num-shards", type=int, default=None,
                   help="output shards per split (0 = let Beam decide; default 2 local, 0 on Dataflow)")
    p.add_argument("--standardized", action="store_true",
                   help="also write z-scored video-level means (mean_rgb_z, mean_audio_z)")
    p.add_argument("--verify-outputs", action="store_true",
                   help="also re-read every written file and count its records (one more read of the outputs)")
    p.add_argument("--no-verify-outputs", dest="verify_outputs", action="store_false", help=argparse.SUPPRESS)
    p.add_argument("--no-report", dest="report", action="store_false", help="do not write report.html")
    g = p.add_argument_group("Dataflow")
    g.add_argument("--project")
    g.add_argument("--region")
    g.add_argument("--temp-location")
    g.add_argument("--staging-location")
    g.add_argument("--setup-file", help="install the project on workers from this setup.py (heavier than the image)")
    g.add_argument("--machine-type")
    g.add_argument("--max-num-workers", type=int)
    g.add_argument("--num-workers", type=int)
    g.add_argument("--sdk-container-image", help="worker image (default: the Dataflow image of images.yaml)")
    g.add_argument("--service-account-email")
    g.add_argument("--job-name")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def _parser() -> argparse.ArgumentParser:
    return add_arguments(_OneLineParser(
        prog="python -m yt8m_pipeline.beam_jobs.preprocess",
        description="Read frame-level YT8M TFRecords (damaged files quarantined, never fatal), validate, drop "
                    "duplicate ids, assign folds by a stable hash of the video id, write frame- and video-level "
                    "splits, a tensorflow-transform transform_fn, a quarantine, reconciled counts and a report.",
        epilog="Unrecognised --flags are passed to Beam as pipeline options (e.g. --experiments=...)."))


def preprocess_from_args(args: argparse.Namespace, beam_args: Sequence[str] = ()) -> list[str]:
    """Run the job from parsed flags (``add_arguments``); returns the summary lines to print.

    Raises ValueError / FileNotFoundError (one-line messages) on bad input, RuntimeError if the
    counts do not reconcile.
    """
    if "://" not in args.input:
        missing = [p for p in args.input.split(",") if p.strip() and not any(c in p for c in "*?[")
                   and not os.path.exists(p.strip())]
        if missing:
            raise FileNotFoundError(f"input file {missing[0].strip()!r} does not exist")
    # gs:// locations need credentials: found now, in one line, not as a traceback from the first read.
    for flag, value in (("--input", args.input), ("--output", args.output)):
        for part in [p.strip() for p in value.split(",") if p.strip()]:
            if storage.is_url(part):
                storage.check_cloud_access(part, flag)
    options = build_pipeline_options(
        args.runner, args.output, project=args.project, region=args.region, temp_location=args.temp_location,
        staging_location=args.staging_location, setup_file=args.setup_file, machine_type=args.machine_type,
        max_num_workers=args.max_num_workers, num_workers=args.num_workers,
        sdk_container_image=args.sdk_container_image, service_account_email=args.service_account_email,
        job_name=args.job_name, extra_args=list(beam_args))
    counts = run_preprocess(args.input, args.output, args.num_classes, args.folds, args.holdout, args.runner,
                            num_shards=args.num_shards, pipeline_options=options,
                            verify_outputs=args.verify_outputs, standardized_features=args.standardized,
                            write_report=args.report)
    output = args.output if "://" in args.output else os.path.abspath(args.output)
    return summary_lines(counts, output)


def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = _parser().parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        for noisy in ("apache_beam", "tensorflow_transform", "tfx_bsl", "absl", "tensorflow"):
            logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        lines = preprocess_from_args(args, beam_args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        if args.verbose:
            raise
        print(f"preprocess: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    # Re-import under the package name so pickled DoFns reference an importable module on workers.
    from yt8m_pipeline.beam_jobs import preprocess as _module

    sys.exit(_module.main())
