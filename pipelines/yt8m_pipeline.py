"""The yt8m pipeline, as the picture reads:

    importer(raw data + fingerprint) -> preprocess
      -> ParallelFor((config, fold) pairs): train fold        -> collect folds (Collected)
      -> ParallelFor(configs): train final member (+ its OOF) -> ensemble (Collected)
      [-> per distillation round: the students' fold loop -> collect -> final loop -> ensemble of the students,
          every student task taking the previous ensemble's soft labels as its teacher]
      -> gate -> If(publish): publish  (the last ensemble)

Every training task (K folds and the final member of each config) is a task of its own, one
GPU each on Vertex, with retries; both loops are capped at ``vertex.parallelism`` (the GPU
quota) and never overlap, so at most that many GPUs are in use.

Why two flat loops and a collection step rather than ParallelFor(configs) > ParallelFor(folds)
with the final member after the inner loop (checked on kfp 2.17):
- kfp.local cannot run nested loops whose inner body uses the outer loop's item: it substitutes
  the inner item for every ``*-loop-item`` input (orchestrator/task_spec_utils.py), and it
  cannot resolve an inner loop over a field of the outer item (``...-subvar-...`` is mangled).
- the compiler cannot pass a ``dsl.Collected`` list of artifacts into another ParallelFor (it
  treats it as a parameter: TypeError in build_component_spec_for_group).
So the fold loop runs over a flat list of (config, fold) items built by ``pipeline_arguments``,
``collect_folds_op`` turns the Collected fold outputs into ONE artifact, and each final-member
task reads its config's folds from it (``kfold.member_fold_dirs``). The price: the final
members start when every fold is done; with more training tasks than the GPU cap the loops
are quota-bound anyway.

Display names are constants ("train fold", "train final member"): kfp's ``set_display_name``
takes a string at compile time, not a loop item. The config name and fold are in each task's
output artifact metadata (``name``, ``fold``) and the local console's task lines.

Resources, retries and the parallelism cap are properties of the compiled IR, so the pipeline
is built from a run config's ``vertex`` section (``build_pipeline``); ``pipeline_arguments``
maps the rest of the run config to the pipeline's parameters. Both serve ``yt8m run --local``
and ``yt8m submit``.

Distillation rounds (``distillation.rounds``, issue 15) are unrolled at compile time, so the IR is the
picture: round n repeats the fold loop / collect / final loop over ``student_fold_tasks`` and
``student_configs`` (the ``distillation.students``), each train task with the optional ``teacher`` input
= the ``soft_labels`` output of round n-1's ensemble (round 1: the members' ensemble), and ends with an
ensemble of the students that reports them next to that teacher (``teacher_model``) and writes the soft
labels of round n+1; under ``distillation.keep: best`` (the default) a round whose students' ensemble
scores under its teacher (served holdout GAP@20) passes the teacher and its soft labels on instead
(``yt8m.distill_round``). The gate and publish take the last round's ensemble. With ``rounds: 0`` (the
default) the DAG is the members' alone.

Where the preprocessing Beam job runs is chosen the same way, at compile time, by
``vertex.dataflow.runner``: ``local`` (the default, and always under kfp.local) is the one
preprocess task running the job on Beam's local runner; ``dataflow`` replaces it with::

    launch (DataflowFlexTemplateJobOp) -> wait (WaitGcpResourcesOp) -> register dataset (ours)

reading the raw data's gs:// pattern and writing ``<pipeline root>/dataflow/<run id>/dataset``
(``dataflow_root`` and the job name come from ``pipeline_arguments``, unique per run), with the
project, region, machine type, max workers, temp/staging locations, service account and worker
image of the config. The launch task's ``gcp_resources`` links the Dataflow job from the Vertex
UI; see ``yt8m_pipeline/dataflow.py`` for the launch, the register step and why a Flex Template.
The per-run folder is a parameter of those tasks, so a new submission never reuses a cached
Dataflow result (the launch task's cache key cannot see the launcher image, which the template
spec names, nor the job's code in it). On either runner the job also writes the z-scored means
(``mean_rgb_z``, ``mean_audio_z``) when the ``standardized_features`` parameter is true, which
``pipeline_arguments`` sets exactly when a member or student has ``training.video_features: standardized``.
"""

import dataclasses
import datetime
import logging
import secrets

from kfp import dsl

from yt8m import config as config_lib
from yt8m import fingerprint

from yt8m_pipeline.components.collect_folds import collect_folds_op
from yt8m_pipeline.components.ensemble import ensemble_op
from yt8m_pipeline.components.gate import gate_op
from yt8m_pipeline.components.preprocess import preprocess_op
from yt8m_pipeline.components.publish import publish_op
from yt8m_pipeline.components.register_dataset import register_dataset_op
from yt8m_pipeline.components.train import train_final_op, train_op

PIPELINE_NAME = "yt8m-pipeline"
log = logging.getLogger(__name__)


def _limits(task: dsl.PipelineTask, resources) -> dsl.PipelineTask:
    return task.set_cpu_limit(resources.cpu).set_memory_limit(resources.memory)


def _training(task: dsl.PipelineTask, vertex: config_lib.VertexConfig) -> dsl.PipelineTask:
    """GPUs, CPU, memory and retries of a training task (a retried task resumes from its checkpoints)."""
    t, retry = vertex.resources.train, vertex.training_retry
    _limits(task, t)
    if t.accelerator_count:
        task.set_accelerator_type(t.accelerator_type).set_accelerator_limit(t.accelerator_count)
    return task.set_retry(num_retries=retry.num_retries, backoff_duration=retry.backoff_duration,
                          backoff_factor=retry.backoff_factor, backoff_max_duration=retry.backoff_max_duration)


def _preprocess_on_dataflow(v: config_lib.VertexConfig, raw, train_pattern, data_fingerprint, num_classes, folds,
                            holdout_fraction, standardized_features, dataflow_root, dataflow_job_name, gcp_project,
                            gcp_region):
    """launch (Flex Template) -> wait -> register: the Dataset artifact of the job's gs:// output."""
    from google_cloud_pipeline_components.v1.dataflow import DataflowFlexTemplateJobOp
    from google_cloud_pipeline_components.v1.wait_gcp_resources import WaitGcpResourcesOp

    from yt8m_pipeline import dataflow, images

    d = v.dataflow
    output = f"{dataflow_root}/dataset"
    launch = DataflowFlexTemplateJobOp(
        container_spec_gcs_path=d.flex_template, project=d.project or gcp_project, location=d.region or gcp_region,
        job_name=dataflow_job_name,
        parameters=dataflow.flex_parameters(train_pattern, output, num_classes, folds, holdout_fraction,
                                            standardized_features),
        machine_type=d.machine_type, max_workers=d.max_workers,
        temp_location=d.temp_location or f"{dataflow_root}/tmp",
        staging_location=d.staging_location or f"{dataflow_root}/staging",
        service_account_email=d.service_account, sdk_container_image=d.worker_image or images.DATAFLOW_IMAGE,
    ).set_display_name("preprocess on dataflow")
    wait = WaitGcpResourcesOp(gcp_resources=launch.outputs["gcp_resources"]).set_display_name("wait for dataflow")
    register = _limits(register_dataset_op(raw_data=raw, output_dir=output, gcp_resources=wait.outputs["gcp_resources"],
                                           data_fingerprint=data_fingerprint, num_classes=num_classes, folds=folds,
                                           holdout_fraction=holdout_fraction), v.resources.preprocess)
    return register.set_display_name("register dataset").outputs["dataset"]


def _train_loops(v: config_lib.VertexConfig, dataset, fold_tasks, model_configs, oof_top_k, teacher, label: str):
    """fold loop -> collect -> final loop of one set of configs (the members, or a round's students with their
    ``teacher``); the final tasks (their ``model`` outputs are Collected by the ensemble)."""
    suffix = f" ({label})" if label else ""
    extra = {"teacher": teacher} if teacher is not None else {}
    with dsl.ParallelFor(items=fold_tasks, parallelism=v.parallelism,
                         name=f"folds-{label.replace(' ', '-')}" if label else "folds") as item:
        fold = _training(train_op(model_config=item.model_config, fold=item.fold, dataset=dataset,
                                  top_k=oof_top_k, **extra), v).set_display_name("train fold" + suffix)
    collected = _limits(collect_folds_op(fold_outputs=dsl.Collected(fold.outputs["oof_predictions"])),
                        v.resources.collect).set_display_name("collect folds" + suffix)
    with dsl.ParallelFor(items=model_configs, parallelism=v.parallelism,
                         name=f"members-{label.replace(' ', '-')}" if label else "members") as model_config:
        member = _training(train_final_op(model_config=model_config, dataset=dataset,
                                          collected_folds=collected.outputs["collected_folds"],
                                          top_k=oof_top_k, **extra), v).set_display_name("train final member" + suffix)
    return member


def build_pipeline(vertex: config_lib.VertexConfig | None = None, distillation_rounds: int = 0):
    """The pipeline function with ``vertex``'s resources, retries and parallelism cap and the distillation
    rounds (see the module doc) compiled in."""
    v = vertex or config_lib.VertexConfig()
    r = v.resources

    @dsl.pipeline(name=PIPELINE_NAME, description="YouTube-8M: preprocess, train per config and fold, ensemble, "
                                                  "quantize into one graph, gate, publish")
    def yt8m_pipeline(train_pattern: str, data_fingerprint: str, data_summary: str, model_configs: list,
                      fold_tasks: list, run_config: dict, publish_root: str, gate_config: dict, test_pattern: str = "",
                      num_classes: int = 3862, folds: int = 5, holdout_fraction: float = 0.1,
                      quantize_min_elements: int = 17000, combiner: str = "average", compression: str = "uint8",
                      size_budget_bytes: int = 1 << 30, oof_top_k: int = 20, beam_runner: str = "local", register_model: bool = False,
                      gcp_project: str = "", gcp_region: str = "", dataflow_root: str = "",
                      dataflow_job_name: str = "", student_configs: list = [], student_fold_tasks: list = [],
                      soft_labels: str = "", soft_label_top_k: int = 20, stacking: dict = {},
                      standardized_features: bool = False, distillation_keep: str = "best"):
        raw = dsl.importer(artifact_uri=train_pattern, artifact_class=dsl.Dataset, reimport=False,
                           metadata={"pattern": train_pattern, "fingerprint": data_fingerprint,
                                     "summary": data_summary}).set_display_name("raw data")
        if v.dataflow.runner == "dataflow":
            dataset = _preprocess_on_dataflow(v, raw.output, train_pattern, data_fingerprint, num_classes, folds,
                                              holdout_fraction, standardized_features, dataflow_root,
                                              dataflow_job_name, gcp_project, gcp_region)
        else:
            data = _limits(preprocess_op(raw_data=raw.output, data_fingerprint=data_fingerprint,
                                         num_classes=num_classes, folds=folds, holdout_fraction=holdout_fraction,
                                         runner=beam_runner, standardized_features=standardized_features),
                           r.preprocess).set_display_name("preprocess")
            dataset = data.outputs["dataset"]
        member = _train_loops(v, dataset, fold_tasks, model_configs, oof_top_k, None, "")
        merged = _limits(ensemble_op(members=dsl.Collected(member.outputs["model"]), dataset=dataset,
                                     quantize_min_elements=quantize_min_elements, combiner=combiner,
                                     compression=compression, size_budget_bytes=size_budget_bytes,
                                     soft_label_kind=soft_labels, soft_label_top_k=soft_label_top_k,
                                     stacking=stacking), r.ensemble)
        merged.set_display_name("ensemble")
        for n in range(1, distillation_rounds + 1):  # unrolled at compile time: see the module doc
            student = _train_loops(v, dataset, student_fold_tasks, student_configs, oof_top_k,
                                   merged.outputs["soft_labels"], f"student round {n}")
            merged = _limits(ensemble_op(members=dsl.Collected(student.outputs["model"]), dataset=dataset,
                                         quantize_min_elements=quantize_min_elements, combiner=combiner,
                                         compression=compression, size_budget_bytes=size_budget_bytes,
                                         soft_label_kind=soft_labels, soft_label_top_k=soft_label_top_k,
                                         stacking=stacking, teacher_model=merged.outputs["merged_model"],
                                         teacher_soft_labels=merged.outputs["soft_labels"], distillation_round=n,
                                         distillation_keep=distillation_keep), r.ensemble)
            merged.set_display_name(f"ensemble of students (round {n})")
        gate = _limits(gate_op(merged_model=merged.outputs["merged_model"], dataset=dataset, gate_config=gate_config,
                               publish_root=publish_root), r.gate).set_display_name("gate")
        with dsl.If(gate.outputs["Output"] == "publish", name="gate-passed"):
            published = publish_op(merged_model=merged.outputs["merged_model"], dataset=dataset,
                                   gate_metrics=gate.outputs["metrics"], publish_root=publish_root,
                                   test_pattern=test_pattern, run_config=run_config, register_model=register_model,
                                   gcp_project=gcp_project, gcp_region=gcp_region)
            _limits(published, r.publish).set_display_name("publish").set_caching_options(False)  # never cached

    return yt8m_pipeline


def yt8m_pipeline(**arguments):
    """Run the pipeline (under kfp.local) built from the ``vertex`` section of ``arguments["run_config"]``.

    kfp.local runs the Beam job on the local runner whatever ``vertex.dataflow.runner`` says (as it
    ignores the resources): the Dataflow tasks are container components that only Vertex runs.
    """
    vertex = config_lib.vertex_config_from_dict(arguments["run_config"].get("vertex"), "run_config.vertex")
    if vertex.dataflow.runner != "local":
        log.info("vertex.dataflow.runner=%s applies to Vertex runs; this local run uses Beam's local runner",
                 vertex.dataflow.runner)
        vertex = dataclasses.replace(vertex, dataflow=dataclasses.replace(vertex.dataflow, runner="local"))
    rounds = int((arguments["run_config"].get("distillation") or {}).get("rounds", 0))
    return build_pipeline(vertex, rounds)(**arguments)


def pipeline_arguments(cfg: config_lib.RunConfig, train_pattern: str, test_pattern: str, publish_root: str,
                       num_classes: int, beam_runner: str = "local", *,
                       data_fingerprint: fingerprint.Fingerprint | None = None, gcp_project: str = "",
                       gcp_region: str = "", pipeline_root: str = "") -> dict:
    """The pipeline's parameters from a run config (the same for kfp.local and Vertex).

    ``data_fingerprint`` defaults to fingerprinting ``train_pattern``'s files now (a listing, no
    reads). With a ``gcp_project`` (a run submitted to Vertex) the publish task also registers the
    model when ``vertex.model_registry.register`` says so; local runs never do. With
    ``vertex.dataflow.runner: dataflow`` and a ``pipeline_root`` (a submitted run), the Dataflow
    job gets a folder and a name of its own: ``<pipeline_root>/dataflow/<run id>`` and
    ``yt8m-preprocess-<run id>`` (run id: UTC time + random hex). ``standardized_features`` asks the
    preprocessing job for the z-scored means when a member or student trains on them
    (``config.needs_standardized_features``).
    """
    data_fingerprint = data_fingerprint or fingerprint.fingerprint_files(train_pattern, "training data")
    model_configs = [config_lib.to_dict(m) for m in cfg.models]
    d = cfg.distillation
    student_configs = [config_lib.to_dict(m) for m in d.students] if d.rounds else []
    dataflow_root = dataflow_job_name = ""
    if cfg.vertex.dataflow.runner == "dataflow" and pipeline_root:
        run_id = f"{datetime.datetime.now(datetime.timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        dataflow_root = f"{pipeline_root.rstrip('/')}/dataflow/{run_id}"
        dataflow_job_name = f"yt8m-preprocess-{run_id}"
    return {
        "train_pattern": train_pattern,
        "data_fingerprint": data_fingerprint.digest,
        "data_summary": data_fingerprint.summary,
        "test_pattern": test_pattern,
        "model_configs": model_configs,
        "fold_tasks": [{"model_config": m, "fold": k} for m in model_configs for k in range(cfg.data.folds)],
        "run_config": config_lib.to_dict(cfg),
        "publish_root": publish_root,
        "num_classes": num_classes,
        "folds": cfg.data.folds,
        "holdout_fraction": cfg.data.holdout_fraction,
        "quantize_min_elements": cfg.ensemble.quantize_min_elements,
        "combiner": cfg.ensemble.combiner,
        "compression": cfg.ensemble.compression,
        "size_budget_bytes": cfg.ensemble.size_budget_bytes,
        "oof_top_k": cfg.ensemble.top_k_predictions,
        "stacking": config_lib.to_dict(cfg.ensemble.stacking),
        "gate_config": config_lib.to_dict(cfg.gate),
        "beam_runner": beam_runner,
        "register_model": bool(gcp_project) and cfg.vertex.model_registry.register,
        "gcp_project": gcp_project,
        "gcp_region": gcp_region,
        "dataflow_root": dataflow_root,
        "dataflow_job_name": dataflow_job_name,
        "student_configs": student_configs,
        "student_fold_tasks": [{"model_config": m, "fold": k} for m in student_configs for k in range(cfg.data.folds)],
        "soft_labels": d.soft_labels if d.rounds else "",
        "soft_label_top_k": d.top_k,
        "distillation_keep": d.keep,
        "standardized_features": config_lib.needs_standardized_features(cfg),
    }


def compile_pipeline(package_path: str, cfg: config_lib.RunConfig | None = None) -> str:
    """kfp IR YAML of the pipeline built from ``cfg``'s ``vertex`` section (the defaults without a config)."""
    from kfp import compiler

    compiler.Compiler().compile(build_pipeline(cfg.vertex if cfg else None, cfg.distillation.rounds if cfg else 0),
                                package_path=package_path)
    return package_path
