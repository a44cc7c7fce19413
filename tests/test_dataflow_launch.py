"""Preprocessing on Dataflow from the pipeline: the Flex Template's launch (parsed and built offline),
finalize after the job (the same dataset.json / counts.json as run_preprocess, on a real local Beam
run), the register step's checks and artifact, the template files."""

import json
import os
import re
import shutil

import pytest
from kfp import dsl

from yt8m import synth
from yt8m_pipeline import dataflow
from yt8m_pipeline.beam_jobs import preprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES, FOLDS, HOLDOUT = 10, 2, 0.2
FINGERPRINT = "sha256:test-fingerprint"
IMAGE = "europe-docker.pkg.dev/acme-ml/yt8m/yt8m-dataflow@sha256:" + "a" * 64

# What the Flex Template launcher passes: the template parameters, then Dataflow's pipeline options.
LAUNCHER_ARGV = ["--input=gs://acme-data/yt8m/frame/train*.tfrecord", "--output=gs://acme-ml/root/dataflow/r1/dataset",
                 "--num_classes=3862.0", "--folds=5", "--holdout=0.1", "--runner=DataflowRunner",
                 "--project=acme-ml", "--region=europe-west4", "--temp_location=gs://acme-ml/root/dataflow/r1/tmp",
                 "--staging_location=gs://acme-ml/root/dataflow/r1/staging", f"--sdk_container_image={IMAGE}",
                 "--service_account_email=yt8m-dataflow@acme-ml.iam.gserviceaccount.com",
                 "--machine_type=n2-highmem-8", "--max_num_workers=50", "--job_name=yt8m-preprocess-r1",
                 "--template_location=gs://acme-ml/root/dataflow/r1/staging/template_launches/1/job_object"]


# ----------------------------------------------------------------------------------------- launch (offline)

def test_the_launchers_arguments_become_the_template_parameters_and_the_dataflow_options():
    from apache_beam.options.pipeline_options import (DebugOptions, GoogleCloudOptions, SetupOptions,
                                                      StandardOptions, WorkerOptions)

    args, options = dataflow.parse_launch_args(LAUNCHER_ARGV)
    assert (args.input, args.output) == ("gs://acme-data/yt8m/frame/train*.tfrecord",
                                         "gs://acme-ml/root/dataflow/r1/dataset")
    assert (args.num_classes, args.folds, args.holdout) == (3862, 5, 0.1)  # "3862.0": a protobuf number
    assert args.standardized is False  # not passed: the plain means only, as before
    gco, workers = options.view_as(GoogleCloudOptions), options.view_as(WorkerOptions)
    assert options.view_as(StandardOptions).runner == "DataflowRunner"
    assert (gco.project, gco.region, gco.job_name) == ("acme-ml", "europe-west4", "yt8m-preprocess-r1")
    assert gco.temp_location.endswith("/r1/tmp") and gco.staging_location.endswith("/r1/staging")
    assert gco.template_location.endswith("/job_object")  # the run writes the job graph; Dataflow creates the job
    assert gco.service_account_email == "yt8m-dataflow@acme-ml.iam.gserviceaccount.com"
    assert (workers.sdk_container_image, workers.machine_type, workers.max_num_workers) == \
        (IMAGE, "n2-highmem-8", 50)
    assert "use_runner_v2" in options.view_as(DebugOptions).experiments  # custom containers need runner v2
    assert not options.view_as(SetupOptions).setup_file  # the image holds the project


@pytest.mark.parametrize("change, message", [
    (("--output=gs://acme-ml/root/dataflow/r1/dataset", "--output=/gcs/acme-ml/root/dataset"),
     "--output must be a gs:// path"),
    (("--input=gs://acme-data/yt8m/frame/train*.tfrecord", "--input=/data/train*.tfrecord"),
     "--input must be a gs:// path"),
    ((f"--sdk_container_image={IMAGE}", "--experiments=x"), "no --sdk_container_image"),
    (("--region=europe-west4", "--labels=a=b"), "region is required"),
])
def test_launch_refuses_local_paths_a_missing_worker_image_or_region(change, message):
    argv = [change[1] if a == change[0] else a for a in LAUNCHER_ARGV]
    with pytest.raises(ValueError, match=re.escape(message)):
        dataflow.parse_launch_args(argv)


@pytest.mark.parametrize("value, expected", [("true", True), ("True", True), ("false", False), ("False", False)])
def test_the_standardized_parameter_arrives_as_the_text_of_a_boolean_pipeline_parameter(value, expected):
    args, _ = dataflow.parse_launch_args([*LAUNCHER_ARGV[:5], f"--standardized={value}", *LAUNCHER_ARGV[5:]])
    assert args.standardized is expected
    with pytest.raises(SystemExit):
        dataflow.parse_launch_args([*LAUNCHER_ARGV[:5], "--standardized=yes", *LAUNCHER_ARGV[5:]])


def test_launch_main_hands_the_standardized_parameter_to_the_jobs_graph(monkeypatch):
    seen = {}

    def attach(pipeline, *args, **kwargs):
        seen.update(kwargs)
        raise ValueError("stop before pipeline.run()")

    monkeypatch.setattr(dataflow, "attach_job", attach)
    # A real Pipeline with Dataflow options looks up GCP credentials (network timeouts here: ~200 s a call);
    # the hand-off to attach_job is what this test checks.
    import apache_beam

    monkeypatch.setattr(apache_beam, "Pipeline", lambda options: object())
    assert dataflow.launch_main([*LAUNCHER_ARGV, "--standardized=true"]) == 2
    assert seen["standardized_features"] is True and seen["job"]["name"] == "yt8m-preprocess-r1"
    assert dataflow.launch_main(LAUNCHER_ARGV) == 2 and seen["standardized_features"] is False


def test_launch_main_reports_bad_arguments_in_one_line(capsys):
    assert dataflow.launch_main([a for a in LAUNCHER_ARGV if not a.startswith("--sdk_container_image")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("flex_template_main: error: no --sdk_container_image") and err.count("\n") == 1
    with pytest.raises(SystemExit) as exit_:
        dataflow.launch_main(["--input=gs://acme-data/x", "--num_classes=ten"])
    assert exit_.value.code == 2 and "num_classes" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- template files

def test_metadata_declares_exactly_the_parameters_the_launch_reads_and_the_pipeline_passes():
    metadata = json.load(open(os.path.join(ROOT, dataflow.METADATA_FILE)))
    names = [p["name"] for p in metadata["parameters"]]
    assert names == list(dataflow.FLEX_PARAMETERS)
    assert list(dataflow.flex_parameters("i", "o", 1, 2, 0.3)) == names
    assert dataflow.flex_parameters("i", "o", 1, 2, 0.3)["standardized"] is False
    assert dataflow.flex_parameters("i", "o", 1, 2, 0.3, True)["standardized"] is True
    values = {"input": "gs://acme-data/yt8m/train*.tfrecord,gs://acme-data/more*.tfrecord",
              "output": "gs://acme-ml/root/dataflow/r1/dataset", "num_classes": "3862.0", "folds": "5",
              "holdout": "0.1", "standardized": "true"}
    for p in metadata["parameters"]:
        assert {"label", "helpText"} <= set(p) and all(re.match(r, values[p["name"]]) for r in p["regexes"]), p
    assert [p["name"] for p in metadata["parameters"] if p.get("isOptional")] == ["standardized"]
    argv = [f"--{k}={v}" for k, v in values.items()] + LAUNCHER_ARGV[5:]
    args, _ = dataflow.parse_launch_args(argv)
    assert args.input == values["input"] and args.standardized is True


def test_the_dataflow_image_runs_the_template_main_and_keeps_beams_boot():
    dockerfile = open(os.path.join(ROOT, "docker", "dataflow", "Dockerfile"), encoding="utf-8").read()
    py_file = re.search(r"^ENV FLEX_TEMPLATE_PYTHON_PY_FILE=(\S+)$", dockerfile, re.M).group(1)
    assert re.search(rf"^COPY docker/dataflow/flex_template_main\.py {re.escape(py_file)}$", dockerfile, re.M)
    launcher = re.search(r"COPY --from=(gcr\.io/dataflow-templates-base/python311-template-launcher-base:(\S+))",
                         dockerfile)
    assert launcher and launcher.group(2) != "latest"  # pinned (the tag itself could not be checked from here)
    assert "could NOT be verified" in dockerfile
    assert dockerfile.rstrip().endswith('ENTRYPOINT ["/opt/apache/beam/boot"]')
    main = open(os.path.join(ROOT, "docker", "dataflow", "flex_template_main.py"), encoding="utf-8").read()
    assert "from yt8m_pipeline.dataflow import launch_main" in main and "sys.exit(launch_main())" in main


def test_flex_template_build_command_names_the_spec_the_image_and_the_metadata():
    command = dataflow.flex_template_build_command("gs://acme-ml/templates/preprocess.json", IMAGE)
    assert command == (f"gcloud dataflow flex-template build gs://acme-ml/templates/preprocess.json --image {IMAGE} "
                       "--sdk-language PYTHON --metadata-file docker/dataflow/flex_template_metadata.json")
    assert "yt8m-dataflow" in dataflow.flex_template_build_command("gs://acme-ml/t/preprocess.json")
    with pytest.raises(ValueError, match="gs://"):
        dataflow.flex_template_build_command("/tmp/preprocess.json", IMAGE)


def test_the_dataflow_job_uri_comes_from_gcp_resources():
    job = "https://dataflow.googleapis.com/v1b3/projects/acme-ml/locations/europe-west4/jobs/2026-01-01_1"
    payload = json.dumps({"resources": [{"resourceType": "DataflowJob", "resourceUri": job}]})
    assert dataflow.dataflow_job_uri(payload) == job
    assert dataflow.dataflow_job_uri("") == dataflow.dataflow_job_uri("not json") == ""


# ----------------------------------------------------------------------------------------- real local Beam runs

@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """A few synthetic videos, preprocessed twice on Beam's local runner: by run_preprocess (the job's own
    end-to-end run) and by the Flex Template's graph (attach_job) without the post-run half."""
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    import apache_beam as beam

    root = tmp_path_factory.mktemp("dataflow")
    synth.generate(str(root / "data"), videos=24, classes=NUM_CLASSES, seed=3, progress=False)
    pattern = str(root / "data" / "train" / "*.tfrecord")
    reference = str(root / "run_preprocess")
    preprocess.run_preprocess(pattern, reference, NUM_CLASSES, FOLDS, HOLDOUT, runner="local", num_shards=0,
                              source_fingerprint_value=FINGERPRINT)
    launched = str(root / "launched")
    options = preprocess.build_pipeline_options("local", launched)
    with beam.Pipeline(runner=FnApiRunner(), options=options) as pipeline:
        record = dataflow.attach_job(pipeline, pattern, launched, NUM_CLASSES, FOLDS, HOLDOUT,
                                     job={"name": "yt8m-preprocess-test"})
    return {"pattern": pattern, "reference": reference, "launched": launched, "record": record, "root": root}


def _copy(src: str, dst) -> str:
    shutil.copytree(src, dst)
    return str(dst)


def _json(folder: str, name: str) -> dict:
    return json.load(open(os.path.join(folder, name)))


def test_a_launched_job_leaves_counts_and_a_launch_record_but_no_dataset_yet(outputs):
    names = set(os.listdir(outputs["launched"]))
    assert {"launch.json", "_counts", "frame", "video", "transform_fn"} <= names
    assert not names & {"dataset.json", "counts.json"}  # the launcher cannot wait: finalize writes them
    record = _json(outputs["launched"], "launch.json")
    assert record == outputs["record"] and record["job"] == {"name": "yt8m-preprocess-test"}
    assert record["input_files"] and set(record["input_sizes"]) == set(record["input_files"])


def test_attach_job_records_the_standardized_flag_and_passes_it_to_the_jobs_graph(outputs, tmp_path, monkeypatch):
    built = []
    monkeypatch.setattr(preprocess, "build_pipeline", lambda *args, **kwargs: built.append(kwargs))
    record = dataflow.attach_job(None, outputs["pattern"], str(tmp_path / "z"), NUM_CLASSES, FOLDS, HOLDOUT,
                                 standardized_features=True)
    assert record["standardized_features"] is True and _json(str(tmp_path / "z"), "launch.json") == record
    assert built[-1]["standardized_features"] is True
    assert outputs["record"]["standardized_features"] is False  # the default: the plain means only
    dataflow.attach_job(None, outputs["pattern"], str(tmp_path / "plain"), NUM_CLASSES, FOLDS, HOLDOUT)
    assert built[-1]["standardized_features"] is False


def test_finalize_lists_the_standardized_features_a_launch_asked_for(outputs, tmp_path):
    folder = _copy(outputs["launched"], tmp_path / "z")
    record = _json(folder, "launch.json")
    with open(os.path.join(folder, "launch.json"), "w") as f:
        json.dump({**record, "standardized_features": True}, f)
    metadata = dataflow.register_dataset(folder, NUM_CLASSES, FOLDS, HOLDOUT, FINGERPRINT)
    features = _json(folder, "dataset.json")["video_features"]
    assert {"mean_rgb_z", "mean_audio_z"} <= set(features) and metadata["standardized_features"] is True
    plain = dataflow.register_dataset(_copy(outputs["launched"], tmp_path / "plain"), NUM_CLASSES, FOLDS, HOLDOUT)
    assert plain["standardized_features"] is False


def test_finalize_writes_what_run_preprocess_writes(outputs, tmp_path):
    finalized = _copy(outputs["launched"], tmp_path / "finalized")
    counts = dataflow.finalize(finalized, FINGERPRINT)
    reference = outputs["reference"]
    assert sorted(os.listdir(finalized)) == sorted(os.listdir(reference) + ["launch.json"])  # temp folders removed
    ref_dataset, dataset = _json(reference, "dataset.json"), _json(finalized, "dataset.json")
    for d in (ref_dataset, dataset):
        d.pop("created")
    assert dataset == ref_dataset
    per_run = ("elapsed_seconds", "records_per_second", "mb_per_second", "counters", "runner")
    ref_counts = {k: v for k, v in _json(reference, "counts.json").items() if k not in per_run}
    assert {k: v for k, v in counts.items() if k not in per_run} == ref_counts
    assert _json(finalized, "counts.json")["runner"] == "dataflow" and counts["reconciled"]
    assert "<html" in open(os.path.join(finalized, "report.html")).read()


def test_register_finalizes_a_launched_job_then_reads_it_like_a_finished_run(outputs, tmp_path):
    finalized = _copy(outputs["launched"], tmp_path / "launched")
    registered = dataflow.register_dataset(finalized, NUM_CLASSES, FOLDS, HOLDOUT, FINGERPRINT)
    assert os.path.exists(os.path.join(finalized, "dataset.json"))
    from_run = dataflow.register_dataset(outputs["reference"], NUM_CLASSES, FOLDS, HOLDOUT, FINGERPRINT)
    assert {k: v for k, v in registered.items() if k != "runner"} == \
        {k: v for k, v in from_run.items() if k != "runner"}
    assert (registered["runner"], from_run["runner"]) == ("dataflow", "local")


def test_register_sets_the_metadata_the_local_preprocess_task_sets(outputs):
    counts = _json(outputs["reference"], "counts.json")["total"]
    metadata = dataflow.register_dataset(outputs["reference"], NUM_CLASSES, FOLDS, HOLDOUT, FINGERPRINT)
    local_keys = {"source", "source_fingerprint", "num_classes", "folds", "holdout_fraction", "standardized_features",
                  "records_read", "records_written", "records_quarantined", "written_per_split",
                  "quarantined_per_reason"}
    assert local_keys <= set(metadata)  # components/preprocess.py sets exactly these
    assert metadata["source"] == outputs["pattern"] and metadata["source_fingerprint"] == FINGERPRINT
    assert (metadata["records_read"], metadata["records_written"], metadata["records_quarantined"]) == \
        (counts["read"], counts["written_total"], counts["quarantined_total"])
    assert metadata["records_read"] > 0 and metadata["written_per_split"] == counts["written"]


@pytest.mark.parametrize("edit, message", [
    (lambda c, d: c["total"].update(read=c["total"]["read"] + 1), "read"),
    (lambda c, d: c.update(reconciled=False, problems=["total: read 5 != written 4 + quarantined 0"]),
     "counts.json is not reconciled: total: read 5"),
    (lambda c, d: c["total"]["written"].update({"fold-0": c["total"]["written"]["fold-0"] + 1}), "written per split"),
    (lambda c, d: d["counts"].update(written_total=0), "dataset.json counts.written_total = 0"),
    (lambda c, d: d["splits"]["holdout"].update(num_videos=999), "split holdout: dataset.json lists 999 videos"),
    (lambda c, d: d.update(num_classes=3862), "dataset.json num_classes = 3862, the pipeline asked for 10"),
])
def test_register_refuses_counts_that_do_not_reconcile(outputs, tmp_path, edit, message):
    folder = _copy(outputs["reference"], tmp_path / "out")
    counts, dataset = _json(folder, "counts.json"), _json(folder, "dataset.json")
    edit(counts, dataset)
    for name, content in (("counts.json", counts), ("dataset.json", dataset)):
        with open(os.path.join(folder, name), "w") as f:
            json.dump(content, f)
    with pytest.raises(dataflow.DataflowOutputError) as err:
        dataflow.register_dataset(folder, NUM_CLASSES, FOLDS, HOLDOUT, FINGERPRINT)
    assert message in str(err.value) and "does not add up" in str(err.value)


def test_finalize_refuses_a_job_without_counts_and_the_launch_an_existing_dataset(outputs, tmp_path):
    folder = _copy(outputs["launched"], tmp_path / "unfinished")
    shutil.rmtree(os.path.join(folder, "_counts"))
    with pytest.raises(dataflow.DataflowOutputError, match="no counts from the job: did the Dataflow job finish"):
        dataflow.register_dataset(folder, NUM_CLASSES, FOLDS, HOLDOUT)
    with pytest.raises(dataflow.DataflowOutputError, match="no launch record"):
        dataflow.register_dataset(str(tmp_path), NUM_CLASSES, FOLDS, HOLDOUT)
    with pytest.raises(ValueError, match="already holds a dataset"):
        dataflow.attach_job(None, outputs["pattern"], outputs["reference"], NUM_CLASSES, FOLDS, HOLDOUT)


def test_register_component_makes_the_gs_folder_the_dataset_artifact(outputs, tmp_path):
    from yt8m_pipeline.components.register_dataset import register_dataset_op

    job = "https://dataflow.googleapis.com/v1b3/projects/acme-ml/locations/europe-west4/jobs/2026-01-01_1"
    gcp_resources = json.dumps({"resources": [{"resourceType": "DataflowJob", "resourceUri": job}]})
    raw = dsl.Dataset(uri=outputs["pattern"], metadata={"fingerprint": FINGERPRINT})
    dataset, counts = dsl.Dataset(uri=str(tmp_path / "managed")), dsl.Metrics(uri=str(tmp_path / "counts"))
    report = dsl.HTML(uri=str(tmp_path / "report.html"))
    register_dataset_op.python_func(raw_data=raw, output_dir=outputs["reference"], gcp_resources=gcp_resources,
                                    data_fingerprint=FINGERPRINT, num_classes=NUM_CLASSES, folds=FOLDS,
                                    holdout_fraction=HOLDOUT, dataset=dataset, counts=counts, report=report)
    assert dataset.uri == outputs["reference"]  # the job's folder, not a copy
    assert dataset.metadata["dataflow_job"] == job and dataset.metadata["raw_data"] == outputs["pattern"]
    totals = _json(outputs["reference"], "counts.json")["total"]
    assert {k: counts.metadata[k] for k in ("records_read", "records_written_total", "records_quarantined_total")} \
        == {"records_read": totals["read"], "records_written_total": totals["written_total"],
            "records_quarantined_total": totals["quarantined_total"]}
    assert all(f"written_{split}" in counts.metadata for split in totals["written"])
    assert "<svg" in open(report.path).read()  # the job's report.html, as an HTML artifact
