#!/usr/bin/env bash
# Run the test suite: bootstrap .venv if needed, then pytest with any arguments given.
# The tests start the services they use themselves (local Spark, a local S3-compatible server).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
