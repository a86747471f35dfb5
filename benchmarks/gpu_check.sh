#!/bin/bash
# One check of plainrl on a bare GPU machine (issue #17): `bash benchmarks/gpu_check.sh [--dry-run]`.
# It installs nothing from the network. Wheels the machine lacks (pure Python, for its Python version) go in
# wheels/ beforehand, e.g. here:
#   pip download --no-deps --only-binary=:all: --python-version 3.12 -d wheels gymnasium farama-notifications tomli-w gguf
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -d wheels ] && ! python3 -c "import gymnasium, tomli_w" 2>/dev/null; then
    python3 -m pip install --no-deps --no-index --target .gpu_check_deps wheels/*.whl >/dev/null
fi
export PYTHONPATH="$PWD:$PWD/.gpu_check_deps${PYTHONPATH:+:$PYTHONPATH}"
timeout 480 python3 benchmarks/gpu_check.py "$@"
