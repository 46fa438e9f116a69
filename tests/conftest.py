"""Shared fixtures: one local SparkSession, a real S3-compatible server, the test PDFs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "lib" / "thumbs" / "samples"
CORPUS = Path(os.environ.get("THUMBS_CORPUS", REPO.parent / "shared" / "corpus"))

# Offline credentials for the local S3 server; boto3 refuses to sign without some.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def offline_aws_environment(
    monkeypatch: pytest.MonkeyPatch, folder: Path, region: str, secret: str = "testing"
) -> None:
    """Fake credentials and a region for moto, and nothing from the machine's AWS configuration."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(folder / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(folder / "no-credentials"))


def corpus_folder(name: str) -> Path:
    """A folder of the shared corpus, or a clean skip where the corpus is not beside the repo."""
    folder = CORPUS / name
    if not folder.is_dir():
        pytest.skip(f"the shared corpus ({folder}) is not present")
    return folder


@pytest.fixture(scope="session")
def sample_files_index() -> dict[str, dict[str, Any]]:
    """`sample-files/files.json`: each corpus file's page count, encryption and so on."""
    folder = corpus_folder("sample-files")
    data = json.loads((folder / "files.json").read_text())["data"]
    return {entry["path"]: entry for entry in data}


@pytest.fixture(scope="session")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from thumbs.spark import local_session

    # Databases the tests create (catalog registration) go under a temporary folder, not the repo.
    warehouse = str(tmp_path_factory.mktemp("warehouse"))
    session = local_session("thumbs-tests", cores=2, **{"spark.sql.warehouse.dir": warehouse})
    session.sparkContext.setLogLevel("WARN")
    yield session
    session.stop()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the S3 server exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the S3 server did not listen on {port} within {seconds}s")


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3-compatible server over real HTTP on a free local port; yields its URL."""
    for key, value in S3_ENV.items():
        os.environ.setdefault(key, value)
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_port(port, process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture()
def s3(s3_server: str) -> Any:
    """A boto3 client for the local S3 server."""
    import boto3

    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")


@pytest.fixture()
def s3_settings(s3_server: str) -> Any:
    from thumbs.storage import S3Settings

    return S3Settings(endpoint_url=s3_server, region="us-east-1", max_attempts=2)


@pytest.fixture()
def bucket(s3: Any, request: pytest.FixtureRequest) -> str:
    """A fresh empty bucket named after the test."""
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-") + f"-{time.time_ns() % 10**6}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Kafka broker (KRaft) started by the project's own script; yields bootstrap servers."""
    data = tmp_path_factory.mktemp("kafka")
    env = {
        **os.environ,
        "KAFKA_PORT": str(_free_port()),
        "KAFKA_CONTROLLER_PORT": str(_free_port()),
        "KAFKA_DATA_DIR": str(data),
    }
    script = str(REPO / "scripts" / "kafka.sh")
    subprocess.run([script, "start"], env=env, check=True, timeout=300, stdout=subprocess.DEVNULL)
    try:
        yield f"127.0.0.1:{env['KAFKA_PORT']}"
    finally:
        subprocess.run([script, "stop"], env=env, timeout=120, stdout=subprocess.DEVNULL)


@pytest.fixture(scope="session")
def sample_results(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a results table built by a real backfill of the bundled samples (two pages each).

    Shared by the query, validation and notebook tests; they read it and never write to it.
    """
    from thumbs.backfill import BackfillConfig, run_backfill
    from thumbs.options import RenderOptions
    from thumbs.storage import S3Settings, parse_location

    work = tmp_path_factory.mktemp("sample-results")
    config = BackfillConfig(
        source=parse_location(str(SAMPLES)), dest=parse_location(str(work / "thumbs")),
        table=str(work / "results"), options=RenderOptions(pages=2), s3=S3Settings(),
    )
    run_backfill(spark, config)
    return config.table
