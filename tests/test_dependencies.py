"""A fresh install gets the versions CI tested: constraints.txt pins the dependency tree, the Makefile
installs with it, and the core dependencies are bounded where a break is announced."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ImportError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).parents[1]


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / "constraints.txt").read_text("utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            out[canonicalize_name(name)] = version.strip()
    return out


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]


def test_constraints_pin_every_core_and_dev_dependency():
    pinned = pins()
    wanted = [Requirement(r) for r in project()["dependencies"] + project()["optional-dependencies"]["dev"]]
    missing = [r.name for r in wanted if canonicalize_name(r.name) not in pinned and r.name != "torch"]
    assert missing == []
    for r in wanted:  # each pin satisfies the project's own bounds
        if r.name != "torch":
            assert r.specifier.contains(pinned[canonicalize_name(r.name)], prereleases=True), r


def test_this_environment_has_the_pinned_versions():
    """The suite runs on what the lock says (make installs with it); a drift means `make lock` or a reinstall."""
    drift = {}
    for name, version in pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue  # an extra's package, installed by its own tier
        if installed != version:
            drift[name] = (version, installed)
    assert drift == {}


def test_the_makefile_installs_every_project_requirement_with_the_constraints():
    makefile = (ROOT / "Makefile").read_text("utf-8")
    assert re.search(r"^PIP\s*:=.*pip install .*-c constraints\.txt", makefile, re.M)
    project_installs = [line for line in makefile.splitlines() if re.search(r"pip install .*(-e '\.|lm-eval)", line)]
    assert project_installs == []  # every one goes through $(PIP)
    assert "$(PIP) -e '.[dev]'" in makefile and re.search(r"^lock:", makefile, re.M)
    assert "constraints.txt" in re.search(r"^\$\(STAMP\):.*$", makefile, re.M).group(0)


def test_upper_bounds_where_a_break_is_announced():
    deps = {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in project()["dependencies"]}
    assert "6.0" not in deps["transformers"] and deps["transformers"].contains("5.24.0")
    assert "2.0" not in deps["accelerate"]
    assert "3.0" not in deps["pydantic"] and "3.0" not in deps["numpy"]


def test_the_ray_extra_is_plain_ray():
    [ray] = [Requirement(r) for r in project()["optional-dependencies"]["ray"]]
    assert ray.name == "ray" and not ray.extras  # the executor uses actors, not Ray Data
    assert not re.search(r"\bray\.data\b|from ray import data", (ROOT / "src/rationalyst/executor.py").read_text("utf-8").split('"""', 2)[2])
