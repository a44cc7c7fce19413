"""The ``yt8m`` command line: synth, run, predict, evaluate, train, models, compile.

Every verb has ``--help`` and exits non-zero with a one-line reason on bad input.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import logging
import os
import sys
import time

log = logging.getLogger("yt8m")


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def cmd_synth(args) -> int:
    from yt8m import synth

    if args.classes < 2:
        raise UsageError(f"--classes must be >= 2, got {args.classes}")
    info = synth.generate(args.out, videos=args.videos, classes=args.classes, seed=args.seed)
    print(json.dumps({k: info[k] for k in info if k in ("videos", "classes", "seed", "counts", "splits")},
                     default=str))
    print(args.out)
    return 0


def _summary_gaps(result, clean_labels_path: str | None, num_classes: int) -> dict:
    """Oracle (ceiling) and class-prior (floor) GAP on the holdout next to the model's."""
    import numpy as np

    from yt8m import dataset, metrics, readers, storage, synth

    ds = dataset.Dataset.open(result.dataset_dir)
    holdout = readers.read_id_labels(ds.files("video", [ds.holdout]))
    train = readers.read_id_labels(ds.files("video", ds.fold_names))
    ids = list(holdout)
    labels = metrics.dense_labels([holdout[v] for v in ids], num_classes)
    prior = metrics.dense_labels(list(train.values()), num_classes).mean(axis=0)
    out = {"class_prior_gap": metrics.gap_at_k(np.tile(prior, (len(ids), 1)), labels)}
    if clean_labels_path and storage.gfile.exists(clean_labels_path):
        clean = synth.read_clean_labels(clean_labels_path)
        out["oracle_gap"] = metrics.gap_at_k(synth.oracle_scores(ids, clean, prior), labels)
    return out


def _log_to_file(path: str, verbose: bool) -> None:
    """The run's own log lines go to a file; the console keeps warnings (everything with --verbose)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO if not verbose else logging.DEBUG)
    if not verbose:
        for h in root.handlers:
            if h is not handler:
                h.setLevel(logging.WARNING)


def cmd_run(args) -> int:
    from yt8m import config as config_lib
    from yt8m import schema, storage
    from yt8m_pipeline import local_run

    if not args.local:
        raise UsageError("only --local runs here; submit to Vertex AI Pipelines with `yt8m submit`")
    _recipe_config(args, local=True)
    cfg = config_lib.load_run_config(args.config or local_run.default_config_path())
    # Every path is checked before anything runs: a bad one is a one-line error, not a failure after the pipeline.
    if args.workdir and storage.is_url(args.workdir):
        raise UsageError(f"--workdir {args.workdir}: a local run needs a local directory (kfp.local writes its "
                         "pipeline root there); gs:// roots are for `yt8m submit`")
    run_id = local_run.new_run_id()
    workdir = os.path.abspath(args.workdir or os.path.join("runs", run_id))
    clean_labels = None
    if args.data:
        storage.check_readable(args.data, "--data")
        if args.test_data:
            storage.check_readable(args.test_data, "--test-data")
        train_pattern, test_pattern = args.data, args.test_data or ""
        # the packaged local config is sized for synthetic data: real YT8M data has 3,862 classes
        num_classes = args.num_classes or (cfg.data.num_classes if args.config else schema.NUM_CLASSES)
    elif args.test_data:
        raise UsageError("--test-data needs --data (without --data the run generates its own test split)")
    publish_root = storage.absolute(args.publish_root or os.path.join(workdir, "published"))
    if args.publish_root:
        storage.check_writable(publish_root, "--publish-root")
    console = local_run.Console(verbose=args.verbose)
    if not args.verbose:
        import warnings

        warnings.filterwarnings("ignore", module=r"kfp\.")  # "display_name has no effect locally", base image notes
    with local_run.workdir_lock(workdir):
        logs_dir = os.path.join(workdir, "logs", run_id)
        os.makedirs(logs_dir, exist_ok=True)
        _log_to_file(os.path.join(logs_dir, "yt8m-run.log"), args.verbose)
        console.say(f"run {run_id} in {workdir}")
        if not args.data:
            from yt8m import synth

            data_dir = os.path.join(workdir, "data")
            console.say(f"generating {cfg.synth.videos:,} synthetic videos ({cfg.synth.classes} classes) "
                        f"into {data_dir}")
            synth.generate(data_dir, videos=cfg.synth.videos, classes=cfg.synth.classes, seed=cfg.synth.seed,
                           progress=False)
            train_pattern = os.path.join(data_dir, "train", "*.tfrecord")
            test_pattern = os.path.join(data_dir, "test", "*.tfrecord")
            num_classes = cfg.synth.classes
            clean_labels = os.path.join(data_dir, "oracle", "train_clean_labels.csv")
        from yt8m_pipeline.pipelines import yt8m_pipeline as pipeline_def

        arguments = pipeline_def.pipeline_arguments(cfg, train_pattern, test_pattern, publish_root, num_classes)
        started = time.time()
        console.say(f"pipeline: preprocess, train {len(cfg.models)} config(s) x {cfg.data.folds} folds + final, "
                    "ensemble, gate, publish")
        result = local_run.run_local(arguments, workdir, console=console, run_id=run_id)
        gaps = _summary_gaps(result, clean_labels, num_classes)
    console.say(f"pipeline finished in {time.time() - started:.0f} s; task logs in {result.logs_dir}")
    console.say(result.gate_report.rstrip())
    if result.published_dir is None:
        print(f"NOT published: the gate refused the model of run {result.run_id} (see {result.run_dir})",
              file=sys.stderr)
        return 1
    manifest = storage.read_json(storage.join(result.published_dir, "manifest.json"))
    gap = manifest["gate"]["gap"]
    bounds = [f"class-prior baseline {gaps['class_prior_gap']:.4f}"]
    if "oracle_gap" in gaps:
        bounds.insert(0, f"oracle ceiling {gaps['oracle_gap']:.4f}")
    console.say(f"PUBLISHED {manifest['version']}: holdout GAP@20 {gap:.4f} ({', '.join(bounds)}); "
                f"model size {manifest['model_bytes'] / 1e6:.1f} MB")
    print(result.published_dir)
    return 0


def _saved_model_dir(path: str) -> str:
    from yt8m import storage

    if storage.gfile.exists(storage.join(path, "saved_model.pb")):
        return path
    if storage.gfile.exists(storage.join(path, "saved_model", "saved_model.pb")):
        return storage.join(path, "saved_model")
    raise UsageError(f"--model {path}: no SavedModel there (expected saved_model.pb or saved_model/)")


def cmd_predict(args) -> int:
    import tensorflow as tf

    from yt8m import predictions, record_check, scoring, storage

    model_dir = _saved_model_dir(args.model)
    files = storage.check_readable(args.data, "--data")
    if args.on_bad_record == "skip":
        skipped = record_check.Skipped()
        ids, scores, _ = scoring.score_records(model_dir, record_check.good_records(files, skipped),
                                               batch_size=args.batch_size, what=f"{len(files)} files")
    else:
        record_check.check_not_empty(files, "--data")
        try:
            ids, scores, _ = scoring.score_files(model_dir, files, batch_size=args.batch_size)
        except tf.errors.OpError as exc:
            raise record_check.explain(exc, files, what="--data") from None
        if len(set(ids)) != len(ids):
            seen = set()
            duplicate = next(v for v in ids if v in seen or seen.add(v))
            raise UsageError(f"--data: bad YT8M data: duplicate_video_id: video {duplicate!r} appears more than "
                             "once (a submission lists each video once; --on-bad-record skip keeps the first)")
    predictions.write_kaggle_csv(args.out, ids, scores, k=args.top_k)
    print(f"wrote {len(ids)} predictions to {args.out}")
    if args.on_bad_record == "skip" and skipped.problems:
        listing = args.out + ".skipped.csv"
        skipped.write_csv(listing)
        reasons = {}
        for problem in skipped.problems:
            reasons[problem.reason] = reasons.get(problem.reason, 0) + 1
        print(f"skipped {len(skipped.problems)} bad records or unreadable ranges "
              f"({', '.join(f'{r} {n}' for r, n in sorted(reasons.items()))}); listed in {listing}")
    return 0


def cmd_evaluate(args) -> int:
    from yt8m import metrics, predictions, readers

    import tensorflow as tf

    from yt8m import record_check, storage

    ids, label_ids, scores = predictions.read_kaggle_csv(args.predictions)
    files = storage.check_readable(args.data, "--data")
    record_check.check_not_empty(files, "--data")
    try:
        truth = readers.read_id_labels(files)
    except tf.errors.OpError as exc:
        raise record_check.explain(exc, files, args.num_classes, level="video", what="--data") from None
    unknown = [v for v in ids if v not in truth]
    if unknown:
        raise UsageError(f"{len(unknown)} predicted video ids are not in --data (e.g. {unknown[0]!r})")
    bad = [int(l) for ls in label_ids for l in ls if not 0 <= l < args.num_classes]
    if bad:
        raise UsageError(f"predicted label {bad[0]} is outside [0, {args.num_classes}); set --num-classes")
    submitted = set(ids)
    missing = [v for v in truth if v not in submitted]
    # Exactly what the CSV submits: a video's best 20 listed pairs; unlisted classes and videos score nothing.
    result = metrics.evaluate_submission(label_ids, scores, [truth[v] for v in ids], [truth[v] for v in missing],
                                         args.num_classes, k=20)
    result["videos_without_prediction"] = len(missing)
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        print(f"GAP@20 {result['gap']:.5f}  Hit@1 {result['hit_at_1']:.5f}  PERR {result['perr']:.5f}  "
              f"mAP {result['map']:.5f}  videos {result['num_videos']} ({len(missing)} without a prediction)")
    return 0


def cmd_component(args) -> int:
    from yt8m_pipeline import local_run, rerun

    result = rerun.rerun(args.run_dir, args.name, mode="docker" if args.docker else "local", task=args.task,
                         run_id=args.run_id, console=local_run.Console(verbose=args.verbose))
    if result["return_code"] != 0:
        print(f"component {args.name} failed (exit {result['return_code']}); log: {result['log']}", file=sys.stderr)
        return 1
    print(result["out_dir"])
    return 0


def cmd_lineage(args) -> int:
    from yt8m_pipeline import lineage

    lines, html_path = lineage.lineage(args.run_dir, run_id=args.run_id, html_path=args.html)
    print("\n".join(lines))
    print(f"graph: {html_path}")
    return 0


def cmd_submit(args) -> int:
    from yt8m_pipeline import vertex

    _recipe_config(args, local=False)
    print(vertex.submit_from_args(args.config, args.project, args.region, args.pipeline_root, args.data,
                                  args.num_classes, args.test_data, args.publish_root, args.service_account,
                                  args.labels, args.no_cache, args.dry_run))
    return 0


def cmd_preprocess(args) -> int:
    from yt8m_pipeline.beam_jobs import preprocess

    if not args.verbose:  # the summary lines below say what the job's INFO lines say
        for noisy in ("apache_beam", "tensorflow_transform", "tfx_bsl", "absl", "tensorflow", "yt8m"):
            logging.getLogger(noisy).setLevel(logging.ERROR if noisy != "yt8m" else logging.WARNING)
    for line in preprocess.preprocess_from_args(args):
        print(line)
    return 0


def cmd_images(args) -> int:
    from yt8m_pipeline import images

    print(images.format_table())
    for name in images.images():
        print(f"  build: {images.build_command(name)}")
    return 0


def cmd_compile(args) -> int:
    from yt8m import config as config_lib
    from yt8m_pipeline import images
    from yt8m_pipeline.pipelines import yt8m_pipeline as pipeline_def

    _recipe_config(args, local=False)
    cfg = config_lib.load_run_config(args.config) if args.config else None
    for name in images.placeholder_images():
        print(f"yt8m compile: warning: the {name} image is a placeholder ({images.images()[name]['image']}); set "
              f"YT8M_{name.upper()}_IMAGE or yt8m_pipeline/configs/images.yaml before running on Vertex "
              "(see yt8m images)", file=sys.stderr)
    print(pipeline_def.compile_pipeline(args.out, cfg))
    return 0


def cmd_train(args) -> int:
    from yt8m import config as config_lib
    from yt8m import storage, training

    import tensorflow as tf

    from yt8m import record_check

    cfg = config_lib.load_model_config(args.config)
    files = storage.check_readable(args.data, "--data")
    eval_files = storage.check_readable(args.eval_data, "--eval-data") if args.eval_data else None
    record_check.check_not_empty(files, "--data")
    record_check.check_not_empty(eval_files or [], "--eval-data")
    try:
        result = training.train_single(cfg, files, args.output, num_classes=args.num_classes,
                                       eval_data=eval_files, restart=args.restart, compression=args.compression)
    except tf.errors.OpError as exc:
        for what, checked in (("--data", files), ("--eval-data", eval_files or [])):
            problem = record_check.first_problem(checked, args.num_classes, level=_record_level(checked))
            if problem is not None:
                raise record_check.BadDataError(f"{what}: {problem.line()}") from None
        raise record_check.explain(exc, [], what="--data") from None
    line = (f"{cfg.name}: {result['family']}/{result['preset']}, {result['parameters']:,} parameters, "
            f"{result['steps']}/{result['total_steps']} steps")
    if result.get("resumed_from_step"):
        line += f" (resumed at step {result['resumed_from_step']})"
    if "eval" in result:
        line += f", eval GAP@20 {result['eval']['gap']:.4f}"
    print(line + f", SavedModel {result['saved_model_bytes'] / 1e6:.1f} MB ({args.compression})")
    print(args.output)
    return 0


def _record_level(files) -> str:
    """'frame' or 'video' from the first record that parses (frame-level when unknown)."""
    from yt8m import readers

    try:
        return readers.detect_format(list(files))
    except Exception:  # noqa: BLE001 - a damaged first record: check it as frame-level
        return "frame"


def _size_rows(num_classes: int, presets: list[str] | None, families: list[str] | None) -> list[dict]:
    from yt8m.models import registry

    registry._load_families()
    names = families or sorted(registry.FAMILIES)
    unknown = [n for n in names if n not in registry.FAMILIES]
    if unknown:
        raise UsageError(f"unknown family {unknown[0]!r}; known: {', '.join(sorted(registry.FAMILIES))}")
    all_presets = sorted({p for n in names for p in registry.FAMILIES[n].presets})
    wanted = presets or all_presets
    missing = [p for p in wanted if p not in all_presets]
    if missing:
        raise UsageError(f"no family has preset {missing[0]!r}; presets: {', '.join(all_presets)}")
    try:
        from yt8m.models import sizes
    except ImportError:  # pragma: no cover - the size module belongs to the model zoo
        sizes = None
    rows = []
    for name in names:
        family = registry.FAMILIES[name]
        for preset in [p for p in family.presets if p in wanted]:
            if sizes is not None:
                row = sizes.model_size(name, preset, num_classes)
            else:  # pragma: no cover
                model = registry.build_model(name, num_classes, preset)
                params = int(model.count_params())
                row = {"family": name, "preset": preset, "input_level": family.input_level, "parameters": params,
                       "fp32_mib": round(4 * params / 2**20, 1), "uint8_mib": None}
            row["description"] = family.description
            rows.append(row)
    return rows


def cmd_models(args) -> int:
    rows = _size_rows(args.num_classes, args.preset, args.family)
    if args.json:
        print(json.dumps(rows, sort_keys=True))
        return 0
    print(f"{'family':<16} {'preset':<10} {'input':<6} {'parameters':>14} {'fp32 MiB':>10} {'uint8 MiB':>10}")
    for r in rows:
        uint8 = "-" if r.get("uint8_mib") is None else f"{r['uint8_mib']:.1f}"
        print(f"{r['family']:<16} {r['preset']:<10} {r['input_level']:<6} {r['parameters']:>14,} "
              f"{r['fp32_mib']:>10.1f} {uint8:>10}")
    print(f"({len(rows)} models at {args.num_classes} classes)")
    return 0


def _add_recipe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recipe", help="a winners' recipe at full size (see `yt8m recipes`) instead of --config")
    p.add_argument("--size-limit", type=_positive_int, metavar="BYTES",
                   help="with --recipe: plan the ensemble under this model size (the 2018 rule: 1073741824)")
    p.add_argument("--dataflow-template", metavar="GS_JSON",
                   help="with --recipe: preprocess on Dataflow from this Flex Template spec (gs://.../preprocess.json, "
                        "infra/README.md); without it the Beam job runs inside the preprocess task")


def _recipe_config(args, local: bool) -> None:
    """``--recipe NAME``: validate it, print its estimate (full size) and point ``args.config`` at its run config
    (the local profile for ``run --local``), written to a file the other verbs read like any ``--config``."""
    if not getattr(args, "recipe", None):
        if getattr(args, "size_limit", None):
            raise UsageError("--size-limit needs --recipe")
        if getattr(args, "scale", None):
            raise UsageError("--scale needs --recipe")
        if getattr(args, "dataflow_template", None):
            raise UsageError("--dataflow-template needs --recipe (with --config, set vertex.dataflow in the file)")
        return
    if args.config:
        raise UsageError("--recipe and --config are exclusive (a recipe is a run config)")
    import tempfile

    from yt8m import config as config_lib
    from yt8m import recipe as recipe_lib

    chosen = recipe_lib.load(args.recipe)
    if local:
        scale = recipe_lib.SCALES[getattr(args, "scale", None) or "local"]
        cfg = recipe_lib.local_profile(chosen, scale)
        print(f"recipe {chosen.name} at {scale.name} scale: {len(cfg.models)} members "
              f"({', '.join(m.name for m in cfg.models)}), small presets, {scale.examples:,} examples each, "
              f"{cfg.data.folds} folds")
    else:
        limit = getattr(args, "size_limit", None)
        try:
            cfg = recipe_lib.for_vertex(chosen, limit, getattr(args, "dataflow_template", None))
        except config_lib.ConfigError as err:  # e.g. a --dataflow-template that is not gs://.../*.json
            raise UsageError(str(err)) from None
        if cfg.vertex.dataflow.runner != "dataflow":
            print(f"recipe {chosen.name}: preprocessing runs inside the preprocess task on Beam's local runner; "
                  "for the full dataset pass --dataflow-template gs://.../preprocess.json (infra/README.md)",
                  file=sys.stderr)
        estimated = recipe_lib.check_budget(chosen, together=not limit, size_limit=limit)
        print(f"recipe {chosen.name}: {len(estimated['members'])} members, estimated {estimated['fp32_bytes'] / 1e9:.2f} GB "
              f"fp32, {estimated['compressed_bytes'] / 1e9:.2f} GB {estimated['compression']}; "
              f"~{estimated['gpu_hours']:,.0f} GPU-hours on {estimated['accelerator']} "
              f"(~${estimated['estimated_cost_usd']:,}; {estimated['assumptions']})", file=sys.stderr)
    handle, path = tempfile.mkstemp(prefix=f"yt8m-recipe-{chosen.name}-", suffix=".yaml")
    os.close(handle)
    atexit.register(_remove_quietly, path)  # the run keeps the config as its run_config parameter
    recipe_lib.write_yaml(cfg, path)
    args.config = path


def _remove_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def cmd_recipes(args) -> int:
    from yt8m import recipe as recipe_lib

    estimates = [recipe_lib.estimate(recipe_lib.load(n)) for n in (args.recipe or recipe_lib.names())]
    if args.json:
        print(json.dumps(estimates, sort_keys=True))
        return 0
    for e in estimates:
        limit = "no size limit" if e["size_limit_bytes"] is None else f"limit {e['size_limit_bytes'] / 1e9:.2f} GB"
        print(f"{e['name']}: {e['title']}")
        gap = "none published" if e["published_gap"] is None else e["published_gap"]
        print(f"  published GAP@20 {gap} ({e['published_gap_note']})")
        print(f"  final graph ~{e['fp32_bytes'] / 1e9:.2f} GB fp32, ~{e['compressed_bytes'] / 1e9:.2f} GB "
              f"{e['compression']} ({limit}); ~{e['gpu_hours']:,.0f} GPU-hours on {e['accelerator']} "
              f"(~${e['estimated_cost_usd']:,})")
        for m in e["members"]:
            where = "final graph" if m["in_final_graph"] else "teacher"
            print(f"    {m['name']:<22} {m['family']:<16} {where:<11} {m['parameters']:>13,} params "
                  f"{m['compressed_bytes'] / 1e6:>8.0f} MB  {m['training_runs']} x {m['examples_per_run']:,} examples "
                  f"~{m['gpu_hours']:,.0f} GPU-h")
    print(f"(GPU-hours: {estimates[0]['assumptions'] if estimates else ''})")
    return 0


def build_parser(with_preprocess_flags: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="yt8m", description="YouTube-8M pipeline: data, training, ensembling, "
                                                               "gated publishing (locally or on Vertex AI)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="verb", required=True)

    p = sub.add_parser("synth", help="generate a synthetic YT8M-format dataset (frame-level shards + oracle)")
    p.add_argument("--out", required=True, help="output directory (local or gs://)")
    p.add_argument("--videos", type=_positive_int, default=2000)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("run", help="run the whole pipeline (locally under kfp.local)")
    p.add_argument("--local", action="store_true", help="run on this machine (kfp.local, Beam DirectRunner)")
    p.add_argument("--data", help="frame-level TFRecord pattern (default: generate a synthetic set)")
    p.add_argument("--test-data", help="frame-level TFRecords to write Kaggle predictions for")
    p.add_argument("--num-classes", type=_positive_int, help="number of classes of --data")
    p.add_argument("--config", help="run config YAML (default: the packaged local.yaml)")
    p.add_argument("--recipe", help="a winners' recipe (see `yt8m recipes`), run at its local scale")
    p.add_argument("--scale", choices=("local", "smoke"),
                   help="with --recipe: local (the default) or smoke (every member and stage at the smallest size, as "
                        "the tests run it); the sizes are yt8m/recipe.py's SCALES")
    p.add_argument("--workdir", help="where data, pipeline outputs and published models go (default runs/local-*)")
    p.add_argument("--publish-root", help="publish location, local or gs:// (default WORKDIR/published)")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="show every task's whole output (kfp executor dumps, TensorFlow and Beam logs) on the console")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("submit", help="submit the pipeline to Vertex AI Pipelines (same pipeline and run config "
                                       "as run --local); --dry-run writes the job spec and touches no network")
    p.add_argument("--config", help="run config YAML (default: the packaged local.yaml)")
    _add_recipe_arguments(p)
    p.add_argument("--project", help="GCP project id")
    p.add_argument("--region", help="Vertex AI region, e.g. us-central1")
    p.add_argument("--pipeline-root", help="gs:// pipeline root (task outputs, caching)")
    p.add_argument("--data", help="gs:// frame-level TFRecord pattern of the training data")
    p.add_argument("--num-classes", type=_positive_int, help="classes of --data (default: the config's)")
    p.add_argument("--test-data", help="gs:// frame-level TFRecords to write Kaggle predictions for")
    p.add_argument("--publish-root", help="gs:// publish location (default PIPELINE_ROOT/published)")
    p.add_argument("--service-account", help="the pipeline's service account (infra/ creates one)")
    p.add_argument("--labels", help="job labels k=v,k2=v2 (lowercase letters, digits, _ and -)")
    p.add_argument("--no-cache", action="store_true", help="disable Vertex caching for this run")
    p.add_argument("--dry-run", metavar="OUT.json", help="write the full job spec (pipeline spec + runtime config) "
                                                         "here instead of submitting")
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("preprocess", help="the Beam job: validate, quarantine, dedup, fold-split, TFT statistics "
                                           "and transform_fn, reconciled counts, report (the pipeline's preprocess "
                                           "step; local runner or Dataflow)")
    if with_preprocess_flags:  # the job's module imports Beam and TensorFlow: only when the verb is used
        from yt8m_pipeline.beam_jobs.preprocess import add_arguments as add_preprocess_arguments

        add_preprocess_arguments(p)
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("predict", help="Kaggle-format CSV (top 20) from a SavedModel")
    p.add_argument("--model", required=True, help="SavedModel directory or a published version directory")
    p.add_argument("--data", required=True, help="frame-level TFRecord pattern")
    p.add_argument("--out", required=True, help="CSV path")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--top-k", type=_positive_int, default=20)
    p.add_argument("--on-bad-record", choices=["fail", "skip"], default="fail",
                   help="fail (default): stop at the first bad record or damaged file with a one-line reason; "
                        "skip: score the valid records, list the skipped ones (reason, file, offset, video id) "
                        "in OUT.skipped.csv")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("evaluate", help="GAP@20, Hit@1, PERR, mAP of a Kaggle CSV against labelled TFRecords")
    p.add_argument("--predictions", required=True, help="Kaggle CSV (VideoId,LabelConfidencePairs)")
    p.add_argument("--data", required=True, help="labelled TFRecords (frame- or video-level)")
    p.add_argument("--num-classes", type=_positive_int, default=3862)
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("train", help="train one model config (YAML) on TFRecords and export it; re-running "
                                     "the same command resumes from its checkpoints")
    p.add_argument("--config", required=True, help="model config YAML (name, family, preset, overrides, training)")
    p.add_argument("--data", required=True, help="training TFRecord pattern (frame-level SequenceExamples, or "
                                                 "video-level Examples for video-level families)")
    p.add_argument("--output", required=True, help="output directory (saved_model/, weights, metrics.json, "
                                                   "checkpoints/, tensorboard/)")
    p.add_argument("--num-classes", type=_positive_int, default=3862)
    p.add_argument("--eval-data", help="labelled TFRecords to evaluate the trained model on (GAP@20 ...)")
    p.add_argument("--restart", action="store_true",
                   help="discard checkpoints already in --output (a run on other data, classes or model config "
                        "is refused without it)")
    p.add_argument("--compression", choices=("uint8", "codebook", "float16", "none"), default="uint8",
                   help="how the exported graph stores float32 tensors above 17,000 elements (the ensemble's "
                        "options; default uint8, so a published-size NetVLAD alone stays under 1 GB)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("models", help="list the model families and presets with parameters, fp32 and uint8 sizes")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument("--preset", action="append", help="only this preset (repeatable), e.g. --preset small; "
                                                     "published presets are slow and memory-heavy to build")
    p.add_argument("--family", action="append", help="only this family (repeatable)")
    p.add_argument("--num-classes", type=_positive_int, default=3862)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("component", help="rerun ONE component of a previous local run on its input artifacts "
                                          "(outputs go to a new folder; the run is never modified)")
    p.add_argument("name", help="preprocess, train, collect-folds, ensemble, gate or publish")
    p.add_argument("--run-dir", required=True, help="the workdir of a `yt8m run --local` run")
    p.add_argument("--run-id", help="which run in that workdir (default: the latest)")
    p.add_argument("--task", help="which task when the component ran several times (e.g. train-op-2)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="in a subprocess of this environment (default)")
    where.add_argument("--docker", action="store_true", help="in the component's image (needs a Docker engine)")
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="show the task's output")
    p.set_defaults(func=cmd_component)

    p = sub.add_parser("lineage", help="a local run's artifact graph: which data, configs and members produced "
                                        "the published model (tree + HTML picture)")
    p.add_argument("run_dir", help="the workdir of a `yt8m run --local` run")
    p.add_argument("--run-id", help="which run in that workdir (default: the latest)")
    p.add_argument("--html", help="where to write the HTML page (default: the run's logs folder)")
    p.set_defaults(func=cmd_lineage)

    p = sub.add_parser("images", help="the container image of each component kind, and how to build it")
    p.set_defaults(func=cmd_images)

    p = sub.add_parser("compile", help="compile the pipeline to kfp IR YAML")
    p.add_argument("--out", default="yt8m_pipeline.yaml")
    p.add_argument("--config", help="run config YAML whose vertex section (resources, retries, parallelism) is "
                                    "compiled in (default: the defaults)")
    _add_recipe_arguments(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("recipes", help="the winners' solutions as recipes: members, published GAP, estimated size "
                                       "and GPU-hours (builds each full-size member, untrained, to count it)")
    p.add_argument("--json", action="store_true", help="print the estimates as JSON")
    p.add_argument("--recipe", action="append", help="only this recipe (repeatable)")
    p.set_defaults(func=cmd_recipes)
    return parser


def _import_tensorflow_quietly() -> None:
    """TensorFlow writes its C++ start-up lines (oneDNN, CUDA probing) to fd 2 before its log level applies:
    import it with fd 2 parked in a temporary file, so the console shows only what the user asked for."""
    if "tensorflow" in sys.modules:
        return
    import tempfile

    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow as tf
            import keras  # noqa: F401  (its start-up lines too)

            tf.config.list_physical_devices("GPU")  # CUDA probing logs at ERROR on machines without a GPU
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose_flag = any(a in ("-v", "--verbose") for a in argv)
    wants_preprocess = "preprocess" in argv
    if wants_preprocess and not verbose_flag:
        _import_tensorflow_quietly()
    args = build_parser(with_preprocess_flags=wants_preprocess).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not args.verbose:
        _import_tensorflow_quietly()
        # TensorFlow's and absl's INFO lines (SavedModel assets written, input names renamed, sharding
        # callbacks) are not the verb's progress; --verbose shows them.
        for library in ("absl", "tensorflow"):
            logging.getLogger(library).setLevel(logging.WARNING)
    from yt8m import fast_exit
    from yt8m.config import ConfigError

    fast_exit.skip_final_garbage_collection()  # every verb exits 2-3 s sooner (TensorFlow is loaded)

    try:
        return args.func(args)
    except (UsageError, ConfigError, FileNotFoundError, ValueError, KeyError, RuntimeError) as exc:
        if args.verbose:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"yt8m {args.verb}: error: {str(message).splitlines()[0] if str(message) else type(exc).__name__}",
              file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
