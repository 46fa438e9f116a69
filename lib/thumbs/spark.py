"""Spark wiring: the JVM packages the jobs need, and sessions for local runs and tests.

Package coordinates are derived from the installed Python packages' versions, so pyspark,
delta-spark and the jars can never drift apart. `python -m thumbs.spark packages` prints them for
`spark-submit.sh`.
"""

from __future__ import annotations

import os
import sys
from importlib.metadata import version
from pathlib import Path

SCALA_BINARY = "2.13"
"""Spark 4 is built for Scala 2.13 only."""

DELTA_CONF: dict[str, str] = {
    "spark.sql.extensions": "io.delta.sql.DeltaSparkSessionExtension",
    "spark.sql.catalog.spark_catalog": "org.apache.spark.sql.delta.catalog.DeltaCatalog",
}

LOCAL_DRIVER_JAVA = "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=240m"
"""JVM options for a local driver, which is also the executor and shares the cores with rendering.

Only the JIT's quick tier: the optimising tier's compilations cost more CPU than they save on this
light JVM work (the JVM's share in benchmarks/spark_bench.py fell from 8.8 to 4.8 core-seconds,
and the test suite ran in 412 s instead of 496 s on 2 cores). With the quick tier alone the JVM
would shrink its code cache to 48 MB, which a long session fills ("Out of space in CodeCache for
adapters"), so it keeps the 240 MB it has by default. Clusters keep the JVM's defaults.
"""

LOCAL_CONF: dict[str, str] = {
    "spark.driver.extraJavaOptions": LOCAL_DRIVER_JAVA,
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.databricks.delta.snapshotPartitions": "2",
}


def kafka_connector_version(spark_version: str) -> str:
    """The Kafka connector release to pair with a Spark release: the same minor line, patch 0.

    The connector's 4.0.1 and 4.0.2 releases depend on `spark-token-provider-kafka` releases that
    Maven Central, as our machines reach it, does not serve, so resolution fails; 4.0.0 resolves
    completely and speaks the same protocol to the same Spark 4.0 line. The EMR steps use the
    same coordinates (emr/deploy.py).
    """
    major, minor, *_ = spark_version.split(".")
    return f"{major}.{minor}.0"


def jvm_packages(*, kafka: bool = False) -> list[str]:
    """Maven coordinates of the connectors matching the installed pyspark and delta-spark."""
    packages = [f"io.delta:delta-spark_{SCALA_BINARY}:{version('delta-spark')}"]
    if kafka:
        connector = kafka_connector_version(version("pyspark"))
        packages.append(f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY}:{connector}")
    return packages


def ivy_cache() -> str:
    """Where resolved jars are kept between runs: the repository's ignored `.cache/ivy`."""
    default = Path(__file__).resolve().parents[2] / ".cache" / "ivy"
    return os.environ.get("THUMBS_IVY_CACHE", str(default))


def local_session(app_name: str = "thumbs", *, kafka: bool = False, cores: int = 2, **conf: str):  # type: ignore[no-untyped-def]
    """A local SparkSession with Delta (and optionally Kafka), for tests, notebooks, benchmarks."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(f"local[{cores}]")
        .appName(app_name)
        .config("spark.jars.packages", ",".join(jvm_packages(kafka=kafka)))
        .config("spark.jars.ivy", ivy_cache())
        .config("spark.ui.enabled", "false")
    )
    for key, value in {**DELTA_CONF, **LOCAL_CONF, **conf}.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def tune_for_small_batches(spark) -> None:  # type: ignore[no-untyped-def]
    """Fit shuffles to the cluster unless the user chose: Spark's default of 200 partitions
    turns each small grouping of a micro-batch or wave into 200 tasks."""
    if spark.conf.get("spark.sql.shuffle.partitions") == "200":
        parallelism = spark.sparkContext.defaultParallelism
        spark.conf.set("spark.sql.shuffle.partitions", str(max(2, 2 * parallelism)))


def job_session(run_id: str):  # type: ignore[no-untyped-def]
    """The session a job runs in, configured by spark-submit, named after the run."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName(f"thumbs-{run_id}").getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    tune_for_small_batches(spark)
    return spark


def main(argv: list[str]) -> int:
    if argv[:1] == ["packages"]:
        print(",".join(jvm_packages(kafka="--kafka" in argv)))
        return 0
    if argv[:1] == ["conf"]:
        for key, value in DELTA_CONF.items():
            print(f"{key}={value}")
        return 0
    if argv[:1] == ["local-driver-java"]:
        print(LOCAL_DRIVER_JAVA)
        return 0
    print("usage: python -m thumbs.spark packages [--kafka] | conf | local-driver-java", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
