#!/usr/bin/env bash
# Make a fresh machine able to run the jobs and the tests: JDK 17, a Python 3.11 virtualenv in
# .venv with the pinned dependencies. Idempotent and quick when nothing changed.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

if ! java -version 2>&1 | grep -q 'version "17'; then
    echo "bootstrap: installing OpenJDK 17 (Spark 4 runs on it, as EMR does)" >&2
    as_root apt-get update -qq
    as_root apt-get install -y -qq openjdk-17-jre-headless >/dev/null
fi

python=${THUMBS_BOOTSTRAP_PYTHON:-}
if [[ -z "$python" ]]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null \
            && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
            python=$candidate
            break
        fi
    done
fi
if [[ -z "$python" ]]; then
    echo "bootstrap: Python 3.11 is required (EMR emr-spark-8.0.0 runs 3.11); set THUMBS_BOOTSTRAP_PYTHON" >&2
    exit 1
fi

# Reinstall only when the dependency files change.
stamp=.venv/.installed
wanted=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    exit 0
fi
echo "bootstrap: installing Python dependencies into .venv" >&2
[[ -x .venv/bin/python ]] || "$python" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev,bench]"
echo "$wanted" > "$stamp"
