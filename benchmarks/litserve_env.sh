#!/usr/bin/env bash
# Builds the LitServe baseline's virtualenv at <repo>/.venv-litserve (kept apart from the project's .venv)
# and installs benchmarks/litserve-requirements.txt into it. Idempotent: an existing venv is reused and
# pip only installs what is missing. Prints the venv's python path last.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv-litserve"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -r "$repo/benchmarks/litserve-requirements.txt"
echo "$venv/bin/python"
