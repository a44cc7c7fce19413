"""The preprocessing job on Dataflow from the pipeline: Flex Template launch, then finalize and register.

With ``vertex.dataflow.runner: dataflow`` the pipeline's preprocessing stage is three tasks
(``pipelines/yt8m_pipeline.py``)::

    DataflowFlexTemplateJobOp (GCPC)  ->  WaitGcpResourcesOp (GCPC)  ->  register_dataset_op (ours)
    launches the Beam job                 polls it; the job links        finishes and checks the job's output,
    from our Flex Template                from the Vertex UI; a           emits the Dataset artifact (uri = the
                                          cancelled run cancels it        gs:// folder) and the counts (Metrics)

1. **Launch** (``launch_main``, on Dataflow's launcher VM): the Flex Template's image is the
   project's Dataflow image (``docker/dataflow``: Beam's SDK image + the library + Google's
   Python template launcher), so the job graph is built with exactly the Beam, TensorFlow,
   TFT and library versions the workers run. The launcher calls
   ``docker/dataflow/flex_template_main.py`` (``FLEX_TEMPLATE_PYTHON_PY_FILE``) with the
   template parameters (``FLEX_PARAMETERS``, declared in
   ``docker/dataflow/flex_template_metadata.json``) and Dataflow's pipeline options (project,
   region, temp/staging locations, worker image, service account, machine type, max
   workers, template location). It lists the input, writes ``launch.json`` in the output
   folder, attaches the Beam job's graph (``beam_jobs.preprocess.build_pipeline``, the job's
   own code) and returns right after ``pipeline.run()``: a Flex Template launcher must not
   wait (the Dataflow job is only created once the launcher has exited).
2. **Wait**: ``WaitGcpResourcesOp`` polls the job named in the launch task's ``gcp_resources``
   and fails when the job fails.
3. **Register** (``register_dataset``): if the job's output has no ``dataset.json`` yet, it
   is finalized here (``finalize``): the counts the job wrote under ``_counts/`` are
   assembled and reconciled by the job's own ``assemble_counts``/``reconcile``, then
   ``counts.json``, ``report.html`` and ``dataset.json`` are written as ``run_preprocess``
   writes them after a job it waited for. Then the counts are checked (read == written +
   quarantined, per split, against dataset.json, against the expected classes/folds/holdout)
   and the Dataset artifact's metadata is built. Anything that does not add up fails the
   task with the list of problems.

Why not the job's CLI as the template's main (``python -m yt8m_pipeline.beam_jobs.preprocess``):
it calls ``run_preprocess``, which waits for the job and THEN writes counts.json and
dataset.json. Under a Flex Template the run only writes the job graph (``template_location``):
``wait_until_finish`` returns at once and the counts do not exist yet, so the launch would
fail. ``finalize`` is that second half of ``run_preprocess``, run after the job instead;
``tests/test_dataflow_launch.py`` checks that it writes the same dataset.json and counts.json
as ``run_preprocess`` on the same input (it belongs in ``beam_jobs/preprocess.py`` once the
job exposes it; it reads two private names of it, ``_output_files`` and ``_TEMP_OUTPUTS``).

Why not ``DataflowPythonJobOp``: it runs ``python3 <file> --runner DataflowRunner ...`` in
GCPC's own image, which has neither the library nor TensorFlow/TFT (a requirements file
would pip-install them on every run, unpinned against Beam 2.77), it stops following the
driver as soon as the job id is printed (the same post-run problem), and the job's CLI
refuses ``--runner DataflowRunner`` (its choices are local|dataflow).

Nothing here has run on Dataflow or Vertex AI (no GCP access where it was written): the launch
is built and parsed offline, the graph and ``finalize`` run on Beam's local runner in the tests.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
import shlex
import sys
from collections.abc import Sequence

from yt8m import storage

log = logging.getLogger(__name__)

# The template's parameters (docker/dataflow/flex_template_metadata.json declares the same names).
FLEX_PARAMETERS = ("input", "output", "num_classes", "folds", "holdout", "standardized")
METADATA_FILE = "docker/dataflow/flex_template_metadata.json"  # relative to the repository root
LAUNCH_FILE = "launch.json"
LAUNCH_SCHEMA_VERSION = 1
COUNTS_DIR = "_counts"


class DataflowOutputError(ValueError):
    """The Dataflow job's output is missing, incomplete or does not reconcile; the message lists why."""


# ------------------------------------------------------------------------------------ the template

def flex_parameters(input_pattern, output_dir, num_classes, folds, holdout_fraction,
                    standardized_features=False) -> dict:
    """The Flex Template's parameters by name (the pipeline passes its channels through this)."""
    return dict(zip(FLEX_PARAMETERS, (input_pattern, output_dir, num_classes, folds, holdout_fraction,
                                      standardized_features)))


def flex_template_build_command(template_path: str, image: str | None = None) -> str:
    """The one-time step that writes the Flex Template spec the pipeline launches (run from the repo root).

    ``gcloud dataflow flex-template build <template_path> --image <dataflow image> --sdk-language PYTHON
    --metadata-file docker/dataflow/flex_template_metadata.json``: the spec (a small JSON file on GCS)
    names the image (the launcher runs it; pin it by digest) and the parameters; set
    ``vertex.dataflow.flex_template`` to ``template_path``. Rebuild the spec when the image changes.
    """
    if not template_path.startswith("gs://") or not template_path.endswith(".json"):
        raise ValueError(f"the Flex Template spec goes to a gs://.../NAME.json path, got {template_path!r}")
    if image is None:
        from yt8m_pipeline import images

        image = images.image("dataflow")
    return (f"gcloud dataflow flex-template build {shlex.quote(template_path)} --image {shlex.quote(image)} "
            f"--sdk-language PYTHON --metadata-file {METADATA_FILE}")


# ------------------------------------------------------------------------------------ launch

class _OneLineParser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _whole_number(text: str) -> int:
    """``"100"`` or ``"100.0"`` (pipeline parameters are protobuf numbers: an int may arrive as a float)."""
    value = float(text)
    if not math.isfinite(value) or not value.is_integer():
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


def _true_or_false(text: str) -> bool:
    """``"true"`` / ``"false"`` in any case (a boolean pipeline parameter arrives as its JSON text), or 1 / 0."""
    value = {"true": True, "1": True, "false": False, "0": False}.get(text.strip().lower())
    if value is None:
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    p = _OneLineParser(prog="flex_template_main.py",
                       description="Launch the yt8m preprocessing Beam job on Dataflow (the Flex Template's main: "
                                   "builds the job graph and returns; the pipeline registers the output after the "
                                   "job). Other --flags are Beam pipeline options.")
    p.add_argument("--input", required=True, help="gs:// glob of the frame-level TFRecords (comma-separated allowed)")
    p.add_argument("--output", required=True, help="gs:// folder of the preprocessed dataset")
    p.add_argument("--num_classes", "--num-classes", dest="num_classes", type=_whole_number, required=True)
    p.add_argument("--folds", type=_whole_number, required=True)
    p.add_argument("--holdout", type=float, required=True, help="fraction of videos in the holdout split")
    p.add_argument("--standardized", type=_true_or_false, nargs="?", const=True, default=False,
                   help="true: also write the z-scored means mean_rgb_z / mean_audio_z (what members with "
                        "training.video_features: standardized train on); default false")
    return p


def parse_launch_args(argv: Sequence[str]):
    """(template parameters, Beam pipeline options) from the launcher's command line; one-line errors."""
    from apache_beam.options.pipeline_options import WorkerOptions

    from yt8m_pipeline.beam_jobs import preprocess

    args, beam_args = _parser().parse_known_args(list(argv))
    for name in ("input", "output"):
        value = getattr(args, name)
        if not all(part.strip().startswith("gs://") for part in value.split(",")):
            raise ValueError(f"--{name} must be a gs:// path on Dataflow, got {value!r}")
    options = preprocess.build_pipeline_options("dataflow", args.output, extra_args=beam_args)
    if not options.view_as(WorkerOptions).sdk_container_image:
        # Without it build_pipeline_options would fall back to --setup_file, which the launcher VM has no use for.
        raise ValueError("no --sdk_container_image: launch the template with the worker image set "
                         "(the pipeline passes vertex.dataflow.worker_image)")
    return args, options


def attach_job(pipeline, input_pattern: str, output_dir: str, num_classes: int, folds: int,
               holdout_fraction: float, *, standardized_features: bool = False, job: dict | None = None) -> dict:
    """List the input, write ``launch.json`` in ``output_dir`` and attach the Beam job's graph to ``pipeline``.

    Refuses an ``output_dir`` that already holds a dataset (the pipeline gives each run its own).
    Returns the launch record. ``standardized_features``: the job also writes the z-scored means (recorded,
    so that ``finalize`` lists them in dataset.json). ``job``: what to record about the Dataflow job
    (name, project, ...).
    """
    from apache_beam.io.filesystems import FileSystems

    from yt8m import folds as folds_lib
    from yt8m_pipeline.beam_jobs import preprocess

    splits = folds_lib.split_names(folds, holdout_fraction)
    output_dir = output_dir if "://" in output_dir else _abspath(output_dir)
    if storage.gfile.exists(storage.join(output_dir, "dataset.json")):
        raise ValueError(f"{output_dir} already holds a dataset (dataset.json); launch into a new folder")
    files = [f if "://" in f else _abspath(f) for f in storage.expand_pattern(input_pattern, "training data")]
    sizes = {m.path: m.size_in_bytes for match in FileSystems.match(files) for m in match.metadata_list}
    record = {
        "schema_version": LAUNCH_SCHEMA_VERSION, "output_dir": output_dir, "input_pattern": input_pattern,
        "input_files": files,
        "input_sizes": sizes, "num_classes": int(num_classes), "folds": int(folds),
        "holdout_fraction": float(holdout_fraction), "splits": splits,
        "num_shards": 0, "verify_outputs": False, "standardized_features": bool(standardized_features),
        "launched": _now().isoformat(timespec="seconds"), "job": dict(job or {}),
    }
    storage.write_json(storage.join(output_dir, LAUNCH_FILE), record)
    shards = {s: 0 for s in [*splits, "quarantine"]}  # 0: Beam picks the sharding (1 is refused on Dataflow)
    preprocess.build_pipeline(pipeline, files, output_dir, int(num_classes), int(folds), float(holdout_fraction),
                              shards, verify_outputs=False, standardized_features=bool(standardized_features))
    return record


def launch_main(argv: Sequence[str] | None = None) -> int:
    """The Flex Template's main: parse, attach the job's graph, ``pipeline.run()`` and return (no wait)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import GoogleCloudOptions, WorkerOptions

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        args, options = parse_launch_args(sys.argv[1:] if argv is None else argv)
        gco, workers = options.view_as(GoogleCloudOptions), options.view_as(WorkerOptions)
        job = {"name": gco.job_name, "project": gco.project, "region": gco.region,
               "worker_image": workers.sdk_container_image, "machine_type": workers.machine_type,
               "max_num_workers": workers.max_num_workers, "service_account": gco.service_account_email}
        pipeline = beam.Pipeline(options=options)
        record = attach_job(pipeline, args.input, args.output, args.num_classes, args.folds, args.holdout,
                            standardized_features=args.standardized, job=job)
    except (ValueError, FileNotFoundError) as exc:
        print(f"flex_template_main: error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    pipeline.run()  # with the launcher's --template_location this writes the job graph; Dataflow creates the job
    print(f"launched: {len(record['input_files'])} input files -> {args.output} (job {job['name']})")
    return 0


# ------------------------------------------------------------------------------------ finalize

def finalize(output_dir: str, data_fingerprint: str | None = None) -> dict:
    """Write counts.json, report.html and dataset.json of a finished job launched by ``launch_main``.

    The second half of ``beam_jobs.preprocess.run_preprocess`` (which waits for its job): counts
    assembled and reconciled by the job's own functions, the same files, the job's temporary
    folders removed. ``elapsed_seconds`` is the time since the launch (job start-up included;
    the job's own timings are in the Dataflow UI). Raises DataflowOutputError if the launch
    record or the counts are missing, or if the counts do not reconcile (counts.json is written
    first, with the problems). Safe to run again after an interruption (see the end).
    """
    from yt8m import folds as folds_lib
    from yt8m import schema
    from yt8m import transform as transform_lib
    from yt8m_pipeline.beam_jobs import preprocess, report

    launch_file, counts_file = storage.join(output_dir, LAUNCH_FILE), storage.join(output_dir, COUNTS_DIR,
                                                                                   "counts.jsonl")
    for path, what in ((launch_file, "no launch record: was the job launched by the Flex Template?"),
                       (counts_file, "no counts from the job: did the Dataflow job finish?")):
        if not storage.gfile.exists(path):
            raise DataflowOutputError(f"{path}: {what}")
    launch = storage.read_json(launch_file)
    files, splits, verify = launch["input_files"], launch["splits"], launch["verify_outputs"]
    num_classes, folds, holdout = launch["num_classes"], launch["folds"], launch["holdout_fraction"]
    counts = preprocess.assemble_counts(storage.read_text(counts_file).splitlines(), files, splits)
    problems = preprocess.reconcile(counts, verify)
    if not verify:
        counts["output_records"] = counts["output_files"] = None
    total = counts["total"]
    elapsed = max((_now() - _dt.datetime.fromisoformat(launch["launched"])).total_seconds(), 1e-3)
    counts.update({
        "input_pattern": launch["input_pattern"], "num_input_files": len(files), "runner": "dataflow",
        "elapsed_seconds": round(elapsed, 3), "records_per_second": round(total["read"] / elapsed, 2),
        "mb_per_second": round(total["size_bytes"] / 1e6 / elapsed, 2),
        "reconciled": not problems, "problems": problems, "outputs_verified": bool(verify),
        "counters": {},  # the job's Beam counters are in the Dataflow UI (the launcher exits before they exist)
    })
    storage.write_json(storage.join(output_dir, "counts.json"), counts)
    if problems:
        raise DataflowOutputError(f"{output_dir}: the job's counts do not reconcile ({len(problems)} problems; see "
                                  f"{storage.join(output_dir, 'counts.json')}): " + "; ".join(problems[:10]))
    lines = storage.read_text(storage.join(output_dir, COUNTS_DIR, "files.jsonl")).splitlines()
    # paths relative to the folder the job wrote to (the same folder, unless it was copied since)
    out_files = preprocess._output_files(lines, launch["output_dir"], splits)
    written = total["written_total"]
    stats = transform_lib.statistics(storage.join(output_dir, preprocess.TRANSFORM_DIR)) if written else None
    report.write_report(storage.join(output_dir, preprocess.REPORT_FILE), counts, stats, num_classes=num_classes)
    sizes = launch["input_sizes"]
    dataset = {  # as run_preprocess writes it (tests/test_dataflow_launch.py compares the two)
        "schema_version": preprocess.DATASET_SCHEMA_VERSION,
        "num_classes": int(num_classes), "folds": folds, "holdout_fraction": float(holdout),
        "split_hash": folds_lib.HASH_DESCRIPTION, "max_frames": schema.MAX_FRAMES,
        "frame_rule": f"frame shards keep every frame; features use the first {schema.MAX_FRAMES}",
        "input_pattern": launch["input_pattern"], "input_files": files,
        "source_fingerprint": dict(preprocess.source_fingerprint(sizes), given=data_fingerprint),
        "paths_relative_to": "the directory of this file",
        "splits": {s: {"num_videos": total["written"][s], "frame_files": out_files["frame"][s],
                       "video_files": out_files["video"][s]} for s in splits},
        "video_features": preprocess.video_feature_sizes(bool(launch.get("standardized_features"))),
        "transform_fn": preprocess.TRANSFORM_DIR if written else None,
        "report": preprocess.REPORT_FILE,
        "counts_file": "counts.json",
        "quarantine": {"num_records": total["quarantined_total"], "by_reason": total["quarantined"],
                       "unreadable_bytes": total["unreadable_bytes"], "unreadable_files": total["unreadable_files"],
                       "files": out_files["quarantine"]},
        "counts": {"read": total["read"], "written": total["written"], "written_total": written,
                   "quarantined": total["quarantined"], "quarantined_total": total["quarantined_total"],
                   "unreadable_bytes": total["unreadable_bytes"], "size_bytes": total["size_bytes"]},
        "created": _now().isoformat(timespec="seconds"),
    }
    storage.write_json(storage.join(output_dir, "dataset.json"), dataset)
    # The job's temporary folders go after dataset.json (run_preprocess removes them before): a retried
    # register task that finds dataset.json has nothing left to finalize, one that does not still has the counts.
    for name in preprocess._TEMP_OUTPUTS:
        if storage.gfile.exists(storage.join(output_dir, name)):
            storage.gfile.rmtree(storage.join(output_dir, name))
    for line in preprocess.summary_lines(counts, output_dir):
        log.info("preprocess (dataflow): %s", line)
    return counts


# ------------------------------------------------------------------------------------ register

def check_output(info: dict, counts: dict, num_classes: int, folds: int, holdout_fraction: float) -> list[str]:
    """Every way dataset.json and counts.json disagree with each other or with what was asked (empty = fine)."""
    problems = []
    if counts.get("reconciled") is not True or counts.get("problems"):
        problems.append(f"counts.json is not reconciled: {'; '.join(counts.get('problems') or ['reconciled=false'])}")
    t = counts["total"]
    if t["read"] != t["written_total"] + t["quarantined_total"]:
        problems.append(f"read {t['read']} != written {t['written_total']} + quarantined {t['quarantined_total']}")
    if sum(t["written"].values()) != t["written_total"]:
        problems.append(f"written per split {t['written']} does not add up to {t['written_total']}")
    if sum(t["quarantined"].values()) != t["quarantined_total"]:
        problems.append(f"quarantined per reason does not add up to {t['quarantined_total']}")
    summary = info.get("counts", {})
    for key in ("read", "written_total", "quarantined_total"):
        if summary.get(key) != t[key]:
            problems.append(f"dataset.json counts.{key} = {summary.get(key)} but counts.json says {t[key]}")
    for split, entry in info.get("splits", {}).items():
        if entry.get("num_videos") != t["written"].get(split):
            problems.append(f"split {split}: dataset.json lists {entry.get('num_videos')} videos, counts.json "
                            f"{t['written'].get(split)}")
        if entry.get("num_videos") and not (entry.get("frame_files") and entry.get("video_files")):
            problems.append(f"split {split}: {entry.get('num_videos')} videos but no frame or video files listed")
    for key, want in (("num_classes", num_classes), ("folds", folds), ("holdout_fraction", holdout_fraction)):
        if info.get(key) != want:
            problems.append(f"dataset.json {key} = {info.get(key)!r}, the pipeline asked for {want!r}")
    return problems


def register_dataset(output_dir: str, num_classes: int, folds: int, holdout_fraction: float,
                     data_fingerprint: str = "") -> dict:
    """The checked Dataset artifact metadata of a preprocessing output folder (gs:// or local).

    Finalizes a Dataflow job's output first when it has no dataset.json yet (``finalize``). Reads
    dataset.json (through ``yt8m.dataset.Dataset``) and counts.json, and raises
    DataflowOutputError listing every problem ``check_output`` finds. The metadata has the keys
    the local preprocess task sets (source, counts per split and reason, ...) plus ``counts``
    (the totals, for the Metrics artifact).
    """
    from yt8m import dataset as dataset_lib

    if not storage.gfile.exists(storage.join(output_dir, dataset_lib.DATASET_FILE)):
        finalize(output_dir, data_fingerprint or None)
    try:
        ds = dataset_lib.Dataset.open(output_dir)
    except dataset_lib.DatasetError as exc:
        raise DataflowOutputError(str(exc)) from None
    counts_file = storage.join(output_dir, ds.info.get("counts_file") or "counts.json")
    if not storage.gfile.exists(counts_file):
        raise DataflowOutputError(f"{counts_file}: not found beside dataset.json")
    counts = storage.read_json(counts_file)
    problems = check_output(ds.info, counts, int(num_classes), int(folds), float(holdout_fraction))
    if problems:
        raise DataflowOutputError(f"{output_dir}: the preprocessed dataset does not add up ({len(problems)} "
                                  "problems): " + "; ".join(problems[:10]))
    t = counts["total"]
    return {"source": ds.info.get("input_pattern"), "source_fingerprint": data_fingerprint,
            "num_classes": int(num_classes), "folds": int(folds), "holdout_fraction": float(holdout_fraction),
            "standardized_features": "mean_rgb_z" in (ds.info.get("video_features") or {}),
            "records_read": t["read"], "records_written": t["written_total"],
            "records_quarantined": t["quarantined_total"], "written_per_split": t["written"],
            "quarantined_per_reason": t["quarantined"], "runner": counts.get("runner"),
            "counts": t}


def dataflow_job_uri(gcp_resources: str) -> str:
    """The Dataflow job's resource URI from a ``gcp_resources`` JSON (GcpResources proto), "" if none."""
    try:
        resources = json.loads(gcp_resources or "{}").get("resources", [])
    except json.JSONDecodeError:
        return ""
    uris = [r.get("resourceUri", "") for r in resources if r.get("resourceType") == "DataflowJob"]
    return uris[0] if uris else ""


def _now() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


def _abspath(path: str) -> str:
    import os

    return os.path.abspath(path)
