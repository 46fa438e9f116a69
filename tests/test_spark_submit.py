"""spark-submit.sh: what it adds to a local run and what it leaves to a cluster."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from thumbs.spark import LOCAL_DRIVER_JAVA


def submitted(tmp_path: Path, *args: str, conf_dir: Path | None = None) -> list[str]:
    """The arguments spark-submit.sh hands to spark-submit (a stand-in that prints them)."""
    stand_in = tmp_path / "spark-submit"
    stand_in.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    stand_in.chmod(0o755)
    env = {
        **os.environ, "THUMBS_PYTHON": sys.executable, "SPARK_SUBMIT": str(stand_in),
        "THUMBS_JVM_PACKAGES": "", "SPARK_CONF_DIR": str(conf_dir or tmp_path / "no-conf"),
    }
    done = subprocess.run(
        [str(REPO / "spark-submit.sh"), *args],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def driver_java(arguments: list[str]) -> str:
    return arguments[arguments.index("--driver-java-options") + 1]


@pytest.mark.parametrize("master", [[], ["--master", "local[2]"], ["--master=local[*]"]])
def test_a_local_driver_runs_with_the_quick_jit_tier_only(tmp_path: Path, master: list[str]) -> None:
    arguments = submitted(tmp_path, *master, "jobs/backfill.py", "--dry-run")
    assert LOCAL_DRIVER_JAVA in driver_java(arguments)
    assert "-Dlog4j2.configurationFile=" in driver_java(arguments)
    assert arguments[-2:] == ["jobs/backfill.py", "--dry-run"]


def test_a_cluster_driver_keeps_the_jvms_defaults(tmp_path: Path) -> None:
    arguments = submitted(tmp_path, "--master", "yarn", "jobs/stream.py")
    assert LOCAL_DRIVER_JAVA not in driver_java(arguments)


def test_a_master_named_in_spark_defaults_counts_as_given(tmp_path: Path) -> None:
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "spark-defaults.conf").write_text("spark.master                     yarn\n")
    arguments = submitted(tmp_path, "jobs/backfill.py", conf_dir=conf)
    assert LOCAL_DRIVER_JAVA not in driver_java(arguments)


def test_the_library_travels_to_executors_as_a_zip(tmp_path: Path) -> None:
    arguments = submitted(tmp_path, "jobs/backfill.py")
    bundle = Path(arguments[arguments.index("--py-files") + 1])
    assert bundle.suffix == ".zip" and bundle.is_file()
