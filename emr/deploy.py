"""Deploy the thumbs jobs to Amazon EMR: upload a release, then run the stream and backfills.

One command an operator can read before running: every subcommand builds the exact AWS requests
first, `--dry-run` prints them as JSON and sends nothing, and without it they are sent in order
with the default credential chain (no credentials are ever read, taken or printed here).

    python emr/deploy.py upload          --code-uri s3://ops/thumbs/
    python emr/deploy.py create-cluster  --code-uri ... --subnet-id ... --log-uri ... --stream ...
    python emr/deploy.py add-steps       --code-uri ... --cluster-id j-... --backfill-source ...
    python emr/deploy.py stop-stream     --cluster-id j-...
    python emr/deploy.py serverless      --code-uri ... --application-id ... --job stream ...
    python emr/deploy.py pack-venv       --output build/thumbs-venv.tar.gz
    python emr/deploy.py policy job-role-policy --set SOURCE_BUCKET=docs ...

A release is the code bundle (`thumbs.zip`, built by `thumbs.bundle`), the two job scripts, the
bootstrap action and the node requirements, uploaded under `CODE_URI/releases/ID/` where ID is a
digest of their content: a release never changes once uploaded, so a stream that YARN restarts
runs the code it started with, and uploading the same code twice sends nothing.

The stream restarts itself: its step runs spark-submit in cluster mode with
`spark.yarn.maxAppAttempts=4` and `spark.yarn.am.attemptFailuresValidityInterval=1h`, so YARN
starts a failed driver again from the checkpoint, and only a fourth failure within an hour fails
the step (`ActionOnFailure=CONTINUE` keeps the cluster); emr/README.md says what to do then.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

EMR_DIR = Path(__file__).resolve().parent
REPO = EMR_DIR.parent
if (REPO / "lib" / "thumbs").is_dir():  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO / "lib"))

from thumbs.bundle import build as build_bundle  # noqa: E402
from thumbs.spark import SCALA_BINARY, kafka_connector_version  # noqa: E402

RELEASE_LABEL = "emr-spark-8.0.0"
EMR_SPARK_VERSION = "4.0.2"
"""The Spark the release runs; the Kafka connector is chosen for it as the project does locally."""

STREAM_NAME = "thumbs-stream"
"""Name of the stream's EMR step and of its YARN application (stop-stream finds it by name)."""
BACKFILL_NAME = "thumbs-backfill"
STOP_STREAM_NAME = "thumbs-stop-stream"

KAFKA_CONNECTOR = (
    f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:"
    f"{kafka_connector_version(EMR_SPARK_VERSION)}"
)
MSK_IAM_AUTH = "software.amazon.msk:aws-msk-iam-auth:2.4.0"
DELTA_DYNAMODB_LOG_STORE = "io.delta:delta-storage-s3-dynamodb:4.0.0"

KAFKA_SECURITY: dict[str, list[str]] = {
    "iam": [
        "kafka.security.protocol=SASL_SSL",
        "kafka.sasl.mechanism=AWS_MSK_IAM",
        "kafka.sasl.jaas.config=software.amazon.msk.auth.iam.IAMLoginModule required;",
        (
            "kafka.sasl.client.callback.handler.class="
            "software.amazon.msk.auth.iam.IAMClientCallbackHandler"
        ),
    ],
    "tls": ["kafka.security.protocol=SSL"],
    "plaintext": [],
}
"""`--kafka-option` values per authentication mode (MSK IAM on port 9098, TLS on 9094)."""

STREAM_CONF: dict[str, str] = {
    "spark.yarn.maxAppAttempts": "4",
    "spark.yarn.am.attemptFailuresValidityInterval": "1h",
    "spark.yarn.submit.waitAppCompletion": "true",
    # Executors between micro-batches are idle for seconds; keeping them (and their warm render
    # children) avoids asking YARN for containers every batch.
    "spark.dynamicAllocation.executorIdleTimeout": "300s",
}
BACKFILL_CONF: dict[str, str] = {
    # A backfill resumes from its ledger, so one more attempt after a lost driver is cheap;
    # more would only repeat a bug.
    "spark.yarn.maxAppAttempts": "2",
}

IMAGE_PYTHON = "/usr/bin/python3.11"
"""Where the release's image keeps its interpreter; a packed venv's bin/python links there."""
VENV_ALIAS = "environment"
"""Directory the packed virtual environment is unpacked into on EMR Serverless."""
SERVERLESS_DELTA_JARS = (
    "/usr/share/aws/delta/lib/delta-spark.jar,/usr/share/aws/delta/lib/delta-storage.jar"
)
"""Delta as the image ships it; EMR Serverless has no delta-defaults classification."""
SERVERLESS_DROPPED = ("spark.pyspark.", "spark.eventLog.")
"""spark-defaults keys not sent to EMR Serverless: Python comes from the venv, logs are managed."""

STOP_STREAM_SCRIPT = (
    'ids=$(yarn application -list -appStates RUNNING,ACCEPTED 2>/dev/null'
    ' | awk -v name="$1" \'$2 == name {print $1}\'); '
    'if [ -z "$ids" ]; then echo "no running YARN application named $1"; exit 0; fi; '
    'for id in $ids; do yarn application -kill "$id"; done'
)
"""Kills the stream's YARN application by name. Cancelling the step would not: in cluster mode
the application outlives the spark-submit client that the step runs."""

PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")


class DeployError(Exception):
    """A flag, file or cluster state that stops the deployment, with what to do about it."""


# --- releases -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Artifact:
    key: str
    """Key under the release prefix, e.g. `jobs/stream.py`."""
    path: Path
    digest: str
    """SHA-256 of the content, hex."""


@dataclass(frozen=True)
class Release:
    bucket: str
    prefix: str
    """Ends with `/`: `CODE_PREFIX/releases/ID/`."""
    artifacts: tuple[Artifact, ...]

    @property
    def id(self) -> str:
        return self.prefix.rstrip("/").rsplit("/", 1)[-1]

    def uri(self, key: str) -> str:
        if key not in {a.key for a in self.artifacts}:
            raise DeployError(f"{key} is not part of the release")
        return f"s3://{self.bucket}/{self.prefix}{key}"


def parse_s3_uri(text: str, flag: str) -> tuple[str, str]:
    """Bucket and key prefix of `s3://bucket/prefix`; raises naming the flag when malformed."""
    match = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(.*))?", text or "")
    if not match:
        raise DeployError(f"{flag} must be an s3://bucket/prefix URL, not {text!r}")
    return match.group(1), match.group(2) or ""


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def build_release(code_uri: str, build_dir: Path) -> Release:
    """Build the bundle and name the release after the digest of everything in it."""
    bucket, prefix = parse_s3_uri(code_uri, "--code-uri")
    files = {
        "thumbs.zip": build_bundle(build_dir / "thumbs.zip"),
        "jobs/backfill.py": REPO / "jobs" / "backfill.py",
        "jobs/stream.py": REPO / "jobs" / "stream.py",
        "jobs/validate.py": REPO / "jobs" / "validate.py",
        "jobs/maintain.py": REPO / "jobs" / "maintain.py",
        "emr/bootstrap.sh": EMR_DIR / "bootstrap.sh",
        "emr/requirements-emr.txt": EMR_DIR / "requirements-emr.txt",
    }
    artifacts = tuple(Artifact(key, path, _digest(path)) for key, path in sorted(files.items()))
    manifest = "\n".join(f"{a.key} {a.digest}" for a in artifacts).encode()
    release_id = hashlib.sha256(manifest).hexdigest()[:16]
    base = prefix if not prefix or prefix.endswith("/") else prefix + "/"
    return Release(bucket, f"{base}releases/{release_id}/", artifacts)


# --- requests -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One AWS call: a boto3 client name, an operation, and its exact parameters."""

    service: str
    operation: str
    params: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"service": self.service, "operation": self.operation, "params": self.params}


CONTENT_TYPES = {".py": "text/x-python", ".sh": "text/x-shellscript", ".txt": "text/plain",
                 ".zip": "application/zip", ".gz": "application/gzip"}


def upload_request(bucket: str, key: str, path: Path, digest: str, kms_key: str | None) -> Request:
    extra: dict[str, Any] = {
        "ContentType": CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
        "Metadata": {"sha256": digest},
    }
    if kms_key:
        extra.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=kms_key)
    params = {"Filename": str(path), "Bucket": bucket, "Key": key, "ExtraArgs": extra}
    return Request("s3", "upload_file", params)


def release_uploads(release: Release, kms_key: str | None) -> list[Request]:
    return [
        upload_request(release.bucket, release.prefix + a.key, a.path, a.digest, kms_key)
        for a in release.artifacts
    ]


def substitute(value: Any, values: dict[str, str], source: str) -> Any:
    """Fill `${NAME}` placeholders in every string of a JSON document; all must be known."""
    missing = sorted(set(PLACEHOLDER.findall(json.dumps(value))) - set(values))
    if missing:
        raise DeployError(f"{source}: no value for {', '.join('${' + m + '}' for m in missing)}")
    if isinstance(value, str):
        return Template(value).substitute(values)
    if isinstance(value, list):
        return [substitute(item, values, source) for item in value]
    if isinstance(value, dict):
        return {key: substitute(item, values, source) for key, item in value.items()}
    return value


def load_configurations(region: str, lock_table: str) -> list[dict[str, Any]]:
    """emr/configurations.json with the region and the Delta lock table filled in."""
    path = EMR_DIR / "configurations.json"
    configurations = json.loads(path.read_text())
    values = {"AWS_REGION": region, "DDB_LOCK_TABLE": lock_table}
    result: list[dict[str, Any]] = substitute(configurations, values, path.name)
    check_pyspark_memory(spark_defaults(result))
    return result


def spark_defaults(configurations: list[dict[str, Any]]) -> dict[str, str]:
    for entry in configurations:
        if entry["Classification"] == "spark-defaults":
            return dict(entry["Properties"])
    raise DeployError("configurations.json has no spark-defaults classification")


def _gib(size: str) -> float:
    match = re.fullmatch(r"(\d+)([kmgt]?)b?", size.strip().lower())
    if not match:
        raise DeployError(f"cannot read the memory size {size!r}")
    scale = {"k": 2**-20, "m": 2**-10, "": 2**-10, "g": 1, "t": 2**10}[match.group(2)]
    return int(match.group(1)) * scale


def check_pyspark_memory(conf: dict[str, str], child_cap_gib: float = 2.0) -> None:
    """Refuse a `spark.executor.pyspark.memory` that would kill every render child at start.

    Spark gives each Python worker an address-space limit (RLIMIT_AS, soft and hard) of that
    memory divided by the executor's cores. Render children inherit it and set their own limit of
    three times `--max-memory-mb`; an unprivileged process cannot raise a hard limit, so below
    that every child exits at once and every document ends as `crashed`.
    """
    memory = conf.get("spark.executor.pyspark.memory")
    if memory is None:
        return
    per_worker = _gib(memory) / int(conf.get("spark.executor.cores", "1"))
    if per_worker < 3 * child_cap_gib:
        raise DeployError(
            f"spark.executor.pyspark.memory={memory} leaves {per_worker:.1f} GiB of address space "
            f"per Python worker; render children need {3 * child_cap_gib:.0f} GiB "
            "(3 x --max-memory-mb) or they all fail to start. Leave it unset (see emr/README.md)."
        )


# --- steps --------------------------------------------------------------------------------------


def require_s3(value: str | None, flag: str) -> str:
    if not value or not value.startswith("s3://"):
        raise DeployError(f"{flag} must be an s3:// URL on EMR, not {value!r}")
    return value


def stream_arguments(opts: argparse.Namespace) -> list[str]:
    """The stream job's own arguments (after the script), from the deploy flags."""
    if not opts.bootstrap_servers:
        raise DeployError("the stream needs --bootstrap-servers (the MSK bootstrap brokers)")
    args = [
        "--bootstrap-servers", opts.bootstrap_servers,
        "--topic", opts.topic,
        "--dest", require_s3(opts.dest, "--dest"),
        "--table", require_s3(opts.table, "--table"),
        "--checkpoint", require_s3(opts.checkpoint, "--checkpoint"),
        "--quarantine-table", require_s3(opts.quarantine_table, "--quarantine-table"),
        "--trigger", opts.trigger,
    ]
    if opts.dead_letter_topic:
        args += ["--dead-letter-topic", opts.dead_letter_topic]
    if opts.sse_kms_key_id:
        args += ["--sse-kms-key-id", opts.sse_kms_key_id]
    for option in KAFKA_SECURITY[opts.kafka_auth]:
        args += ["--kafka-option", option]
    return args + shlex.split(opts.stream_args)


def backfill_arguments(opts: argparse.Namespace) -> list[str]:
    args = [
        "--source", require_s3(opts.backfill_source, "--backfill-source"),
        "--dest", require_s3(opts.dest, "--dest"),
        "--table", require_s3(opts.table, "--table"),
    ]
    if opts.sse_kms_key_id:
        args += ["--sse-kms-key-id", opts.sse_kms_key_id]
    return args + shlex.split(opts.backfill_args)


def jvm_packages(opts: argparse.Namespace, job: str) -> list[str]:
    """Maven coordinates per job; `--jars` replaces them for clusters without Maven Central."""
    if opts.jars:
        return []
    packages = [DELTA_DYNAMODB_LOG_STORE]
    if job == "stream":
        packages = [KAFKA_CONNECTOR, MSK_IAM_AUTH, *packages]
    return packages


def spark_submit(
    release: Release, job: str, name: str, conf: dict[str, str], job_args: list[str],
    opts: argparse.Namespace,
) -> list[str]:
    """The spark-submit command line of one step: cluster mode, bundle, script, arguments."""
    args = ["spark-submit", "--deploy-mode", "cluster", "--master", "yarn", "--name", name,
            "--py-files", release.uri("thumbs.zip")]
    packages = jvm_packages(opts, job)
    if packages:
        args += ["--packages", ",".join(packages)]
    if opts.jars:
        args += ["--jars", opts.jars]
    for key, value in conf.items():
        args += ["--conf", f"{key}={value}"]
    return [*args, release.uri(f"jobs/{job}.py"), *job_args]


def emr_step(name: str, args: list[str]) -> dict[str, Any]:
    return {
        "Name": name,
        "ActionOnFailure": "CONTINUE",
        "HadoopJarStep": {"Jar": "command-runner.jar", "Args": args},
    }


def job_steps(release: Release, opts: argparse.Namespace) -> list[dict[str, Any]]:
    """The stream and/or backfill steps the flags ask for."""
    steps = []
    if opts.stream:
        conf = {**STREAM_CONF, "spark.dynamicAllocation.minExecutors": str(opts.min_executors)}
        args = spark_submit(release, "stream", STREAM_NAME, conf, stream_arguments(opts), opts)
        steps.append(emr_step(STREAM_NAME, args))
    if opts.backfill_source:
        args = spark_submit(
            release, "backfill", BACKFILL_NAME, BACKFILL_CONF, backfill_arguments(opts), opts
        )
        steps.append(emr_step(BACKFILL_NAME, args))
    return steps


def stop_stream_step() -> dict[str, Any]:
    return emr_step(STOP_STREAM_NAME, ["bash", "-c", STOP_STREAM_SCRIPT, STOP_STREAM_NAME,
                                       STREAM_NAME])


# --- EMR on EC2 ---------------------------------------------------------------------------------


def instance_groups(opts: argparse.Namespace) -> list[dict[str, Any]]:
    """Primary and core on demand (the stream's driver lives on core); task nodes scale."""
    return [
        {"Name": "primary", "InstanceRole": "MASTER", "Market": "ON_DEMAND",
         "InstanceType": opts.primary_type, "InstanceCount": 1},
        {"Name": "core", "InstanceRole": "CORE", "Market": "ON_DEMAND",
         "InstanceType": opts.core_type, "InstanceCount": opts.core_count},
        {"Name": "task", "InstanceRole": "TASK", "Market": opts.task_market,
         "InstanceType": opts.task_type, "InstanceCount": 0},
    ]


def managed_scaling(opts: argparse.Namespace) -> dict[str, Any]:
    if not opts.core_count <= opts.min_units <= opts.max_units:
        raise DeployError(
            f"need --core-count ({opts.core_count}) <= --min-units ({opts.min_units}) "
            f"<= --max-units ({opts.max_units})"
        )
    on_demand = opts.core_count if opts.task_market == "SPOT" else opts.max_units
    return {"ComputeLimits": {
        "UnitType": "Instances",
        "MinimumCapacityUnits": opts.min_units,
        "MaximumCapacityUnits": opts.max_units,
        "MaximumCoreCapacityUnits": opts.core_count,
        "MaximumOnDemandCapacityUnits": on_demand,
    }}


def run_job_flow_request(release: Release, opts: argparse.Namespace) -> Request:
    instances: dict[str, Any] = {
        "InstanceGroups": instance_groups(opts),
        "Ec2SubnetId": opts.subnet_id,
        "KeepJobFlowAliveWhenNoSteps": True,
        "TerminationProtected": opts.termination_protection,
    }
    if opts.ec2_key_name:
        instances["Ec2KeyName"] = opts.ec2_key_name
    if opts.additional_security_group:
        instances["AdditionalMasterSecurityGroups"] = opts.additional_security_group
        instances["AdditionalSlaveSecurityGroups"] = opts.additional_security_group
    bootstrap_args = [release.uri("emr/requirements-emr.txt")]
    if opts.wheelhouse_uri:
        bootstrap_args.append(require_s3(opts.wheelhouse_uri, "--wheelhouse-uri"))
    applications = ["Hadoop", "Spark", *(["Livy"] if opts.livy else [])]
    params: dict[str, Any] = {
        "Name": opts.name,
        "ReleaseLabel": RELEASE_LABEL,
        "LogUri": require_s3(opts.log_uri, "--log-uri"),
        "Applications": [{"Name": name} for name in applications],
        "Configurations": load_configurations(opts.region, opts.lock_table),
        "BootstrapActions": [{
            "Name": "thumbs-python-dependencies",
            "ScriptBootstrapAction": {"Path": release.uri("emr/bootstrap.sh"),
                                      "Args": bootstrap_args},
        }],
        "Steps": job_steps(release, opts),
        # The stream's step never ends; without concurrency a backfill would queue behind it.
        "StepConcurrencyLevel": opts.step_concurrency,
        "Instances": instances,
        "ManagedScalingPolicy": managed_scaling(opts),
        "JobFlowRole": opts.instance_profile,
        "ServiceRole": opts.service_role,
        "VisibleToAllUsers": True,
        "Tags": [{"Key": "project", "Value": "thumbs"},
                 {"Key": "thumbs:release", "Value": release.id}],
    }
    if opts.security_configuration:
        params["SecurityConfiguration"] = opts.security_configuration
    return Request("emr", "run_job_flow", params)


def check_cluster_accepts(emr: Any, cluster_id: str, steps: list[dict[str, Any]]) -> None:
    """Refuse a second stream on one cluster, and steps that would queue behind the stream."""
    active = emr.list_steps(ClusterId=cluster_id, StepStates=["PENDING", "RUNNING"])["Steps"]
    running = [step["Id"] for step in active if step["Name"] == STREAM_NAME]
    adding = any(step["Name"] == STREAM_NAME for step in steps)
    if running and adding:
        raise DeployError(
            f"{cluster_id} already runs the stream as step {running[0]}; two queries on one "
            "checkpoint would compete. Stop it with `deploy.py stop-stream` and wait for that step "
            "to end first."
        )
    others = [step for step in steps if step["Name"] != STREAM_NAME]
    if not others or not (running or adding):
        return
    level = emr.describe_cluster(ClusterId=cluster_id)["Cluster"].get("StepConcurrencyLevel", 1)
    if level < 2:
        raise DeployError(
            f"{cluster_id} runs one step at a time and the stream's step never ends, so "
            f"{others[0]['Name']} would wait forever; raise it first: aws emr modify-cluster "
            f"--cluster-id {cluster_id} --step-concurrency-level 4"
        )


# --- EMR Serverless -----------------------------------------------------------------------------


def serverless_submit_parameters(
    release: Release, venv_uri: str, job: str, opts: argparse.Namespace
) -> str:
    """sparkSubmitParameters: the code bundle, the packed venv as the Python, the JVM packages."""
    python = f"./{VENV_ALIAS}/bin/python"
    conf = {
        "spark.archives": f"{venv_uri}#{VENV_ALIAS}",
        "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON": python,
        "spark.emr-serverless.driverEnv.PYSPARK_PYTHON": python,
        "spark.executorEnv.PYSPARK_PYTHON": python,
        "spark.jars": ",".join([SERVERLESS_DELTA_JARS, *([opts.jars] if opts.jars else [])]),
    }
    packages = jvm_packages(opts, job)
    if packages:
        conf["spark.jars.packages"] = ",".join(packages)
    parts = ["--py-files", release.uri("thumbs.zip")]
    for key, value in conf.items():
        parts += ["--conf", f"{key}={value}"]
    return shlex.join(parts)


def serverless_defaults(region: str, lock_table: str) -> dict[str, str]:
    """The cluster's spark-defaults, less what EMR Serverless provides or the venv replaces."""
    conf = spark_defaults(load_configurations(region, lock_table))
    return {k: v for k, v in conf.items() if not k.startswith(SERVERLESS_DROPPED)}


def start_job_run_request(
    release: Release, venv_uri: str, opts: argparse.Namespace
) -> Request:
    streaming = opts.job == "stream"
    job_args = stream_arguments(opts) if streaming else backfill_arguments(opts)
    params: dict[str, Any] = {
        "applicationId": opts.application_id,
        "executionRoleArn": opts.execution_role_arn,
        "name": STREAM_NAME if streaming else BACKFILL_NAME,
        "mode": "STREAMING" if streaming else "BATCH",
        # The same restart policy as on EC2: a failed stream starts again from its checkpoint.
        "retryPolicy": {"maxFailedAttemptsPerHour": 3} if streaming else {"maxAttempts": 2},
        "jobDriver": {"sparkSubmit": {
            "entryPoint": release.uri(f"jobs/{opts.job}.py"),
            "entryPointArguments": job_args,
            "sparkSubmitParameters": serverless_submit_parameters(
                release, venv_uri, opts.job, opts
            ),
        }},
        "configurationOverrides": {
            "applicationConfiguration": [{
                "classification": "spark-defaults",
                "properties": serverless_defaults(opts.region, opts.lock_table),
            }],
            "monitoringConfiguration": {
                "s3MonitoringConfiguration": {"logUri": require_s3(opts.log_uri, "--log-uri")},
            },
        },
        "tags": {"project": "thumbs", "thumbs:release": release.id},
    }
    if not streaming:
        params["executionTimeoutMinutes"] = opts.timeout_minutes
    return Request("emr-serverless", "start_job_run", params)


def venv_upload(opts: argparse.Namespace) -> tuple[str, list[Request]]:
    """Where the packed venv is, and the upload that puts it there if it is a local file."""
    if opts.venv_uri:
        return require_s3(opts.venv_uri, "--venv-uri"), []
    if not opts.venv_file:
        raise DeployError(
            "EMR Serverless needs the packed virtual environment: build it with "
            "`deploy.py pack-venv` and pass --venv-file, or pass --venv-uri"
        )
    path = Path(opts.venv_file)
    if not path.is_file():
        raise DeployError(f"--venv-file {path} does not exist")
    bucket, prefix = parse_s3_uri(opts.code_uri, "--code-uri")
    digest = _digest(path)
    key = f"{prefix.rstrip('/') + '/' if prefix else ''}venvs/{digest[:16]}/{path.name}"
    request = upload_request(bucket, key, path, digest, opts.code_kms_key_id)
    return f"s3://{bucket}/{key}", [request]


# --- packing the venv ---------------------------------------------------------------------------


def pack_venv_commands(python: str, venv: Path, output: Path) -> list[list[str]]:
    """Make a venv with the node requirements and venv-pack it into a tar.gz for spark.archives."""
    bin_dir = venv / "bin"
    return [
        [python, "-m", "venv", "--clear", str(venv)],
        [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", "--only-binary=:all:",
         "--requirement", str(EMR_DIR / "requirements-emr.txt"), "venv-pack==0.2.0"],
        [str(bin_dir / "venv-pack"), "--prefix", str(venv), "--output", str(output), "--force"],
    ]


def check_pack_host(python: str, architecture: str) -> None:
    """The archive holds native wheels and links to the build host's interpreter: refuse a host
    that does not match the EMR Serverless image (Linux, Python 3.11, the application's CPU)."""
    if not sys.platform.startswith("linux"):
        raise DeployError(f"pack-venv must run on Linux like EMR Serverless, not {sys.platform}")
    machine = {"aarch64": "ARM64", "arm64": "ARM64", "x86_64": "X86_64", "amd64": "X86_64"}
    found = machine.get(platform.machine().lower(), platform.machine())
    if found != architecture:
        raise DeployError(f"this host is {found}; the application is {architecture}")
    probe = "import os, sys; print('%d.%d' % sys.version_info[:2], sys._base_executable)"
    version, base = subprocess.run(
        [python, "-c", probe], check=True, capture_output=True, text=True
    ).stdout.split(maxsplit=1)
    if version != "3.11":
        raise DeployError(f"{python} is Python {version}; emr-spark-8.0.0 runs 3.11")
    if base.strip() != IMAGE_PYTHON:
        print(f"deploy.py pack-venv: warning: the venv's python will link to {base.strip()}, "
              f"which must exist in the EMR Serverless image ({IMAGE_PYTHON} expected); "
              "build in an Amazon Linux 2023 container to match", file=sys.stderr)


def pack_venv(opts: argparse.Namespace, run: Callable[..., Any] = subprocess.run) -> int:
    output = Path(opts.output).resolve()
    commands = pack_venv_commands(opts.python, output.parent / "thumbs-venv-build", output)
    if opts.dry_run:
        print(json.dumps({"dry_run": True, "commands": commands}, indent=2))
        return 0
    check_pack_host(opts.python, opts.architecture)
    output.parent.mkdir(parents=True, exist_ok=True)
    for command in commands:
        run(command, check=True)
    print(json.dumps({"venv_archive": str(output)}))
    return 0


# --- sending ------------------------------------------------------------------------------------


class Sender:
    """Sends requests with boto3's default credential chain, one client per service."""

    def __init__(self, region: str) -> None:
        self.region = region
        self.clients: dict[str, Any] = {}

    def client(self, service: str) -> Any:
        if service not in self.clients:
            import boto3

            self.clients[service] = boto3.client(service, region_name=self.region)
        return self.clients[service]

    def send(self, request: Request) -> dict[str, Any]:
        client = self.client(request.service)
        if request.operation == "upload_file":
            return self._upload(client, request.params)
        response = getattr(client, request.operation)(**request.params)
        return {k: v for k, v in response.items() if k != "ResponseMetadata"}

    @staticmethod
    def _upload(s3: Any, params: dict[str, Any]) -> dict[str, Any]:
        """Releases are content-addressed: an object already there is the same bytes."""
        from botocore.exceptions import ClientError

        try:
            s3.head_object(Bucket=params["Bucket"], Key=params["Key"])
            return {"uploaded": False, "key": params["Key"]}
        except ClientError as error:
            # Without s3:ListBucket (deployer-policy.json grants none) S3 reports a missing
            # object as 403 rather than 404; either way the upload decides.
            code = error.response.get("Error", {}).get("Code")
            if code not in ("404", "NoSuchKey", "NotFound", "403", "Forbidden", "AccessDenied"):
                raise
        s3.upload_file(**params)
        return {"uploaded": True, "key": params["Key"]}


def emit(requests: list[Request], dry_run: bool, sender: Sender | None) -> list[dict[str, Any]]:
    if dry_run:
        print(json.dumps({"dry_run": True, "requests": [r.as_json() for r in requests]},
                         indent=2, default=str))
        return []
    assert sender is not None
    from boto3.exceptions import Boto3Error  # S3 transfers wrap their failures in these
    from botocore.exceptions import BotoCoreError, ClientError

    results = []
    for done, request in enumerate(requests):
        try:
            results.append(sender.send(request))
        except (Boto3Error, BotoCoreError, ClientError) as error:
            raise DeployError(
                f"{request.service} {request.operation} failed after {done} of {len(requests)} "
                f"requests succeeded: {error}"
            ) from error
        print(f"deploy: {request.service} {request.operation} done", file=sys.stderr)
    return results


# --- commands -----------------------------------------------------------------------------------


def command_requests(opts: argparse.Namespace) -> tuple[list[Request], Release | None]:
    """Everything a subcommand will send, in order."""
    if opts.command == "stop-stream":
        steps = [stop_stream_step()]
        return [Request("emr", "add_job_flow_steps",
                        {"JobFlowId": opts.cluster_id, "Steps": steps})], None
    release = build_release(opts.code_uri, Path(opts.build_dir))
    requests = release_uploads(release, opts.code_kms_key_id)
    if opts.command == "create-cluster":
        requests.append(run_job_flow_request(release, opts))
    elif opts.command == "add-steps":
        steps = job_steps(release, opts)
        if not steps:
            raise DeployError("add-steps needs --stream and/or --backfill-source")
        requests.append(Request("emr", "add_job_flow_steps",
                                {"JobFlowId": opts.cluster_id, "Steps": steps}))
    elif opts.command == "serverless":
        venv_uri, uploads = venv_upload(opts)
        requests += uploads
        requests.append(start_job_run_request(release, venv_uri, opts))
    return requests, release


def summary(release: Release | None, results: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if release is not None:
        out["release"] = f"s3://{release.bucket}/{release.prefix}"
        out["uploaded"] = [r["key"] for r in results if r.get("uploaded")]
    last = results[-1] if results else {}
    for key, name in (("JobFlowId", "cluster_id"), ("StepIds", "step_ids"),
                      ("jobRunId", "job_run_id"), ("applicationId", "application_id")):
        if key in last:
            out[name] = last[key]
    return out


def run(opts: argparse.Namespace) -> int:
    if opts.command == "pack-venv":
        return pack_venv(opts)
    if opts.command == "policy":
        return print_policy(opts)
    requests, release = command_requests(opts)
    sender = None if opts.dry_run else Sender(opts.region)
    if sender is not None and opts.command == "add-steps":
        check_cluster_accepts(sender.client("emr"), opts.cluster_id,
                              requests[-1].params["Steps"])
    results = emit(requests, opts.dry_run, sender)
    if not opts.dry_run:
        print(json.dumps(summary(release, results)))
    return 0


def print_policy(opts: argparse.Namespace) -> int:
    path = EMR_DIR / "iam" / f"{opts.document}.json"
    values = {}
    for item in opts.set:
        name, sep, value = item.partition("=")
        if not sep:
            raise DeployError(f"--set takes NAME=VALUE, not {item!r}")
        values[name] = value
    print(json.dumps(substitute(json.loads(path.read_text()), values, path.name), indent=2))
    return 0


# --- flags --------------------------------------------------------------------------------------


def default_region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def add_common(parser: argparse.ArgumentParser, *, release: bool = True) -> None:
    parser.add_argument("--region", default=default_region(),
                        help="AWS region (default: AWS_REGION or AWS_DEFAULT_REGION)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the exact requests as JSON and send nothing")
    if release:
        parser.add_argument("--code-uri", required=True,
                            help="s3://bucket/prefix/ under which releases are uploaded")
        parser.add_argument("--code-kms-key-id", help="SSE-KMS key for the uploaded release")
        parser.add_argument("--build-dir", default=str(REPO / "build" / "emr"),
                            help="where the bundle is built (default: %(default)s)")
        parser.add_argument("--lock-table", default="thumbs_delta_log",
                            help="DynamoDB table of Delta's S3 commit lock (default: %(default)s)")


def add_job_flags(parser: argparse.ArgumentParser) -> None:
    jobs = parser.add_argument_group("jobs")
    jobs.add_argument("--stream", action="store_true", help="add the stream step")
    add_job_args(jobs)


def add_job_args(group: Any) -> None:
    group.add_argument("--backfill-source", help="backfill this s3:// prefix (adds the step)")
    group.add_argument("--dest", help="s3:// prefix for thumbnails")
    group.add_argument("--table", help="s3:// URL of the Delta results table")
    group.add_argument("--sse-kms-key-id", help="write thumbnails with SSE-KMS under this key")
    group.add_argument("--bootstrap-servers", help="MSK bootstrap brokers (IAM: port 9098)")
    group.add_argument("--topic", default="pdf-uploads", help="topic (default: %(default)s)")
    group.add_argument("--dead-letter-topic", help="dead-letter topic (default: TOPIC-dlq)")
    group.add_argument("--checkpoint", help="s3:// URL of the stream's checkpoint")
    group.add_argument("--quarantine-table", help="s3:// URL of the quarantine Delta table")
    group.add_argument("--trigger", default="10 seconds",
                       help="stream trigger (default: %(default)s)")
    group.add_argument("--kafka-auth", choices=sorted(KAFKA_SECURITY), default="iam",
                       help="MSK authentication (default: %(default)s)")
    group.add_argument("--min-executors", type=int, default=2,
                       help="executors the stream keeps between batches (default: %(default)s)")
    group.add_argument("--stream-args", default="", help="more stream.py flags, one string")
    group.add_argument("--backfill-args", default="", help="more backfill.py flags, one string")
    group.add_argument("--jars", help="comma-separated s3:// jars instead of --packages "
                       "(Kafka connector, aws-msk-iam-auth, delta-storage-s3-dynamodb)")


def add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster")
    group.add_argument("--name", default="thumbs", help="cluster name (default: %(default)s)")
    group.add_argument("--subnet-id", required=True, help="private subnet that reaches MSK")
    group.add_argument("--log-uri", required=True, help="s3:// prefix for EMR logs")
    group.add_argument("--instance-profile", default="thumbs-emr-job",
                       help="EC2 instance profile with the job role (default: %(default)s)")
    group.add_argument("--service-role", default="EMR_DefaultRole_V2",
                       help="EMR service role (default: %(default)s)")
    group.add_argument("--primary-type", default="m7g.xlarge")
    group.add_argument("--core-type", default="m7g.4xlarge")
    group.add_argument("--task-type", default="m7g.4xlarge")
    group.add_argument("--task-market", choices=["ON_DEMAND", "SPOT"], default="ON_DEMAND")
    group.add_argument("--core-count", type=int, default=2)
    group.add_argument("--min-units", type=int, default=2,
                       help="managed scaling: fewest core+task instances (default: %(default)s)")
    group.add_argument("--max-units", type=int, default=10,
                       help="managed scaling: most core+task instances (default: %(default)s)")
    group.add_argument("--step-concurrency", type=int, default=4)
    group.add_argument("--ec2-key-name")
    group.add_argument("--additional-security-group", action="append", default=[],
                       help="security group the MSK cluster admits on 9098; repeatable")
    group.add_argument("--security-configuration", help="EMR security configuration name")
    group.add_argument("--wheelhouse-uri", help="s3:// wheels for nodes without PyPI")
    group.add_argument("--livy", action="store_true", help="also install Livy")
    group.add_argument("--no-termination-protection", dest="termination_protection",
                       action="store_false")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deploy.py", description="Deploy the thumbs stream and backfills to Amazon EMR."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    add_common(commands.add_parser("upload", help="upload a release only"))
    create = commands.add_parser("create-cluster", help="upload, then create a cluster")
    add_common(create)
    add_cluster_flags(create)
    add_job_flags(create)
    steps = commands.add_parser("add-steps", help="upload, then add steps to a cluster")
    add_common(steps)
    steps.add_argument("--cluster-id", required=True)
    add_job_flags(steps)
    stop = commands.add_parser("stop-stream", help="kill the stream's YARN application")
    add_common(stop, release=False)
    stop.add_argument("--cluster-id", required=True)
    serverless = commands.add_parser("serverless", help="upload, then start a Serverless run")
    add_common(serverless)
    serverless.add_argument("--application-id", required=True)
    serverless.add_argument("--execution-role-arn", required=True)
    serverless.add_argument("--job", choices=["stream", "backfill"], required=True)
    serverless.add_argument("--log-uri", required=True, help="s3:// prefix for job logs")
    serverless.add_argument("--venv-file", help="local packed venv to upload (pack-venv)")
    serverless.add_argument("--venv-uri", help="s3:// packed venv uploaded before")
    serverless.add_argument("--timeout-minutes", type=int, default=1440,
                            help="backfill run limit (default: %(default)s)")
    add_job_args(serverless.add_argument_group("jobs"))
    pack = commands.add_parser("pack-venv", help="build the packed venv for EMR Serverless")
    pack.add_argument("--output", default=str(REPO / "build" / "thumbs-venv.tar.gz"))
    pack.add_argument("--python", default=sys.executable, help="a Python 3.11 to build with")
    pack.add_argument("--architecture", choices=["ARM64", "X86_64"], default="ARM64")
    pack.add_argument("--dry-run", action="store_true", help="print the commands only")
    policy = commands.add_parser("policy", help="print an emr/iam document, filled in")
    documents = sorted(path.stem for path in (EMR_DIR / "iam").glob("*.json"))
    policy.add_argument("document", choices=documents)
    policy.add_argument("--set", action="append", default=[], metavar="NAME=VALUE")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    opts = parser.parse_args(argv)
    if opts.command not in ("pack-venv", "policy") and not opts.region:
        parser.error("name the AWS region with --region (or set AWS_REGION)")
    try:
        return run(opts)
    except DeployError as error:
        print(f"deploy.py {opts.command}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
