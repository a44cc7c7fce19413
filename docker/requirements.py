"""Print setup.py's INSTALL_REQUIRES for one image, so the Dockerfiles never copy the list.

setup.py is the single owner of the dependency list. Each image installs its dependencies
in a layer BEFORE the source is copied (a code change must not reinstall TensorFlow), so
the build copies only ``setup.py`` and this file, runs::

    python requirements.py PROFILE > /tmp/requirements.txt
    python requirements.py PROFILE --constraints > /tmp/constraints.txt
    pip install -r /tmp/requirements.txt -c /tmp/constraints.txt

and copies the source afterwards (``pip install --no-deps .``).

Profiles (one per image under docker/):

    cpu        every requirement: library, Beam, TFT, kfp, aiplatform (non-training components)
    gpu        every requirement except ``tensorflow``: the base image's CUDA build is kept
    dataflow   what Dataflow workers need: no ``kfp``, ``google-cloud-aiplatform``,
               ``google-cloud-pipeline-components`` or ``docker`` (orchestration, not data)

``--constraints`` prints ``name==<installed version>`` for each package the profile takes
from its base image (tensorflow in the GPU image, apache-beam in the Beam SDK image), so
pip fails instead of silently replacing it.

setup.py is read with ``ast`` (no import: importing it would run ``setup()``). Standard
library only: it runs in the base images before anything is installed.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import re
import sys
from importlib import metadata

DEFAULT_SETUP = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "setup.py")


@dataclasses.dataclass(frozen=True)
class Profile:
    exclude: tuple[str, ...] = ()  # requirement names left out of this image's install
    from_base: tuple[str, ...] = ()  # packages the base image provides, pinned as installed


PROFILES = {
    "cpu": Profile(),
    "gpu": Profile(exclude=("tensorflow",), from_base=("tensorflow",)),
    "dataflow": Profile(exclude=("kfp", "google-cloud-aiplatform", "google-cloud-pipeline-components", "docker"),
                        from_base=("apache-beam",)),
}


def canonical_name(requirement: str) -> str:
    """``"apache-beam[gcp]==2.77.0"`` -> ``"apache-beam"`` (PEP 503 normalised)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise ValueError(f"not a requirement: {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def install_requires(setup_path: str = DEFAULT_SETUP) -> list[str]:
    """The literal list assigned to ``INSTALL_REQUIRES`` in setup.py."""
    with open(setup_path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), filename=setup_path)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "INSTALL_REQUIRES" for t in node.targets):
            value = ast.literal_eval(node.value)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{setup_path}: INSTALL_REQUIRES must be a list of strings")
            return value
    raise ValueError(f"{setup_path}: no top-level INSTALL_REQUIRES = [...] assignment")


def requirements(profile: str, setup_path: str = DEFAULT_SETUP) -> list[str]:
    """setup.py's requirements for one image, in setup.py's order."""
    spec = PROFILES[profile]
    return [r for r in install_requires(setup_path) if canonical_name(r) not in spec.exclude]


def constraints(profile: str) -> list[str]:
    """``name==version`` of each package the profile keeps from its base image."""
    lines = []
    for name in PROFILES[profile].from_base:
        try:
            lines.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise SystemExit(f"requirements.py: profile {profile!r} expects {name} in the base image; "
                             f"it is not installed")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile", choices=sorted(PROFILES))
    parser.add_argument("--setup", default=DEFAULT_SETUP, help="path of setup.py (default: beside docker/)")
    parser.add_argument("--constraints", action="store_true",
                        help="print pins of the packages the base image provides instead")
    args = parser.parse_args(argv)
    lines = constraints(args.profile) if args.constraints else requirements(args.profile, args.setup)
    sys.stdout.write("".join(line + "\n" for line in lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
