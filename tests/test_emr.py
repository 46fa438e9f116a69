"""The EMR kit in emr/: configurations, IAM documents, the bootstrap action, deploy.py's requests
against moto's EMR, EMR Serverless and S3, and the CloudWatch batch metrics.

No Spark and no network: AWS is moto in process, with fake credentials set per test, so a
mistake here can never reach a real account.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from tests.conftest import offline_aws_environment
from thumbs.metrics import batch_metric_data, publish_batch_metrics
from thumbs.options import Limits

REPO = Path(__file__).resolve().parents[1]
EMR = REPO / "emr"
REGION = "eu-west-1"
CODE_BUCKET = "ops-code"
ACCOUNT = "123456789012"  # moto's account


def _load_deploy() -> ModuleType:
    spec = importlib.util.spec_from_file_location("thumbs_emr_deploy", EMR / "deploy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


deploy = _load_deploy()


@pytest.fixture()
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Fake credentials and a region, nothing from the machine's AWS configuration, moto on."""
    offline_aws_environment(monkeypatch, tmp_path, REGION)
    with mock_aws():
        yield


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def code_bucket() -> Any:
    s3 = client("s3")
    s3.create_bucket(Bucket=CODE_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    return s3


def release_flags(tmp_path: Path) -> list[str]:
    return ["--code-uri", f"s3://{CODE_BUCKET}/thumbs/", "--build-dir", str(tmp_path / "build"),
            "--region", REGION]


JOB_FLAGS = [
    "--bootstrap-servers", "b-1.thumbs.kafka.eu-west-1.amazonaws.com:9098",
    "--dest", "s3://thumbs-out/", "--table", "s3://lake/thumbnail_results",
    "--checkpoint", "s3://lake/checkpoints/thumbnails",
    "--quarantine-table", "s3://lake/thumbnail_quarantine",
]
CLUSTER_FLAGS = ["--subnet-id", "subnet-0abc", "--log-uri", "s3://ops-logs/emr/"]


def run_deploy(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
    """deploy.main, then what it printed: parsed JSON (or None) and standard error."""
    code = deploy.main(argv)
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if captured.out.strip() else None, captured.err


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def confs(args: list[str]) -> dict[str, str]:
    pairs = [args[i + 1].split("=", 1) for i, arg in enumerate(args) if arg == "--conf"]
    return {key: value for key, value in pairs}


# --- configurations.json ------------------------------------------------------------------------


def configurations() -> dict[str, dict[str, Any]]:
    return {c["Classification"]: c for c in json.loads((EMR / "configurations.json").read_text())}


def test_configurations_have_the_required_classifications_and_properties() -> None:
    found = configurations()
    assert found["delta-defaults"]["Properties"] == {"delta.enabled": "true"}
    spark = found["spark-defaults"]["Properties"]
    assert spark["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert spark["spark.sql.catalog.spark_catalog"] == (
        "org.apache.spark.sql.delta.catalog.DeltaCatalog"
    )
    assert spark["spark.delta.logStore.s3.impl"] == "io.delta.storage.S3DynamoDBLogStore"
    prefix = "spark.io.delta.storage.S3DynamoDBLogStore.ddb."
    assert spark[prefix + "tableName"] == "${DDB_LOCK_TABLE}"
    assert spark[prefix + "region"] == "${AWS_REGION}"
    assert spark["spark.python.worker.reuse"] == "true"
    assert spark["spark.task.cpus"] == "1"
    assert spark["spark.eventLog.enabled"] == "true"
    assert spark["spark.speculation"] == "false"
    hive = found["spark-hive-site"]["Properties"]
    assert hive["hive.metastore.client.factory.class"] == (
        "com.amazonaws.glue.catalog.metastore.AWSGlueDataCatalogHiveClientFactory"
    )
    (export,) = found["spark-env"]["Configurations"]
    assert export["Classification"] == "export"
    assert export["Properties"]["PYSPARK_PYTHON"] == "/usr/bin/python3"
    assert int(found["yarn-site"]["Properties"]["yarn.resourcemanager.am.max-attempts"]) >= int(
        deploy.STREAM_CONF["spark.yarn.maxAppAttempts"]
    )


def test_executor_memory_leaves_room_for_one_render_child_per_core() -> None:
    spark = configurations()["spark-defaults"]["Properties"]
    cores = int(spark["spark.executor.cores"])
    overhead = deploy._gib(spark["spark.executor.memoryOverhead"])
    child_cap = Limits().memory_bytes / 2**30
    assert overhead >= cores * child_cap, "memoryOverhead must hold a render child per core"
    per_core = (deploy._gib(spark["spark.executor.memory"]) + overhead) / cores
    assert per_core <= 3.5, "m-family nodes give YARN about 3.5 GiB per vCPU"


def test_pyspark_memory_is_left_unset_because_render_children_inherit_its_limit() -> None:
    """Spark turns spark.executor.pyspark.memory into a hard RLIMIT_AS on each Python worker;
    the render child inherits it and cannot raise it to its own 3 x 2 GiB, so it exits at once
    (measured with local Spark: every document `crashed`). deploy.py refuses such a value."""
    spark = configurations()["spark-defaults"]["Properties"]
    assert "spark.executor.pyspark.memory" not in spark
    with pytest.raises(deploy.DeployError, match="render children need 6 GiB"):
        deploy.check_pyspark_memory({"spark.executor.pyspark.memory": "2g",
                                     "spark.executor.cores": "4"})
    deploy.check_pyspark_memory({"spark.executor.pyspark.memory": "24g",
                                 "spark.executor.cores": "4"})


def test_placeholders_are_filled_and_a_missing_value_is_named() -> None:
    filled = deploy.load_configurations(REGION, "locks")
    text = json.dumps(filled)
    assert "${" not in text and '"locks"' in text and REGION in text
    with pytest.raises(deploy.DeployError, match=r"\$\{AWS_REGION\}"):
        deploy.substitute(json.loads((EMR / "configurations.json").read_text()),
                          {"DDB_LOCK_TABLE": "locks"}, "configurations.json")


# --- IAM ----------------------------------------------------------------------------------------

IAM_FILES = sorted((EMR / "iam").glob("*.json"))
STAR_ALLOWED = {
    # AWS offers no resource ARN for these; each must be narrowed by this condition key instead.
    "cloudwatch:PutMetricData": "cloudwatch:namespace",
    "elasticmapreduce:RunJobFlow": "aws:RequestTag/project",
    "elasticmapreduce:AddTags": "aws:RequestTag/project",
}


def statements(path: Path) -> list[dict[str, Any]]:
    document = json.loads(path.read_text())
    assert document["Version"] == "2012-10-17"
    return list(document["Statement"])


def as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


@pytest.mark.parametrize("path", IAM_FILES, ids=lambda p: p.name)
def test_iam_documents_grant_nothing_broad(path: Path) -> None:
    for statement in statements(path):
        assert statement["Effect"] == "Allow" and statement["Sid"]
        actions = as_list(statement["Action"])
        for action in actions:
            _, _, name = action.partition(":")
            assert name and "*" not in action, f"{path.name} {statement['Sid']}: {action}"
        if "*" in as_list(statement.get("Resource", [])):
            for action in actions:
                key = STAR_ALLOWED.get(action)
                assert key, f"{path.name} {statement['Sid']}: {action} on every resource"
                assert key in json.dumps(statement.get("Condition", {})), statement["Sid"]


def job_role() -> list[dict[str, Any]]:
    return statements(EMR / "iam" / "job-role-policy.json")


def granted(action: str) -> list[str]:
    """Every resource the job role grants `action` on."""
    return [r for s in job_role() if action in as_list(s["Action"]) for r in as_list(s["Resource"])]


def test_job_role_covers_what_the_jobs_do() -> None:
    needed = {
        "s3:GetObject", "s3:GetObjectVersion", "s3:ListBucket", "s3:PutObject", "s3:DeleteObject",
        "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query",
        "kafka-cluster:Connect", "kafka-cluster:DescribeTopic", "kafka-cluster:ReadData",
        "kafka-cluster:DescribeGroup", "kafka-cluster:AlterGroup", "kafka-cluster:WriteData",
        "kms:GenerateDataKey", "kms:Decrypt", "cloudwatch:PutMetricData", "sns:Publish",
        "glue:CreateTable", "glue:GetTable",
    }
    actions = {a for s in job_role() for a in as_list(s["Action"])}
    assert needed <= actions
    # The operator creates the lock table (emr/README.md); the jobs never drop or delete tables,
    # and create only the catalog entry of --catalog-table, in its own database.
    assert not {a for a in actions if re.search(r"Delete(Table|Item|Database)|\bDrop|Update", a)}
    creates = [s for s in job_role() if any("Create" in a for a in as_list(s["Action"]))]
    assert [s["Sid"] for s in creates] == ["GlueRegisterResultsTable"]
    assert all("${GLUE_DATABASE}" in r or r.endswith(":catalog") for r in creates[0]["Resource"])
    assert granted("sns:Publish") == ["arn:aws:sns:${AWS_REGION}:${ACCOUNT_ID}:${SNS_TOPIC}"]


def test_job_role_reads_the_source_topic_and_writes_only_the_dead_letter_topic() -> None:
    cluster = "${MSK_CLUSTER_NAME}/${MSK_CLUSTER_UUID}"
    assert granted("kafka-cluster:ReadData") == [
        f"arn:aws:kafka:${{AWS_REGION}}:${{ACCOUNT_ID}}:topic/{cluster}/${{TOPIC}}"
    ]
    assert [r.rsplit("/", 1)[-1] for r in granted("kafka-cluster:WriteData")] == ["${DLQ_TOPIC}"]
    assert all(r.startswith("arn:aws:s3:::${THUMBNAIL_BUCKET}/") or "${LAKE_BUCKET}" in r
               for r in granted("s3:DeleteObject"))
    assert not any("${SOURCE_BUCKET}" in r for r in granted("s3:PutObject"))


def test_every_placeholder_is_documented_and_the_policy_command_fills_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    readme = (EMR / "README.md").read_text()
    text = (EMR / "iam" / "job-role-policy.json").read_text()
    names = sorted(set(deploy.PLACEHOLDER.findall(text)))
    assert [n for n in names if f"`{n}`" not in readme] == []
    values = [f"{name}=value-{i}" for i, name in enumerate(names)]
    code, policy, _ = run_deploy(
        ["policy", "job-role-policy", *(x for v in values for x in ("--set", v))], capsys
    )
    assert code == 0 and "${" not in json.dumps(policy)
    code, _, err = run_deploy(["policy", "job-role-policy", "--set", "TOPIC=uploads"], capsys)
    assert code == 2 and "${SOURCE_BUCKET}" in err


@pytest.mark.parametrize("readme", ["README.md", "serverless/README.md"])
def test_every_file_the_emr_readmes_name_exists(readme: str) -> None:
    text = (EMR / readme).read_text()
    named = set(re.findall(r"`((?:emr|lib|tests|jobs|scripts)/[\w./-]+|constraints\.txt)`", text))
    assert len(named) > 3
    assert sorted(name for name in named if not (REPO / name).exists()) == []


# --- the bootstrap action and the node requirements ---------------------------------------------

BOOTSTRAP = EMR / "bootstrap.sh"


def test_bootstrap_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(BOOTSTRAP)], check=True)


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_bootstrap_passes_shellcheck() -> None:
    result = subprocess.run(["shellcheck", str(BOOTSTRAP)], check=False, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


def fake_node(tmp_path: Path, python_version: str) -> tuple[dict[str, str], Path]:
    """Stand-ins for `aws` and the node's python3 that record what the bootstrap asks of them."""
    bin_dir, store, log = tmp_path / "bin", tmp_path / "s3", tmp_path / "calls.log"
    bin_dir.mkdir()
    (store / "ops-code" / "r").mkdir(parents=True)
    shutil.copy(EMR / "requirements-emr.txt", store / "ops-code" / "r" / "requirements-emr.txt")
    aws = f'''#!/usr/bin/env bash
echo "aws $*" >> {log}
source="${{@: -2:1}}"; target="${{@: -1}}"
cp "{store}/${{source#s3://}}" "$target"
'''
    python = f'''#!/usr/bin/env bash
if [[ "$1" == -c && "$2" == *version_info* ]]; then echo {python_version}; exit 0; fi
if [[ "$1" == -c && "$2" == *EXTERNALLY-MANAGED* ]]; then exit 1; fi
if [[ "$1" == -c ]]; then echo "imports ok"; exit 0; fi
if [[ "$3" == --version ]]; then echo "pip 25"; exit 0; fi
echo "python $*" >> {log}
requirements="${{@: -1}}"
cat "$requirements" >> {log}
'''
    for name, body in (("aws", aws), ("python3", python)):
        (bin_dir / name).write_text(body)
        (bin_dir / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
           "THUMBS_NODE_PYTHON": str(bin_dir / "python3")}
    return env, log


def test_bootstrap_installs_the_requirements_from_s3_as_wheels_only(tmp_path: Path) -> None:
    env, log = fake_node(tmp_path, "3.11")
    result = subprocess.run(
        ["bash", str(BOOTSTRAP), "s3://ops-code/r/requirements-emr.txt"],
        check=False, env=env, capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    calls = log.read_text()
    assert "aws s3 cp --only-show-errors s3://ops-code/r/requirements-emr.txt" in calls
    install = next(line for line in calls.splitlines() if line.startswith("python "))
    assert "-m pip install" in install and "--only-binary=:all:" in install
    assert "pypdfium2==5.15.2" in calls
    assert not re.search(r"^(pyspark|delta-spark)", calls, re.MULTILINE)


def test_bootstrap_refuses_a_python_other_than_3_11(tmp_path: Path) -> None:
    env, log = fake_node(tmp_path, "3.9")
    result = subprocess.run(["bash", str(BOOTSTRAP), "s3://ops-code/r/requirements-emr.txt"],
                            check=False, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "Python 3.9; the jobs need 3.11" in result.stderr
    assert not log.exists()


def requirement_pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version
    return pins


def canonical(name: str) -> str:
    """A package name as pip compares them: case and `-`, `_`, `.` do not matter."""
    return re.sub(r"[-_.]+", "-", name).lower()


def test_node_requirements_are_the_runtime_dependencies_pinned_as_in_constraints() -> None:
    emr = requirement_pins(EMR / "requirements-emr.txt")
    constraints = requirement_pins(REPO / "constraints.txt")
    assert all(version for version in emr.values()), "every node requirement is pinned"
    assert {name: constraints.get(name) for name in emr} == emr
    runtime = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {canonical(re.split(r"[<>=!~ ]", spec, maxsplit=1)[0]) for spec in runtime}
    assert names - {"pyspark", "delta-spark"} <= set(emr)
    assert not {"pyspark", "delta-spark", "py4j"} & set(emr)


# --- deploy.py against moto ---------------------------------------------------------------------


def test_create_cluster_uploads_the_release_and_starts_the_stream_and_a_backfill(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = code_bucket()
    code, out, err = run_deploy(
        ["create-cluster", *release_flags(tmp_path), *CLUSTER_FLAGS, "--stream", *JOB_FLAGS,
         "--backfill-source", "s3://docs/2024/", "--sse-kms-key-id", "alias/thumbs"], capsys
    )
    assert code == 0, err
    release = out["release"]
    prefix = release.removeprefix(f"s3://{CODE_BUCKET}/")
    assert re.fullmatch(r"thumbs/releases/[0-9a-f]{16}/", prefix)

    keys = {item["Key"] for item in s3.list_objects_v2(Bucket=CODE_BUCKET)["Contents"]}
    expected = {"thumbs.zip", "jobs/stream.py", "jobs/backfill.py", "jobs/validate.py",
                "jobs/maintain.py", "emr/bootstrap.sh",
                "emr/requirements-emr.txt"}
    assert keys == {prefix + key for key in expected}
    bundle = s3.get_object(Bucket=CODE_BUCKET, Key=prefix + "thumbs.zip")["Body"].read()
    (tmp_path / "got.zip").write_bytes(bundle)
    assert {"thumbs/stream.py", "thumbs/metrics.py"} <= set(
        zipfile.ZipFile(tmp_path / "got.zip").namelist()
    )

    emr = client("emr")
    cluster = emr.describe_cluster(ClusterId=out["cluster_id"])["Cluster"]
    assert cluster["ReleaseLabel"] == "emr-spark-8.0.0"
    assert {app["Name"] for app in cluster["Applications"]} == {"Hadoop", "Spark"}
    assert cluster["StepConcurrencyLevel"] == 4
    assert cluster["LogUri"] == "s3://ops-logs/emr/"
    assert cluster["Ec2InstanceAttributes"]["IamInstanceProfile"] == "thumbs-emr-job"
    applied = {c["Classification"]: c for c in cluster["Configurations"]}
    spark = applied["spark-defaults"]["Properties"]
    assert spark["spark.io.delta.storage.S3DynamoDBLogStore.ddb.region"] == REGION
    assert spark["spark.io.delta.storage.S3DynamoDBLogStore.ddb.tableName"] == "thumbs_delta_log"
    assert "${" not in json.dumps(cluster["Configurations"])

    (bootstrap,) = emr.list_bootstrap_actions(ClusterId=out["cluster_id"])["BootstrapActions"]
    assert bootstrap["ScriptPath"] == release + "emr/bootstrap.sh"
    assert bootstrap["Args"] == [release + "emr/requirements-emr.txt"]

    steps = {s["Name"]: s for s in emr.list_steps(ClusterId=out["cluster_id"])["Steps"]}
    assert set(steps) == {"thumbs-stream", "thumbs-backfill"}
    for step in steps.values():
        assert step["ActionOnFailure"] == "CONTINUE"
        assert step["Config"]["Jar"] == "command-runner.jar"
        args = step["Config"]["Args"]
        assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
        assert flag(args, "--py-files") == release + "thumbs.zip"

    stream = steps["thumbs-stream"]["Config"]["Args"]
    script = stream.index(release + "jobs/stream.py")
    submit, job = stream[:script], stream[script + 1 :]
    assert flag(submit, "--name") == "thumbs-stream"
    assert "software.amazon.msk:aws-msk-iam-auth:2.4.0" in flag(submit, "--packages")
    assert "spark-sql-kafka-0-10_2.13" in flag(submit, "--packages")
    assert confs(submit)["spark.yarn.maxAppAttempts"] == "4"
    assert confs(submit)["spark.yarn.am.attemptFailuresValidityInterval"] == "1h"
    assert flag(job, "--bootstrap-servers") == "b-1.thumbs.kafka.eu-west-1.amazonaws.com:9098"
    assert flag(job, "--checkpoint") == "s3://lake/checkpoints/thumbnails"
    assert flag(job, "--sse-kms-key-id") == "alias/thumbs"
    kafka = [job[i + 1] for i, arg in enumerate(job) if arg == "--kafka-option"]
    assert "kafka.sasl.mechanism=AWS_MSK_IAM" in kafka
    assert ("kafka.sasl.jaas.config=software.amazon.msk.auth.iam.IAMLoginModule required;"
            in kafka)

    backfill = steps["thumbs-backfill"]["Config"]["Args"]
    script = backfill.index(release + "jobs/backfill.py")
    assert backfill[script + 1 :] == [
        "--source", "s3://docs/2024/", "--dest", "s3://thumbs-out/",
        "--table", "s3://lake/thumbnail_results", "--sse-kms-key-id", "alias/thumbs",
    ]
    assert "--kafka-option" not in backfill


def test_uploading_the_same_release_again_sends_nothing_new(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code_bucket()
    first = run_deploy(["upload", *release_flags(tmp_path)], capsys)
    again = run_deploy(["upload", *release_flags(tmp_path)], capsys)
    assert first[0] == again[0] == 0
    assert first[1]["release"] == again[1]["release"]
    assert len(first[1]["uploaded"]) == 7 and again[1]["uploaded"] == []


def test_an_aws_error_names_the_call_and_what_was_already_done(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_deploy(["upload", *release_flags(tmp_path)], capsys)  # no such bucket
    assert code == 2
    assert "s3 upload_file failed after 0 of 7 requests succeeded" in err
    assert "NoSuchBucket" in err and "Traceback" not in err


def running_cluster(concurrency: int, steps: list[dict[str, Any]] | None = None) -> str:
    return str(client("emr").run_job_flow(
        Name="existing", ReleaseLabel="emr-spark-8.0.0", JobFlowRole="thumbs-emr-job",
        ServiceRole="EMR_DefaultRole_V2", StepConcurrencyLevel=concurrency, Steps=steps or [],
        Instances={"MasterInstanceType": "m7g.xlarge", "SlaveInstanceType": "m7g.4xlarge",
                   "InstanceCount": 3, "KeepJobFlowAliveWhenNoSteps": True},
    )["JobFlowId"])


def test_add_steps_puts_a_backfill_on_a_running_cluster(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code_bucket()
    cluster_id = running_cluster(4)
    code, out, err = run_deploy(
        ["add-steps", *release_flags(tmp_path), "--cluster-id", cluster_id,
         "--backfill-source", "s3://docs/2024/", *JOB_FLAGS,
         "--backfill-args", "--sizes 128,256 --since 2024-06-01"], capsys
    )
    assert code == 0, err
    (step,) = client("emr").list_steps(ClusterId=cluster_id)["Steps"]
    assert out["step_ids"] == [step["Id"]] and step["Name"] == "thumbs-backfill"
    args = step["Config"]["Args"]
    assert args[args.index(out["release"] + "jobs/backfill.py") + 1 :][-4:] == [
        "--sizes", "128,256", "--since", "2024-06-01"
    ]


def test_add_steps_refuses_a_second_stream_and_steps_that_would_wait_forever(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code_bucket()
    stream = deploy.emr_step(deploy.STREAM_NAME, ["spark-submit", "stream.py"])
    busy = running_cluster(4, [stream])
    code, _, err = run_deploy(
        ["add-steps", *release_flags(tmp_path), "--cluster-id", busy, "--stream", *JOB_FLAGS],
        capsys,
    )
    assert code == 2 and "already runs the stream" in err
    serial = running_cluster(1, [stream])
    code, _, err = run_deploy(
        ["add-steps", *release_flags(tmp_path), "--cluster-id", serial,
         "--backfill-source", "s3://docs/", *JOB_FLAGS], capsys,
    )
    assert code == 2 and "--step-concurrency-level" in err
    assert len(client("emr").list_steps(ClusterId=serial)["Steps"]) == 1


def test_stop_stream_adds_a_step_that_kills_only_the_streams_yarn_application(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cluster_id = running_cluster(4)
    code, _, err = run_deploy(["stop-stream", "--cluster-id", cluster_id, "--region", REGION],
                              capsys)
    assert code == 0, err
    (step,) = client("emr").list_steps(ClusterId=cluster_id)["Steps"]
    assert step["Name"] == "thumbs-stop-stream" and step["Config"]["Jar"] == "command-runner.jar"

    # Run the step's command with a stand-in for `yarn` listing two applications.
    bin_dir, log = tmp_path / "bin", tmp_path / "kills.log"
    bin_dir.mkdir()
    (bin_dir / "yarn").write_text(f"""#!/usr/bin/env bash
if [[ "$2" == -list ]]; then
  echo "Total number of applications (application-types: [], states: [RUNNING]):2"
  printf 'Application-Id\\tApplication-Name\\tApplication-Type\\tUser\\tQueue\\tState\\n'
  printf 'application_17_0001\\tthumbs-stream\\tSPARK\\thadoop\\tdefault\\tRUNNING\\n'
  printf 'application_17_0002\\tthumbs-backfill\\tSPARK\\thadoop\\tdefault\\tRUNNING\\n'
else echo "$*" >> {log}; fi
""")
    (bin_dir / "yarn").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(step["Config"]["Args"], env=env, check=True, timeout=30)
    assert log.read_text() == "application -kill application_17_0001\n"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_the_stop_stream_command_passes_shellcheck(tmp_path: Path) -> None:
    script = tmp_path / "stop-stream.sh"
    script.write_text("#!/usr/bin/env bash\n" + deploy.STOP_STREAM_SCRIPT + "\n")
    result = subprocess.run(["shellcheck", str(script)], check=False, capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout


def test_serverless_starts_a_job_run_with_the_packed_venv_and_the_bundle(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = code_bucket()
    serverless = client("emr-serverless")
    # moto accepts only the classic emr-X.Y.0 label form; the real application runs
    # emr-spark-8.0.0 (emr/serverless/README.md).
    app = serverless.create_application(name="thumbs", releaseLabel="emr-7.9.0", type="SPARK")
    venv = tmp_path / "thumbs-venv.tar.gz"
    venv.write_bytes(b"stands in for the packed venv: the upload is what is tested")
    code, out, err = run_deploy(
        ["serverless", *release_flags(tmp_path), "--application-id", app["applicationId"],
         "--execution-role-arn", f"arn:aws:iam::{ACCOUNT}:role/thumbs-job", "--job", "stream",
         "--log-uri", "s3://ops-logs/serverless/", "--venv-file", str(venv), *JOB_FLAGS], capsys
    )
    assert code == 0, err
    run = serverless.get_job_run(applicationId=app["applicationId"],
                                 jobRunId=out["job_run_id"])["jobRun"]
    driver = run["jobDriver"]["sparkSubmit"]
    assert driver["entryPoint"] == out["release"] + "jobs/stream.py"
    assert flag(driver["entryPointArguments"], "--topic") == "pdf-uploads"
    parameters = shlex.split(driver["sparkSubmitParameters"])
    assert flag(parameters, "--py-files") == out["release"] + "thumbs.zip"
    conf = confs(parameters)
    archive, _, alias = conf["spark.archives"].partition("#")
    assert alias == "environment" and archive.endswith("/thumbs-venv.tar.gz")
    assert s3.head_object(Bucket=CODE_BUCKET, Key=archive.removeprefix(f"s3://{CODE_BUCKET}/"))
    for key in ("spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON",
                "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
                "spark.executorEnv.PYSPARK_PYTHON"):
        assert conf[key] == "./environment/bin/python"
    assert "software.amazon.msk:aws-msk-iam-auth:2.4.0" in conf["spark.jars.packages"]
    overrides = run["configurationOverrides"]
    (defaults,) = overrides["applicationConfiguration"]
    assert defaults["properties"]["spark.sql.extensions"] == (
        "io.delta.sql.DeltaSparkSessionExtension"
    )
    assert not any(k.startswith("spark.pyspark.") for k in defaults["properties"])
    logs = overrides["monitoringConfiguration"]["s3MonitoringConfiguration"]
    assert logs["logUri"] == "s3://ops-logs/serverless/"


def test_serverless_without_a_packed_venv_says_how_to_make_one(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_deploy(
        ["serverless", *release_flags(tmp_path), "--application-id", "00abc",
         "--execution-role-arn", f"arn:aws:iam::{ACCOUNT}:role/thumbs-job", "--job", "backfill",
         "--log-uri", "s3://ops-logs/serverless/", "--backfill-source", "s3://docs/",
         *JOB_FLAGS], capsys
    )
    assert code == 2 and "pack-venv" in err


def test_dry_run_prints_every_request_as_json_and_sends_nothing(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a dry run made an AWS client")

    venv = tmp_path / "thumbs-venv.tar.gz"
    venv.write_bytes(b"venv")
    role = f"arn:aws:iam::{ACCOUNT}:role/thumbs-job"
    commands = {
        "create-cluster": [*CLUSTER_FLAGS, "--stream", *JOB_FLAGS],
        "add-steps": ["--cluster-id", "j-ABC", "--backfill-source", "s3://docs/", *JOB_FLAGS],
        "serverless": ["--application-id", "00abc", "--execution-role-arn", role,
                       "--job", "stream", "--log-uri", "s3://l/", "--venv-file", str(venv),
                       *JOB_FLAGS],
        "upload": [],
    }
    with monkeypatch.context() as patch:
        patch.setattr(boto3, "client", refuse)
        patch.setattr(boto3.session.Session, "client", refuse)
        printed = {}
        for command, flags in commands.items():
            code, out, err = run_deploy([command, "--dry-run", *release_flags(tmp_path), *flags],
                                        capsys)
            assert code == 0, err
            assert out["dry_run"] is True
            printed[command] = [(r["service"], r["operation"]) for r in out["requests"]]
            if command == "create-cluster":
                cluster = out["requests"][-1]["params"]
        code, stop, _ = run_deploy(
            ["stop-stream", "--dry-run", "--cluster-id", "j-ABC", "--region", REGION], capsys
        )
    uploads = [("s3", "upload_file")] * 7
    assert printed == {
        "create-cluster": [*uploads, ("emr", "run_job_flow")],
        "add-steps": [*uploads, ("emr", "add_job_flow_steps")],
        "serverless": [*uploads, ("s3", "upload_file"), ("emr-serverless", "start_job_run")],
        "upload": uploads,
    }
    assert stop["requests"][0]["params"]["JobFlowId"] == "j-ABC"
    assert cluster["ManagedScalingPolicy"]["ComputeLimits"] == {
        "UnitType": "Instances", "MinimumCapacityUnits": 2, "MaximumCapacityUnits": 10,
        "MaximumCoreCapacityUnits": 2, "MaximumOnDemandCapacityUnits": 10,
    }
    assert cluster["ServiceRole"] == "EMR_DefaultRole_V2"
    assert cluster["Instances"]["Ec2SubnetId"] == "subnet-0abc"
    # Nothing reached the (mocked) account.
    assert client("s3").list_buckets()["Buckets"] == []
    assert client("emr").list_clusters()["Clusters"] == []


def test_bad_flags_are_named(
    aws: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["create-cluster", "--dry-run", *release_flags(tmp_path), *CLUSTER_FLAGS]
    code, _, err = run_deploy([*base, "--stream", *JOB_FLAGS[:-2]], capsys)
    assert code == 2 and "--quarantine-table must be an s3:// URL" in err
    code, _, err = run_deploy([*base, "--backfill-source", "/local/docs", *JOB_FLAGS], capsys)
    assert code == 2 and "--backfill-source must be an s3:// URL" in err
    code, _, err = run_deploy([*base, "--min-units", "1"], capsys)
    assert code == 2 and "--core-count (2) <= --min-units (1)" in err
    code, _, err = run_deploy(["upload", "--code-uri", "ops-code/thumbs", "--region", REGION],
                              capsys)
    assert code == 2 and "--code-uri must be an s3://bucket/prefix URL" in err


def test_pack_venv_builds_a_venv_from_the_node_requirements_and_packs_it(tmp_path: Path) -> None:
    architecture = "ARM64" if os.uname().machine in ("aarch64", "arm64") else "X86_64"
    output = tmp_path / "thumbs-venv.tar.gz"
    opts = deploy.build_parser().parse_args(
        ["pack-venv", "--output", str(output), "--architecture", architecture]
    )
    ran: list[list[str]] = []
    assert deploy.pack_venv(opts, run=lambda command, check: ran.append(command)) == 0
    venv = tmp_path / "thumbs-venv-build"
    assert ran[0][1:] == ["-m", "venv", "--clear", str(venv)]
    assert str(EMR / "requirements-emr.txt") in ran[1] and "venv-pack==0.2.0" in ran[1]
    assert ran[2] == [str(venv / "bin" / "venv-pack"), "--prefix", str(venv),
                      "--output", str(output), "--force"]
    other = "X86_64" if architecture == "ARM64" else "ARM64"
    with pytest.raises(deploy.DeployError, match=f"the application is {other}"):
        deploy.check_pack_host(opts.python, other)


# --- CloudWatch metrics -------------------------------------------------------------------------


def metric_sum(cloudwatch: Any, name: str, dimensions: dict[str, str]) -> float:
    now = dt.datetime.now(dt.UTC)
    stats = cloudwatch.get_metric_statistics(
        Namespace="Thumbs/Test", MetricName=name,
        Dimensions=[{"Name": k, "Value": v} for k, v in dimensions.items()],
        StartTime=now - dt.timedelta(minutes=10), EndTime=now + dt.timedelta(minutes=10),
        Period=60, Statistics=["Sum"],
    )
    return float(sum(point["Sum"] for point in stats["Datapoints"]))


def test_publish_batch_metrics_reaches_cloudwatch_with_job_and_status_dimensions(
    aws: None,
) -> None:
    cloudwatch = client("cloudwatch")
    sent = publish_batch_metrics(
        "Thumbs/Test", "stream", 41, documents=12, pages=30,
        failures={"timeout": 2, "corrupt": 1}, seconds=6.5, client=cloudwatch,
    )
    assert sent == 6
    listed = cloudwatch.list_metrics(Namespace="Thumbs/Test")["Metrics"]
    found = {(m["MetricName"], frozenset((d["Name"], d["Value"]) for d in m["Dimensions"]))
             for m in listed}
    job = ("Job", "stream")
    assert found == {
        ("Documents", frozenset({job})), ("Pages", frozenset({job})),
        ("BatchSeconds", frozenset({job})), ("Failures", frozenset({job})),
        ("Failures", frozenset({job, ("Status", "timeout")})),
        ("Failures", frozenset({job, ("Status", "corrupt")})),
    }
    assert metric_sum(cloudwatch, "Documents", {"Job": "stream"}) == 12
    assert metric_sum(cloudwatch, "Pages", {"Job": "stream"}) == 30
    assert metric_sum(cloudwatch, "BatchSeconds", {"Job": "stream"}) == 6.5
    assert metric_sum(cloudwatch, "Failures", {"Job": "stream", "Status": "timeout"}) == 2
    assert metric_sum(cloudwatch, "Failures", {"Job": "stream", "Status": "corrupt"}) == 1
    # The Status-less total is not asked for here: moto matches dimensions as a subset, so it
    # would add the per-status data too (CloudWatch matches them exactly). Its value is checked
    # in the datum itself and, with no failures, against moto below.
    totals = [d["Value"] for d in batch_metric_data("stream", 12, 30, {"timeout": 2, "corrupt": 1},
                                                     6.5) if len(d["Dimensions"]) == 1]
    assert totals == [12, 30, 3, 6.5]


def test_publish_batch_metrics_makes_its_own_client_and_sends_zero_failures(aws: None) -> None:
    assert publish_batch_metrics("Thumbs/Test", "backfill", 0, 5, 5, {}, 1.0) == 4
    cloudwatch = client("cloudwatch")
    assert metric_sum(cloudwatch, "Failures", {"Job": "backfill"}) == 0
    assert metric_sum(cloudwatch, "Documents", {"Job": "backfill"}) == 5


def test_batch_metrics_refuse_what_cloudwatch_would_misfile() -> None:
    with pytest.raises(ValueError, match="custom namespace"):
        publish_batch_metrics("AWS/EMR", "stream", 1, 1, 1, {}, 1.0, client=object())
    with pytest.raises(ValueError, match="pages must not be negative"):
        batch_metric_data("stream", 1, -1, {}, 1.0)
    with pytest.raises(ValueError, match="'timeout': -2"):
        batch_metric_data("stream", 1, 1, {"timeout": -2}, 1.0)
    units = {d["MetricName"]: d["Unit"] for d in batch_metric_data("stream", 1, 1, {}, 2.0)}
    assert units == {"Documents": "Count", "Pages": "Count", "Failures": "Count",
                     "BatchSeconds": "Seconds"}
