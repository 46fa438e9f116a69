#!/usr/bin/env bash
# EMR on EC2 bootstrap action: install the jobs' Python dependencies on every node.
#
#   bootstrap.sh REQUIREMENTS_S3_URI [WHEELHOUSE_S3_URI]
#
# Spark runs the driver (cluster mode) and the executors' Python workers with the node's
# /usr/bin/python3 (configurations.json sets PYSPARK_PYTHON), so that interpreter needs pypdfium2,
# Pillow, pandas, pyarrow and boto3 before the first step starts. pyspark and delta-spark are
# never installed here: the release provides them. deploy.py uploads the requirements file next
# to the code bundle and passes its S3 URI as the first argument.
#
# WHEELHOUSE_S3_URI (optional) is an S3 prefix of wheels for clusters without a route to PyPI;
# emr/README.md shows how to fill it with `pip download`. Only wheels are accepted either way:
# compiling pyarrow or numpy on a node would take most of an hour, so a missing wheel must fail
# the bootstrap at once rather than slowly.
#
# Environment (for testing the script off EMR):
#   THUMBS_NODE_PYTHON  interpreter to install for (default /usr/bin/python3)
set -euo pipefail

requirements_uri=${1:?usage: bootstrap.sh REQUIREMENTS_S3_URI [WHEELHOUSE_S3_URI]}
wheelhouse_uri=${2:-}
python=${THUMBS_NODE_PYTHON:-/usr/bin/python3}
required_version=3.11

log() { echo "thumbs-bootstrap: $*" >&2; }

# Bootstrap actions run as the hadoop user, which has passwordless sudo on EMR nodes.
as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
if [[ "$version" != "$required_version" ]]; then
    log "$python is Python $version; the jobs need $required_version (emr-spark-8.0.0)"
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

log "fetching $requirements_uri"
aws s3 cp --only-show-errors "$requirements_uri" "$work/requirements.txt"

if ! "$python" -m pip --version >/dev/null 2>&1; then
    log "pip is missing for $python; installing it"
    as_root "$python" -m ensurepip --upgrade || as_root dnf install -y -q python3-pip
fi

pip_args=(install --no-cache-dir --only-binary=:all: --retries 5 --timeout 60
    --requirement "$work/requirements.txt")
if [[ -n "$wheelhouse_uri" ]]; then
    log "installing from the wheelhouse $wheelhouse_uri only"
    aws s3 cp --only-show-errors --recursive "$wheelhouse_uri" "$work/wheels"
    pip_args+=(--no-index --find-links "$work/wheels")
fi
# A distribution Python marked externally managed (PEP 668) refuses system-wide installs unless
# told; this interpreter serves Spark alone, so installing into it is the point.
if "$python" -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'
then
    pip_args+=(--break-system-packages)
fi

as_root "$python" -m pip "${pip_args[@]}"

# Fail the node now, not the first task: import what the executors import.
"$python" -c 'import boto3, pandas, PIL, pyarrow, pypdfium2
from importlib.metadata import version
names = ("pypdfium2", "pillow", "pandas", "pyarrow", "boto3")
print("thumbs-bootstrap: ready:", ", ".join(f"{n}=={version(n)}" for n in names))'
