"""The winners' solutions as recipes (issue 16): validated YAML run configs, a local profile, estimates."""

import dataclasses
import glob
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from yt8m import config, fingerprint, recipe
from yt8m.models import registry
from yt8m_pipeline.pipelines.yt8m_pipeline import pipeline_arguments

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("scale", recipe.SCALES.values(), ids=recipe.SCALES)
@pytest.mark.parametrize("name", recipe.names())
def test_every_recipe_validates_and_its_local_profile_keeps_members_and_stages(name, scale):
    full = recipe.load(name)
    assert full.name == name and full.config.models
    local = recipe.local_profile(full, scale)
    assert [(m.name, m.family) for m in local.models] == [(m.name, m.family) for m in full.config.models]
    assert all(m.preset == "small" and m.training.examples_to_see == scale.examples for m in local.models)
    stacking = full.config.ensemble.stacking if "stacking" not in full.raw.get("ensemble", {}) else \
        config.StackingConfig(**recipe.LOCAL_STACKING)
    assert local.ensemble == dataclasses.replace(full.config.ensemble, stacking=stacking)
    assert local.data.folds == recipe.LOCAL_FOLDS
    assert local.synth.videos == scale.videos and local.data.num_classes == local.synth.classes == scale.classes
    rounds = full.config.distillation.rounds  # the smoke scale keeps one round at most (recipe.SMOKE)
    assert local.distillation.rounds == (rounds if scale.max_distillation_rounds is None
                                         else min(rounds, scale.max_distillation_rounds))
    assert [m.name for m in local.distillation.students] == [m.name for m in full.config.distillation.students]
    frame_level = [m for m in local.models if registry.get_family(m.family).input_level == "frame"]
    assert all(m.training.max_frames == scale.max_frames for m in frame_level)
    for m_full, m_local in zip(full.config.models, local.models):  # switches survive, sizes do not
        for switch in recipe.SWITCHES:
            if hasattr(m_full.training, switch) and switch in (full.raw["models"][0].get("training") or {}):
                assert getattr(m_local.training, switch) == getattr(m_full.training, switch)


def test_samsung_stacks_with_the_teams_lightgbm_settings_and_its_local_profile_with_small_ones():
    samsung = recipe.load("samsung-2018")
    assert samsung.config.ensemble.combiner == "stacking"
    assert samsung.config.ensemble.stacking == config.StackingConfig(learning_rate=0.01, max_rounds=3000,
                                                                     early_stopping_rounds=30)  # YT8M_FACTS.md
    assert recipe.local_profile(samsung).ensemble.stacking == config.StackingConfig(**recipe.LOCAL_STACKING)
    arguments = pipeline_arguments(samsung.config, "gs://b/train*.tfrecord", "", "gs://b/published", 3862,
                                   data_fingerprint=fingerprint.Fingerprint("gs://b/train*.tfrecord", "sha256:0", 1, 1))
    assert arguments["stacking"] == {"learning_rate": 0.01, "max_rounds": 3000, "early_stopping_rounds": 30}


def test_willow_follows_the_published_commands():
    willow = recipe.load("willow-2017")
    assert [m.family for m in willow.config.models] == ["netvlad", "netfv", "gated_soft_dbof", "soft_dbof",
                                                         "netrvlad", "gru", "lstm"]
    steps = {m.family: m.training.epochs * m.training.steps_per_epoch for m in willow.config.models}
    assert steps == {"netvlad": 700_000, "netfv": 600_000, "gated_soft_dbof": 1_000_000, "soft_dbof": 800_000,
                     "netrvlad": 600_000, "gru": 300_000, "lstm": 400_000}  # YT8M_FACTS.md, WILLOW README
    assert {m.training.batch_size for m in willow.config.models if m.family in ("gru", "lstm")} == {128}
    assert {m.training.learning_rate for m in willow.config.models} == {2e-4}
    assert willow.config.ensemble.combiner == "weighted" and willow.header["size_limit_bytes"] is None
    limited = recipe.with_size_limit(willow, 1 << 30)
    assert limited.ensemble.size_budget_bytes == limited.gate.max_size_bytes == 1 << 30
    assert limited.ensemble.compression == "uint8"


def _write(tmp_path, header=None, **run):
    base = {"recipe": {"name": "bad", "title": "t", "source": "s", "published_gap": 0.8, "published_gap_note": "n",
                       "size_limit_bytes": None, "accelerator": "NVIDIA_L4"},
            "models": [{"name": "moe", "family": "moe", "preset": "published"}]}
    if header is not None:
        base["recipe"] = header
    base.update(run)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(base))
    return str(path)


@pytest.mark.parametrize("change, message", [
    ({"models": [{"name": "x", "family": "no_such_family"}]}, "bad.yaml.models[0]: unknown model family"),
    ({"header": {"name": "bad"}}, "bad.yaml.recipe.title: missing"),
    ({"stacking_rounds": 2}, "stacking_rounds"),  # a stage that does not exist is an error, never skipped
    ({"ensemble": {"combiner": "median"}}, "bad.yaml.ensemble.combiner"),
    ({"ensemble": {"combiner": "stacking", "stacking": {"learning_rate": 0}}},
     "bad.yaml.ensemble.stacking.learning_rate: must be > 0"),
    ({"ensemble": {"stacking": {"max_rounds": 0}}}, "bad.yaml.ensemble.stacking.max_rounds: must be >= 1"),
    ({"ensemble": {"stacking": {"trees": 3000}}}, r"bad.yaml.ensemble.stacking: unknown field\(s\) trees"),
    ({"header": {"name": "bad", "title": "t", "source": "s", "published_gap": 1.5, "published_gap_note": "n",
                 "size_limit_bytes": None, "accelerator": "NVIDIA_L4"}}, "bad.yaml.recipe.published_gap"),
])
def test_a_wrong_recipe_fails_naming_the_field(tmp_path, change, message):
    header = change.pop("header", None)
    with pytest.raises(config.ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        recipe.load(_write(tmp_path, header, **change))


def test_a_member_over_the_size_limit_fails_before_anything_runs(tmp_path):
    header = {"name": "bad", "title": "t", "source": "s", "published_gap": 0.8, "published_gap_note": "n",
              "size_limit_bytes": 10_000_000, "accelerator": "NVIDIA_L4"}
    bad = recipe.load(_write(tmp_path, header, gate={"max_size_bytes": 10_000_000}))
    with pytest.raises(recipe.RecipeError, match=r"bad.yaml.models\[0\] \(moe\): estimated .* over the recipe's "
                                                 r"size limit 10,000,000"):
        recipe.check_budget(bad)  # the published MoE is ~22 MB in uint8


def test_unknown_recipe_names_the_known_ones():
    with pytest.raises(recipe.RecipeError, match="unknown recipe 'nope'; recipes: .*willow-2017"):
        recipe.load("nope")


@pytest.mark.parametrize("name", recipe.names())
def test_every_recipe_compiles_with_its_members_fan_out_rounds_and_gpus(tmp_path, name):
    from yt8m_pipeline.pipelines import yt8m_pipeline as pipeline_def

    full = recipe.load(name)
    cfg = full.config
    ir = yaml.safe_load(open(pipeline_def.compile_pipeline(str(tmp_path / "ir.yaml"), cfg)))
    args = pipeline_arguments(cfg, "gs://b/train*.tfrecord", "", "gs://b/published", cfg.data.num_classes,
                              data_fingerprint=fingerprint.Fingerprint("p", "sha256:0", 1, 1))
    assert [m["name"] for m in args["model_configs"]] == [m.name for m in cfg.models]
    assert len(args["fold_tasks"]) == len(cfg.models) * cfg.data.folds
    students = cfg.distillation.students if cfg.distillation.rounds else []
    assert [m["name"] for m in args["student_configs"]] == [m.name for m in students]
    assert len(args["student_fold_tasks"]) == len(students) * cfg.data.folds
    ensembles = [t for t in json.dumps(ir).split('"') if re.fullmatch(r"ensemble-op(-\d+)?", t)]
    assert len(set(ensembles)) == 1 + cfg.distillation.rounds  # one ensemble per round of students
    trainers = {n: e for n, e in ir["deploymentSpec"]["executors"].items() if "train" in n}
    assert trainers and {e["container"]["resources"]["accelerator"]["resourceType"]
                         for e in trainers.values()} == {full.header["accelerator"]}


def test_a_recipe_trains_on_its_headers_accelerator_and_a_contradicting_vertex_setting_is_refused(tmp_path):
    header = {"name": "bad", "title": "t", "source": "s", "published_gap": 0.8, "published_gap_note": "n",
              "size_limit_bytes": None, "accelerator": "NVIDIA_A100_80GB"}
    a100 = recipe.load(_write(tmp_path, header))
    assert a100.config.vertex.resources.train.accelerator_type == "NVIDIA_A100_80GB"
    with pytest.raises(recipe.RecipeError, match=r"bad.yaml.vertex.resources.train.accelerator_type: 'NVIDIA_L4' "
                                                 r"differs from the recipe's accelerator 'NVIDIA_A100_80GB'"):
        recipe.load(_write(tmp_path, header, vertex={"resources": {"train": {"accelerator_type": "NVIDIA_L4"}}}))


@pytest.mark.slow
def test_submit_dry_run_of_a_recipe_has_its_members_fan_out_and_gpus(tmp_path):
    out = tmp_path / "job.json"
    machine_tmp = tmp_path / "machine_tmp"  # stands for /tmp
    machine_tmp.mkdir()
    result = subprocess.run([sys.executable, "-m", "yt8m_pipeline.cli", "submit", "--recipe", "willow-2017",
                             "--project", "my-project", "--region", "us-central1", "--pipeline-root",
                             "gs://bucket/root", "--data", "gs://bucket/train*.tfrecord", "--dataflow-template",
                             "gs://bucket/templates/preprocess.json", "--dry-run", str(out)],
                            capture_output=True, text=True, cwd=ROOT, timeout=900,
                            env={**os.environ, "TMPDIR": str(machine_tmp)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert os.listdir(machine_tmp) == []  # the recipe's run config (a temporary file) is removed at exit
    assert "GPU-hours on NVIDIA_L4" in result.stderr and "recipe willow-2017: 7 members" in result.stderr
    spec = json.loads(out.read_text())["pipelineJob"]
    params = spec["runtimeConfig"]["parameterValues"]
    assert [m["name"] for m in params["model_configs"]] == [m.name for m in recipe.load("willow-2017").config.models]
    assert len(params["fold_tasks"]) == 7 * 2
    executors = spec["pipelineSpec"]["deploymentSpec"]["executors"]
    trainers = [e for name, e in executors.items() if "train" in name]
    assert trainers and all(e["container"]["resources"]["accelerator"]["type"] == "NVIDIA_L4" for e in trainers)
    launch = [e for name, e in executors.items() if "dataflow-flex-template" in name]  # the full-size preprocessing
    assert launch and "gs://bucket/templates/preprocess.json" in json.dumps(spec)
    assert "preprocessing runs inside the preprocess task" not in result.stderr


def test_a_recipe_for_vertex_preprocesses_on_dataflow_from_the_given_template(tmp_path):
    willow = recipe.load("willow-2017")
    assert willow.config.vertex.dataflow.runner == "local"  # the template's gs:// path is the user's
    cfg = recipe.for_vertex(willow, 1 << 30, "gs://bucket/templates/preprocess.json")
    assert (cfg.vertex.dataflow.runner, cfg.vertex.dataflow.flex_template) == ("dataflow",
                                                                               "gs://bucket/templates/preprocess.json")
    assert cfg.gate.max_size_bytes == cfg.ensemble.size_budget_bytes == 1 << 30
    with pytest.raises(config.ConfigError, match="flex_template"):
        recipe.for_vertex(willow, dataflow_template="/local/preprocess.json")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in recipe.names() if recipe.load(n).header["size_limit_bytes"]])
def test_a_recipe_with_a_size_limit_is_estimated_under_it(name):
    estimated = recipe.check_budget(recipe.load(name))  # builds each published member (untrained) to count it
    assert estimated["compressed_bytes"] < estimated["size_limit_bytes"]
    assert estimated["gpu_hours"] > 0 and all(m["parameters"] > 1e6 for m in estimated["members"])


# ---- every recipe end to end, at the smoke scale (every member and stage, the smallest data)

SMOKE_TEST = "test_each_recipe_runs_end_to_end_at_smoke_scale_and_publishes_a_gated_model"


def _training_tasks(cfg: config.RunConfig) -> int:
    return (len(cfg.models) + cfg.distillation.rounds * len(cfg.distillation.students)) * (cfg.data.folds + 1)


class SmokeRuns:
    """`yt8m run --local --recipe NAME --scale smoke` of each recipe, two runs at a time, the longest first: kfp.local
    runs at most two tasks of a run at once, and a run's serial steps (preprocess, collect, ensemble, gate,
    publish) leave a core idle that the other run uses."""

    def __init__(self, names: list[str], root, at_once: int = 2):
        import concurrent.futures

        self.root = root
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=at_once)
        longest_first = sorted(names, key=lambda n: -_training_tasks(recipe.local_profile(recipe.load(n),
                                                                                          recipe.SMOKE)))
        self.runs = {n: self.pool.submit(self._run, n) for n in longest_first}

    def _run(self, name: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "yt8m_pipeline.cli", "run", "--local", "--recipe", name,
                               "--scale", "smoke", "--workdir", str(self.root / name)],
                              capture_output=True, text=True, cwd=ROOT, timeout=2400)

    def result(self, name: str) -> tuple[subprocess.CompletedProcess, str]:
        return self.runs[name].result(), str(self.root / name)


@pytest.fixture(scope="module")
def smoke_runs(request, tmp_path_factory):
    """The smoke runs of the recipes whose end-to-end test is selected, started together (see ``SmokeRuns``)."""
    names = [item.callspec.params["name"] for item in request.session.items
             if getattr(item, "originalname", None) == SMOKE_TEST and item.module is request.module]
    runs = SmokeRuns(names, tmp_path_factory.mktemp("recipe-smoke-runs"))
    yield runs
    runs.pool.shutdown(wait=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", recipe.names())
def test_each_recipe_runs_end_to_end_at_smoke_scale_and_publishes_a_gated_model(name, smoke_runs):
    result, workdir = smoke_runs.result(name)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    cfg = recipe.local_profile(recipe.load(name), recipe.SMOKE)
    manifest = json.load(open(os.path.join(result.stdout.strip().splitlines()[-1], "manifest.json")))
    assert manifest["gate"]["passed"] == 1
    # every stage ran: K folds + a final member per model and per distillation round's student, one ensemble each
    labels = [json.load(open(p))["label"] for p in glob.glob(os.path.join(workdir, "logs", "*", "*.task.json"))]
    rounds = cfg.distillation.rounds
    assert sum(label.startswith("train final") for label in labels) == _training_tasks(cfg) // (cfg.data.folds + 1)
    assert sum(re.match(r"train .* fold \d+$", label) is not None for label in labels) == (
        _training_tasks(cfg) // (cfg.data.folds + 1) * cfg.data.folds)
    assert sum(label == "ensemble" for label in labels) == 1 + rounds and "publish" in labels
    # the published graph: the members' ensemble, or with distillation what the last round passed on (its
    # students' ensemble, or its teacher when that scored higher on the holdout), with the recipe's combiner and
    # compression
    report = manifest["ensemble"]
    students, members = [m.name for m in cfg.distillation.students], [m.name for m in cfg.models]
    if rounds:
        last = report["distillation"]
        assert (last["round"], last["rule"], last["students"]) == (rounds, cfg.distillation.keep, students)
        assert last["kept"] == ("teacher" if last["students_holdout_gap"] < last["teacher_holdout_gap"] else "students")
        published = [m["name"] for m in report["members"]]
        assert published == students if last["kept"] == "students" else published in (members, students)
        if last["kept"] == "students":  # a students' ensemble reports its teacher (the previous round's)
            assert sorted(report["teacher"]["members"]) in (sorted(members), sorted(students))
    else:
        assert [m["name"] for m in report["members"]] == members
    assert set(manifest["model"]["members"]) <= {m["name"] for m in report["members"]}
    assert (report["combiner"], report["compression"]) == (cfg.ensemble.combiner, cfg.ensemble.compression)
    if cfg.ensemble.combiner == "stacking":
        assert report["stacker"]["rounds"] >= 1
    # the recipe's switches reached the members (e.g. TTA, augmentation, EMA, mixup, architecture variants)
    configs = {m["name"]: m for m in manifest["run_config"]["models"]}
    for m in cfg.models:
        assert configs[m.name]["overrides"] == m.overrides
        for switch in recipe.SWITCHES:
            assert configs[m.name]["training"][switch] == getattr(m.training, switch), (m.name, switch)
