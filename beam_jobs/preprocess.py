"""Beam job: validate frame-level YT8M records, assign folds, write frame + video-level splits.

Stages (named PTransforms)::

    ListFiles -> ReadWithSource -> ParseAndValidate -+-> AssignSplit -> Write/<split>/{Frame,Video}
                                                     +-> (quarantine) -> Write/Quarantine
    every stage feeds (key, n) pairs into CountRecords (CombinePerKey(sum)) -> OUT/_counts/

Output layout under ``OUT``::

    frame/<split>/part-SSSSS-of-NNNNN.tfrecord   the input SequenceExamples, byte-identical
    video/<split>/part-SSSSS-of-NNNNN.tfrecord   tf.train.Example id, labels, mean_rgb, mean_audio
    quarantine/part-SSSSS-of-NNNNN.tfrecord      tf.train.Example raw, reason, detail, source, video_id
    counts.json                                  counts per input file and in total (reconciled)
    dataset.json                                 what the downstream steps need (written last)

``<split>`` is ``fold-0 .. fold-<k-1>`` and ``holdout`` (``yt8m.folds``: a stable hash of
the video id, so a video lands in the same split whatever the sharding or the runner).

After the run the job reconciles the counts (records read == written + quarantined, per
input file and in total; records found in the output files == records sent to them) and
raises ``RuntimeError`` if anything is missing. Locally it runs on Beam's FnApiRunner with
ONE worker (the DirectRunner would first try Prism; multi-worker local runs lost rows on
this stack); on Dataflow it ships the project with ``--setup_file``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import re
import struct
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from apache_beam.options.pipeline_options import (
    DirectOptions,
    GoogleCloudOptions,
    PipelineOptions,
    SetupOptions,
    StandardOptions,
    WorkerOptions,
)

from yt8m import folds as folds_lib
from yt8m import storage, validation, writers

_LOG = logging.getLogger("yt8m.preprocess")

METRICS_NAMESPACE = "yt8m.preprocess"
QUARANTINE_TAG = "quarantine"
COUNTS_SCHEMA_VERSION = 1
DEFAULT_LOCAL_SHARDS = 2
LOCAL_FIXED_SHARDS_WARN_BYTES = 2_000_000_000
SHARD_SUFFIX = ".tfrecord"
_JOB_OUTPUTS = ("frame", "video", "quarantine", "_counts", "counts.json", "dataset.json")


# ----------------------------------------------------------------------------- options

def _default_setup_file() -> str | None:
    """The repo's setup.py: next to the ``beam_jobs/`` folder (editable install / checkout) or in the cwd."""
    here = Path(__file__).resolve()
    for candidate in (here.parents[1] / "setup.py", Path.cwd() / "setup.py"):
        if candidate.is_file():
            return str(candidate)
    return None


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
    extra_args: Sequence[str] | None = None,
) -> PipelineOptions:
    """PipelineOptions for ``runner`` ("local" or "dataflow"); keyword arguments override ``extra_args``.

    * local: single-worker, in-memory (run it with the FnApiRunner, see ``run_preprocess``);
      any other ``direct_num_workers`` / running mode is refused.
    * dataflow: DataflowRunner with project, region, a gs:// temp/staging location (default
      ``<output_dir>/_beam/tmp`` and ``/staging``) and ``--setup_file`` (default: this repo's
      setup.py) unless ``sdk_container_image`` is given. No network access happens here.
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
    if sdk_container_image:
        workers.sdk_container_image = sdk_container_image
    setup = options.view_as(SetupOptions)
    if setup_file:
        setup.setup_file = setup_file
    elif not setup.setup_file and not workers.sdk_container_image:
        setup.setup_file = _default_setup_file()
        if not setup.setup_file:
            raise ValueError("dataflow: cannot find the repo's setup.py; pass setup_file= or sdk_container_image=")

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


def quarantine_example(raw: bytes, reason: str, detail: str, source: str, video_id: str = "") -> bytes:
    """The serialized quarantine record: a tf.train.Example keeping the original bytes."""
    import tensorflow as tf

    feature = {"raw": _bytes_feature(raw), "reason": _bytes_feature(reason), "detail": _bytes_feature(detail),
               "source": _bytes_feature(source), "video_id": _bytes_feature(video_id)}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


class ParseAndValidateFn(beam.DoFn):
    """(source, raw) -> main: (source, video_id, raw, video_level_bytes); quarantine: (source, reason, bytes)."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = int(num_classes)

    def setup(self):
        self._read = Metrics.counter(METRICS_NAMESPACE, "read")
        self._valid = Metrics.counter(METRICS_NAMESPACE, "valid")
        self._quarantined = Metrics.counter(METRICS_NAMESPACE, "quarantined")
        self._by_reason = {r: Metrics.counter(METRICS_NAMESPACE, f"quarantined_{r}") for r in validation.REASONS}

    def process(self, element):
        source, raw = element
        self._read.inc()
        try:
            video = validation.parse_frame_level(raw, self.num_classes, source)
        except validation.InvalidRecord as err:
            self._quarantined.inc()
            counter = self._by_reason.get(err.reason) or Metrics.counter(METRICS_NAMESPACE, f"quarantined_{err.reason}")
            counter.inc()
            yield beam.pvalue.TaggedOutput(
                QUARANTINE_TAG,
                (source, err.reason, quarantine_example(raw, err.reason, err.detail, source, err.video_id)))
            return
        mean_rgb, mean_audio = validation.video_level_means(video)
        video_bytes = writers.video_level_example(
            video.video_id, video.labels, mean_rgb, mean_audio).SerializeToString()
        self._valid.inc()
        yield source, video.video_id, raw, video_bytes


class ReadWithSource(beam.PTransform):
    """Expanded file list -> (source file, raw record bytes)."""

    def __init__(self, files: Sequence[str]):
        super().__init__()
        self.files = list(files)

    def expand(self, pbegin):
        return (pbegin
                | "ListFiles" >> beam.Create(self.files)
                | "ReadAllFromTFRecord" >> beam.io.tfrecordio.ReadAllFromTFRecord(with_filename=True))


class ParseAndValidate(beam.PTransform):
    """(source, raw) -> tagged ``valid`` and ``quarantine`` PCollections."""

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes

    def expand(self, records):
        return records | "Validate" >> beam.ParDo(ParseAndValidateFn(self.num_classes)).with_outputs(
            QUARANTINE_TAG, main="valid")


def _with_split(element, folds: int, holdout_fraction: float):
    source, video_id, raw, video_bytes = element
    return (folds_lib.assign_split(video_id, folds, holdout_fraction), source, video_id, raw, video_bytes)


class AssignSplit(beam.PTransform):
    """valid records -> {"assigned": all (split, source, id, raw, video), <split>: that split's records}."""

    def __init__(self, folds: int, holdout_fraction: float):
        super().__init__()
        self.folds, self.holdout_fraction = folds, holdout_fraction
        self.splits = folds_lib.split_names(folds, holdout_fraction)

    def expand(self, valid):
        index = {s: i for i, s in enumerate(self.splits)}
        assigned = valid | "Assign" >> beam.Map(_with_split, self.folds, self.holdout_fraction)
        parts = assigned | "PartitionBySplit" >> beam.Partition(lambda e, n: index[e[0]], len(self.splits))
        out = {"assigned": assigned}
        out.update({s: parts[i] for s, i in index.items()})
        return out


class CountOutputRecordsFn(beam.DoFn):
    """final output file name -> ((\"output_records\", kind, split), n) and ((\"output_files\", ...), 1).

    Counts the records actually on disk by walking the TFRecord headers (length, crc, skip).
    """

    def __init__(self, kind: str, split: str):
        super().__init__()
        self.kind, self.split = kind, split

    def process(self, path):
        n = count_tfrecords(path)
        yield ("output_records", self.kind, self.split), n
        yield ("output_files", self.kind, self.split), 1


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


def _write_tfrecords(pcoll, prefix: str, num_shards: int, kind: str, split: str, label: str, verify: bool = True):
    """WriteToTFRecord (+ count what landed on disk if ``verify``); returns a count-pairs PCollection or None."""
    files = pcoll | f"Write{label}" >> beam.io.WriteToTFRecord(
        prefix, file_name_suffix=SHARD_SUFFIX, num_shards=int(num_shards))
    if not verify:
        return None
    return (files
            | f"Restamp{label}" >> beam.Map(lambda f: beam.window.TimestampedValue(f, 0))
            | f"CountOnDisk{label}" >> beam.ParDo(CountOutputRecordsFn(kind, split)))


def _count_line(kv) -> str:
    (kind, a, b), n = kv
    return json.dumps([kind, a, b, int(n)])


def build_pipeline(pipeline: beam.Pipeline, files: Sequence[str], output_dir: str, num_classes: int, folds: int,
                   holdout_fraction: float, shards: Mapping[str, int], verify_outputs: bool = True) -> None:
    """Attach the preprocessing graph to ``pipeline`` (used by run_preprocess; handy in tests).

    ``verify_outputs``: count the records in the written files (header walk) so the reconciliation
    also covers the writes; costs one extra read of the outputs.
    """
    splits = folds_lib.split_names(folds, holdout_fraction)
    records = pipeline | "ReadWithSource" >> ReadWithSource(files)
    parsed = records | "ParseAndValidate" >> ParseAndValidate(num_classes)
    by_split = parsed.valid | "AssignSplit" >> AssignSplit(folds, holdout_fraction)
    quarantine = parsed[QUARANTINE_TAG]

    counts = [
        records | "CountRead" >> beam.FlatMap(lambda e: [(("read", e[0], ""), 1),
                                                        (("read_bytes", e[0], ""), len(e[1]))]),
        by_split["assigned"] | "CountWritten" >> beam.Map(lambda e: (("written", e[1], e[0]), 1)),
        quarantine | "CountQuarantined" >> beam.Map(lambda e: (("quarantined", e[0], e[1]), 1)),
    ]
    for split in splits:
        part = by_split[split]
        frames = part | f"FrameBytes/{split}" >> beam.Map(lambda e: e[3])
        videos = part | f"VideoBytes/{split}" >> beam.Map(lambda e: e[4])
        counts.append(_write_tfrecords(frames, storage.join(output_dir, "frame", split, "part"), shards[split],
                                       "frame", split, f"Frame/{split}", verify_outputs))
        counts.append(_write_tfrecords(videos, storage.join(output_dir, "video", split, "part"), shards[split],
                                       "video", split, f"Video/{split}", verify_outputs))
    q_bytes = quarantine | "QuarantineBytes" >> beam.Map(lambda e: e[2])
    counts.append(_write_tfrecords(q_bytes, storage.join(output_dir, "quarantine", "part"), shards["quarantine"],
                                   "quarantine", "", "Quarantine", verify_outputs))
    _ = ([c for c in counts if c is not None]
         | "FlattenCounts" >> beam.Flatten()
         | "CountRecords" >> beam.CombinePerKey(sum)
         | "CountLines" >> beam.Map(_count_line)
         | "WriteCounts" >> beam.io.WriteToText(storage.join(output_dir, "_counts", "counts"),
                                                file_name_suffix=".jsonl", num_shards=1, shard_name_template=""))


# ----------------------------------------------------------------------------- counts & reconciliation

def _empty_file_counts(splits: Sequence[str]) -> dict:
    return {"read": 0, "read_bytes": 0, "written": {s: 0 for s in splits}, "written_total": 0,
            "quarantined": {r: 0 for r in validation.REASONS}, "quarantined_total": 0}


def assemble_counts(lines: Sequence[str], files: Sequence[str], splits: Sequence[str]) -> dict:
    """counts.json content (without reconciliation) from the job's count lines."""
    per_file = {f: _empty_file_counts(splits) for f in files}
    outputs = {"frame": {s: 0 for s in splits}, "video": {s: 0 for s in splits}, "quarantine": 0}
    output_files = {"frame": {s: 0 for s in splits}, "video": {s: 0 for s in splits}, "quarantine": 0}
    unexpected_sources: set[str] = set()
    for line in lines:
        if not line.strip():
            continue
        kind, a, b, n = json.loads(line)
        if kind in ("output_records", "output_files"):
            target = outputs if kind == "output_records" else output_files
            if a == "quarantine":
                target["quarantine"] += n
            else:
                target[a][b] = target[a].get(b, 0) + n
            continue
        if a not in per_file:
            unexpected_sources.add(a)
            per_file[a] = _empty_file_counts(splits)
        entry = per_file[a]
        if kind in ("read", "read_bytes"):
            entry[kind] += n
        elif kind == "written":
            entry["written"][b] = entry["written"].get(b, 0) + n
            entry["written_total"] += n
        elif kind == "quarantined":
            entry["quarantined"][b] = entry["quarantined"].get(b, 0) + n
            entry["quarantined_total"] += n
        else:
            raise ValueError(f"unknown count line {line!r}")
    total = _empty_file_counts(splits)
    for entry in per_file.values():
        total["read"] += entry["read"]
        total["read_bytes"] += entry["read_bytes"]
        total["written_total"] += entry["written_total"]
        total["quarantined_total"] += entry["quarantined_total"]
        for s, n in entry["written"].items():
            total["written"][s] = total["written"].get(s, 0) + n
        for r, n in entry["quarantined"].items():
            total["quarantined"][r] = total["quarantined"].get(r, 0) + n
    return {"schema_version": COUNTS_SCHEMA_VERSION, "splits": list(splits), "total": total, "per_file": per_file,
            "output_records": outputs, "output_files": output_files,
            "unexpected_sources": sorted(unexpected_sources)}


def reconcile(counts: dict, verify_outputs: bool = True) -> list[str]:
    """Every way the counts disagree (empty list = reconciled); on-disk counts only if ``verify_outputs``."""
    problems = []
    for src in counts["unexpected_sources"]:
        problems.append(f"records came from a file that was not in the input list: {src}")
    for src, e in counts["per_file"].items():
        if e["read"] != e["written_total"] + e["quarantined_total"]:
            problems.append(f"{src}: read {e['read']} != written {e['written_total']} + quarantined "
                            f"{e['quarantined_total']}")
    t = counts["total"]
    if t["read"] != t["written_total"] + t["quarantined_total"]:
        problems.append(f"total: read {t['read']} != written {t['written_total']} + quarantined "
                        f"{t['quarantined_total']}")
    if not verify_outputs:
        return problems
    for kind in ("frame", "video"):
        for split, n in t["written"].items():
            on_disk = counts["output_records"][kind].get(split, 0)
            if on_disk != n:
                problems.append(f"{kind}/{split}: {n} records sent to the writer but {on_disk} found in the files")
    if counts["output_records"]["quarantine"] != t["quarantined_total"]:
        problems.append(f"quarantine: {t['quarantined_total']} records quarantined but "
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


def _input_bytes(pattern: str, files: Sequence[str]) -> int | None:
    wanted = set(files)
    try:
        parts = [p.strip() for p in pattern.split(",") if p.strip()]
        parts = [p if "://" in p else os.path.abspath(p) for p in parts]
        sizes = {m.path: m.size_in_bytes for r in FileSystems.match(parts) for m in r.metadata_list}
        return sum(sizes[f] for f in wanted if f in sizes)
    except Exception:  # sizes are for the log line only
        return None


def _glob_outputs(output_dir: str, *parts: str) -> list[str]:
    return sorted(storage.gfile.glob(storage.join(output_dir, *parts, "part-*" + SHARD_SUFFIX)))


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
    verify_outputs: bool = True,
) -> dict:
    """Run the job and return the reconciled counts (also written to ``OUT/counts.json``).

    ``num_shards``: shards per split output (an int, or ``{split: n, "quarantine": n}``);
    0 lets Beam decide; default 2 per split and 1 for quarantine locally, 0 on Dataflow.
    ``pipeline_args`` go to ``build_pipeline_options`` (e.g. ``--project``, ``--region`` for
    Dataflow) unless ``pipeline_options`` is given. ``verify_outputs`` also counts the records
    found in the written files (one extra read of the outputs; turn off for very large
    Dataflow runs if that read is too costly). Raises FileNotFoundError if no input file
    matches, RuntimeError if the counts do not reconcile.
    """
    kind = _normalise_runner(runner)
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    splits = folds_lib.split_names(folds, holdout_fraction)
    files = [f if "://" in f else os.path.abspath(f) for f in storage.expand_pattern(input_pattern)]
    if kind == "local" and "://" not in output_dir:
        output_dir = os.path.abspath(output_dir)
    shards = _resolve_shards(num_shards, splits, kind)
    options = pipeline_options or build_pipeline_options(kind, output_dir, extra_args=pipeline_args)
    input_bytes = _input_bytes(input_pattern, files)
    if kind == "local" and input_bytes and input_bytes > LOCAL_FIXED_SHARDS_WARN_BYTES and any(shards.values()):
        _LOG.warning("preprocess: a fixed shard count groups every record in memory on the local runner (%.1f GB "
                     "of input); pass num_shards=0 to stream the writes", input_bytes / 1e9)
    if clear_output:
        _clear_previous_outputs(output_dir)
    storage.gfile.makedirs(output_dir)

    _LOG.info("preprocess: %d input files (%s) matching %r -> %s; runner=%s; splits=%s; shards=%s",
              len(files), "?" if input_bytes is None else f"{input_bytes / 1e6:.1f} MB", input_pattern, output_dir,
              kind, splits, shards)
    start = time.time()
    if kind == "local":
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        pipeline = beam.Pipeline(runner=FnApiRunner(), options=options)
    else:
        pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, files, output_dir, int(num_classes), folds, holdout_fraction, shards, verify_outputs)
    result = pipeline.run()
    state = result.wait_until_finish()
    elapsed = time.time() - start
    if str(state).split(".")[-1] not in ("DONE", "None"):
        raise RuntimeError(f"preprocess: the Beam job ended in state {state}")
    _LOG.info("preprocess: Beam job finished (%s) in %.1f s; reconciling counts", state, elapsed)

    count_file = storage.join(output_dir, "_counts", "counts.jsonl")
    lines = storage.read_text(count_file).splitlines()
    counts = assemble_counts(lines, files, splits)
    problems = reconcile(counts, verify_outputs)
    if not verify_outputs:
        counts["output_records"] = counts["output_files"] = None
    total = counts["total"]
    counts.update({
        "input_pattern": input_pattern, "num_input_files": len(files), "runner": kind,
        "elapsed_seconds": round(elapsed, 3),
        "records_per_second": round(total["read"] / elapsed, 2) if elapsed > 0 else None,
        "mb_per_second": round(total["read_bytes"] / 1e6 / elapsed, 2) if elapsed > 0 else None,
        "reconciled": not problems, "problems": problems, "outputs_verified": bool(verify_outputs),
    })
    storage.write_json(storage.join(output_dir, "counts.json"), counts)
    if problems:
        raise RuntimeError(f"preprocess: counts do not reconcile ({len(problems)} problems; see "
                           f"{storage.join(output_dir, 'counts.json')}): " + "; ".join(problems[:10]))
    storage.gfile.rmtree(storage.join(output_dir, "_counts"))

    dataset = {
        "num_classes": int(num_classes), "folds": folds, "holdout_fraction": float(holdout_fraction),
        "split_hash": folds_lib.HASH_DESCRIPTION, "input_pattern": input_pattern, "input_files": files,
        "splits": {s: {"num_videos": total["written"][s],
                       "frame_files": _glob_outputs(output_dir, "frame", s),
                       "video_files": _glob_outputs(output_dir, "video", s)} for s in splits},
        "quarantine": {"num_records": total["quarantined_total"], "by_reason": total["quarantined"],
                       "files": _glob_outputs(output_dir, "quarantine")},
        "counts": {"read": total["read"], "written": total["written"], "written_total": total["written_total"],
                   "quarantined": total["quarantined"], "quarantined_total": total["quarantined_total"]},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    storage.write_json(storage.join(output_dir, "dataset.json"), dataset)
    quarantined = {r: n for r, n in total["quarantined"].items() if n}
    _LOG.info("preprocess: %d records from %d files in %.1f s (%.0f records/s, %.1f MB/s): written %d %s, "
              "quarantined %d %s", total["read"], len(files), elapsed, counts["records_per_second"] or 0,
              counts["mb_per_second"] or 0, total["written_total"], total["written"], total["quarantined_total"],
              quarantined)
    return counts


# ----------------------------------------------------------------------------- CLI

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m yt8m_pipeline.beam_jobs.preprocess",
        description="Validate frame-level YT8M TFRecords, assign folds by a stable hash of the video id, write "
                    "frame- and video-level splits, a quarantine and reconciled counts.",
        epilog="Unrecognised --flags are passed to Beam as pipeline options (e.g. --experiments=...).")
    p.add_argument("--input", required=True, help="glob of frame-level TFRecords (comma-separated globs allowed)")
    p.add_argument("--output", required=True, help="output directory (local or gs://)")
    p.add_argument("--num-classes", type=int, default=3862)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--holdout", type=float, default=0.1, help="fraction of videos in the holdout split")
    p.add_argument("--runner", choices=["local", "dataflow"], default="local")
    p.add_argument("--num-shards", type=int, default=None,
                   help="output shards per split (0 = let Beam decide; default 2 local, 0 on Dataflow)")
    g = p.add_argument_group("Dataflow")
    g.add_argument("--project")
    g.add_argument("--region")
    g.add_argument("--temp-location")
    g.add_argument("--staging-location")
    g.add_argument("--setup-file", help="default: the repo's setup.py")
    g.add_argument("--machine-type")
    g.add_argument("--max-num-workers", type=int)
    g.add_argument("--sdk-container-image")
    g.add_argument("--job-name")
    p.add_argument("--no-verify-outputs", dest="verify_outputs", action="store_false",
                   help="do not re-count the records in the written files (saves one read of the outputs)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args, beam_args = _parser().parse_known_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        logging.getLogger("apache_beam").setLevel(logging.WARNING)
    options = build_pipeline_options(
        args.runner, args.output, project=args.project, region=args.region, temp_location=args.temp_location,
        staging_location=args.staging_location, setup_file=args.setup_file, machine_type=args.machine_type,
        max_num_workers=args.max_num_workers, sdk_container_image=args.sdk_container_image, job_name=args.job_name,
        extra_args=beam_args)
    try:
        counts = run_preprocess(args.input, args.output, args.num_classes, args.folds, args.holdout, args.runner,
                                num_shards=args.num_shards, pipeline_options=options,
                                verify_outputs=args.verify_outputs)
    except (FileNotFoundError, ValueError) as exc:
        print(f"preprocess: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"read": counts["total"]["read"], "written": counts["total"]["written"],
                      "quarantined_total": counts["total"]["quarantined_total"]}))
    return 0


if __name__ == "__main__":
    # Re-import under the package name so pickled DoFns reference an importable module on workers.
    from yt8m_pipeline.beam_jobs import preprocess as _module

    sys.exit(_module.main())
