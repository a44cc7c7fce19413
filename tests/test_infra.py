"""infra/*.tf: parses, least-privilege IAM, a safe bucket, the APIs, no hard-coded project.

No GCP access and no provider download here, so the Terraform is never planned or applied:
every file is parsed with python-hcl2 and the resources are read. IAM roles are resolved
through ``for_each`` and ``locals`` so a role hidden in a local set is checked like a literal.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess

import hcl2
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INFRA = os.path.join(ROOT, "infra")
BASIC_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
REQUIRED_APIS = {f"{api}.googleapis.com" for api in
                 ("aiplatform", "dataflow", "artifactregistry", "storage", "compute", "iam", "cloudresourcemanager")}
ROLE = re.compile(r"roles/[A-Za-z0-9_.]+")
IAM_TYPE = re.compile(r"^google_\w+_iam_(member|binding|policy)$")


# --- reading the Terraform -----------------------------------------------------------------

def _unquote(value):
    # python-hcl2 >= 7 keeps the quotes of string literals and block labels; older versions do not.
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _normalise(node):
    if isinstance(node, dict):
        return {_unquote(k): _normalise(v) for k, v in node.items() if k not in ("__is_block__",)}
    if isinstance(node, list):
        return [_normalise(v) for v in node]
    return _unquote(node)


def load(directory: str = INFRA) -> dict:
    """Every .tf file of ``directory`` merged: resources, variables, locals, outputs, providers, terraform."""
    config = {"resources": [], "variables": {}, "locals": {}, "outputs": {}, "providers": [], "terraform": [],
              "files": {}}
    for path in sorted(glob.glob(os.path.join(directory, "*.tf"))):
        with open(path, encoding="utf-8") as f:
            parsed = _normalise(hcl2.load(f))
        config["files"][os.path.basename(path)] = parsed
        for block in parsed.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    config["resources"].append({"type": rtype, "name": name, "body": body,
                                                "file": os.path.basename(path)})
        for block in parsed.get("variable", []):
            config["variables"].update(block)
        for block in parsed.get("locals", []):
            config["locals"].update(block)
        for block in parsed.get("output", []):
            config["outputs"].update(block)
        config["providers"].extend(parsed.get("provider", []))
        config["terraform"].extend(parsed.get("terraform", []))
    return config


def strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in strings(v)] + [k for k in node if isinstance(k, str)]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return [node] if isinstance(node, str) else []


def resolve(config: dict, body: dict, field: str) -> str:
    """The text of ``body[field]`` with ``each.*`` expanded from for_each and ``local.*`` from locals."""
    text = json.dumps(body.get(field))
    if "each." in text:
        text += " " + json.dumps(body.get("for_each"))
    seen = set()
    for _ in range(5):  # locals may name locals
        refs = set(re.findall(r"local\.(\w+)(?:\.(\w+))?", text)) - seen
        if not refs:
            break
        for local, key in refs:
            value = config["locals"].get(local)
            if key and isinstance(value, dict):
                value = value.get(key)
            text += " " + json.dumps(value)
        seen |= refs
    return text


def iam_grants(config: dict) -> list[dict]:
    """One entry per IAM resource: type, name, roles, service accounts (by resource name), scope text."""
    grants = []
    for res in config["resources"]:
        if not IAM_TYPE.match(res["type"]):
            continue
        body = res["body"]
        members_field = "members" if "members" in body else "member"
        scope = " ".join(resolve(config, body, f) for f in ("project", "bucket", "service_account_id", "repository")
                         if f in body)
        grants.append({
            "type": res["type"], "name": res["name"],
            "roles": set(ROLE.findall(resolve(config, body, "role"))) if "role" in body
            else set(ROLE.findall(json.dumps(body))),
            "service_accounts": set(re.findall(r"google_service_account\.(\w+)", resolve(config, body, members_field))),
            "scope": scope,
        })
    return grants


def role_problems(config: dict) -> list[str]:
    """Every breach of the IAM rules; empty when the Terraform is least-privilege as documented."""
    problems = []
    for text in (s for res in config["resources"] for s in strings(res["body"])):
        for role in set(ROLE.findall(text)) & BASIC_ROLES:
            problems.append(f"basic role {role} in a resource")
    for text in strings(config["locals"]):
        for role in set(ROLE.findall(text)) & BASIC_ROLES:
            problems.append(f"basic role {role} in locals")
        for role in ROLE.findall(text):
            if role.startswith("roles/storage."):
                problems.append(f"storage role {role} in locals: grant it on the bucket, literally")
    for grant in iam_grants(config):
        where = f"{grant['type']}.{grant['name']}"
        if not grant["roles"]:
            problems.append(f"{where}: role not resolvable to a literal (use a literal or a local set)")
        for role in grant["roles"] & BASIC_ROLES:
            problems.append(f"{where}: basic role {role}")
        storage = {r for r in grant["roles"] if r.startswith("roles/storage.")}
        if storage and grant["type"] != "google_storage_bucket_iam_member":
            problems.append(f"{where}: storage roles {sorted(storage)} outside google_storage_bucket_iam_member")
        if storage and "google_storage_bucket.pipeline." not in grant["scope"]:
            problems.append(f"{where}: storage roles on a bucket other than the project bucket")
        if grant["type"] in ("google_project_iam_binding", "google_project_iam_policy"):
            problems.append(f"{where}: authoritative project IAM (use google_project_iam_member)")
    return problems


@pytest.fixture(scope="module")
def config():
    return load()


def grants_of(config, service_account: str) -> dict[str, set[str]]:
    """{resource type: roles} granted to one service account (by its resource name)."""
    result: dict[str, set[str]] = {}
    for grant in iam_grants(config):
        if service_account in grant["service_accounts"]:
            result.setdefault(grant["type"], set()).update(grant["roles"])
    return result


def resource(config, rtype: str, name: str) -> dict:
    matches = [r["body"] for r in config["resources"] if r["type"] == rtype and r["name"] == name]
    assert len(matches) == 1, f"expected one {rtype}.{name}, found {len(matches)}"
    return matches[0]


def block(body: dict, key: str) -> list[dict]:
    value = body.get(key, [])
    return value if isinstance(value, list) else [value]


# --- parsing -------------------------------------------------------------------------------

def test_infra_has_the_four_terraform_files():
    assert {os.path.basename(p) for p in glob.glob(os.path.join(INFRA, "*.tf"))} == \
        {"main.tf", "variables.tf", "outputs.tf", "versions.tf"}


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(INFRA, "*.tf"))), ids=os.path.basename)
def test_every_tf_file_parses(path):
    with open(path, encoding="utf-8") as f:
        assert hcl2.load(f)


def test_every_reference_names_a_declared_variable_local_or_resource(config):
    text = "\n".join(open(p, encoding="utf-8").read() for p in glob.glob(os.path.join(INFRA, "*.tf")))
    declared = {(r["type"], r["name"]) for r in config["resources"]}
    for var in set(re.findall(r"\bvar\.(\w+)", text)):
        assert var in config["variables"], f"var.{var} is not declared"
    for local in set(re.findall(r"\blocal\.(\w+)", text)):
        assert local in config["locals"], f"local.{local} is not declared"
    for rtype, name in set(re.findall(r"\b(google_\w+)\.(\w+)\.\w+", text)):
        assert (rtype, name) in declared, f"{rtype}.{name} is referenced but not declared"


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform CLI not installed")
def test_terraform_fmt_is_clean():
    proc = subprocess.run(["terraform", "fmt", "-check", "-diff", "-no-color", INFRA], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- IAM -----------------------------------------------------------------------------------

def test_iam_is_least_privilege(config):
    assert role_problems(config) == []


def test_pipeline_service_account_has_exactly_its_roles_at_their_scopes(config):
    assert grants_of(config, "pipeline") == {
        "google_project_iam_member": {"roles/aiplatform.user", "roles/dataflow.developer"},
        "google_storage_bucket_iam_member": {"roles/storage.objectAdmin", "roles/storage.legacyBucketReader"},
        "google_artifact_registry_repository_iam_member": {"roles/artifactregistry.reader"},
        "google_service_account_iam_member": {"roles/iam.serviceAccountUser"},
    }


def test_pipeline_acts_only_as_the_dataflow_worker_service_account(config):
    acts_as = [g for g in iam_grants(config)
               if "roles/iam.serviceAccountUser" in g["roles"] and "pipeline" in g["service_accounts"]]
    assert len(acts_as) == 1
    assert acts_as[0]["type"] == "google_service_account_iam_member"
    assert "google_service_account.dataflow_worker.name" in acts_as[0]["scope"]
    assert not any(g["type"].startswith("google_project_iam") and
                   g["roles"] & {"roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator"}
                   for g in iam_grants(config))


def test_dataflow_worker_service_account_has_exactly_its_roles_at_their_scopes(config):
    assert grants_of(config, "dataflow_worker") == {
        "google_project_iam_member": {"roles/dataflow.worker"},
        "google_storage_bucket_iam_member": {"roles/storage.objectAdmin", "roles/storage.legacyBucketReader"},
        "google_artifact_registry_repository_iam_member": {"roles/artifactregistry.reader"},
    }


def test_role_check_fails_when_someone_adds_editor_or_a_project_storage_role(tmp_path):
    for path in glob.glob(os.path.join(INFRA, "*.tf")):
        shutil.copy(path, tmp_path)
    assert role_problems(load(str(tmp_path))) == []
    (tmp_path / "extra.tf").write_text(
        'resource "google_project_iam_member" "shortcut" {\n'
        '  project = var.project\n  role    = "roles/editor"\n'
        '  member  = "serviceAccount:${google_service_account.pipeline.email}"\n}\n')
    assert any("roles/editor" in p for p in role_problems(load(str(tmp_path))))
    (tmp_path / "extra.tf").write_text(
        'locals {\n  more_roles = toset(["roles/storage.admin"])\n}\n'
        'resource "google_project_iam_member" "storage" {\n  for_each = local.more_roles\n'
        '  project = var.project\n  role    = each.value\n'
        '  member  = "serviceAccount:${google_service_account.pipeline.email}"\n}\n')
    problems = role_problems(load(str(tmp_path)))
    assert any("outside google_storage_bucket_iam_member" in p for p in problems), problems


# --- the bucket, the registry, the APIs ------------------------------------------------------

def test_bucket_is_private_uniform_versioned_and_expires_temp_data(config):
    bucket = resource(config, "google_storage_bucket", "pipeline")
    assert bucket["uniform_bucket_level_access"] is True
    assert bucket["public_access_prevention"] == "enforced"
    assert [v["enabled"] for v in block(bucket, "versioning")] == [True]
    rules = block(bucket, "lifecycle_rule")
    deletes = [r for r in rules if any(a.get("type") == "Delete" for a in block(r, "action"))]
    prefixed = [r for r in deletes for c in block(r, "condition") if c.get("matches_prefix") and "age" in c]
    assert prefixed, "no lifecycle rule deletes objects under a prefix after an age"
    prefix_var = config["variables"]["temp_prefix"]
    assert prefix_var.get("default", "").endswith("/") and len(prefix_var["default"]) > 1


def test_docker_repository_is_in_the_region(config):
    repo = resource(config, "google_artifact_registry_repository", "images")
    assert repo["format"] == "DOCKER" and repo["location"] == "${var.region}"


def test_required_apis_are_enabled(config):
    services = [r["body"] for r in config["resources"] if r["type"] == "google_project_service"]
    enabled = set()
    for body in services:
        enabled |= set(re.findall(r"[a-z]+\.googleapis\.com", resolve(config, body, "service")))
    assert REQUIRED_APIS <= enabled, sorted(REQUIRED_APIS - enabled)


# --- variables and the provider ------------------------------------------------------------

def test_project_and_region_are_variables_and_no_project_id_is_hard_coded(config):
    assert "default" not in config["variables"]["project"], "the project id must be given, not defaulted"
    assert "region" in config["variables"]
    for res in config["resources"]:
        if "project" in res["body"]:
            assert res["body"]["project"] == "${var.project}", f"{res['type']}.{res['name']} hard-codes project"
    for provider in config["providers"]:
        for body in provider.values():
            assert body["project"] == "${var.project}" and body["region"] == "${var.region}"
    for name, var in config["variables"].items():
        default = var.get("default")
        assert not (isinstance(default, str) and re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]", default)
                    and name in ("project", "project_id")), f"variable {name} defaults to a project id"


def test_google_provider_is_pinned(config):
    providers = [p for t in config["terraform"] for rp in block(t, "required_providers") for p in [rp.get("google")]
                 if p]
    assert len(providers) == 1
    google = providers[0]
    assert google["source"] == "hashicorp/google"
    assert re.fullmatch(r"(~>|=)?\s*\d+\.\d+(\.\d+)?", google["version"]), google["version"]


def test_outputs_give_what_the_readme_steps_use(config):
    assert {"pipeline_root", "images", "registry", "pipeline_service_account", "dataflow_service_account",
            "temp_location"} <= set(config["outputs"])
