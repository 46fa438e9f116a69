#!/usr/bin/env bash
# spark-submit for this project, locally and on EMR.
#
#   ./spark-submit.sh [spark-submit options] jobs/backfill.py [job options]
#
# Adds what every job needs: the JVM packages (delta-spark, and the Kafka connector for the
# stream), derived from the installed pyspark and delta-spark versions and resolved once into
# .cache/ivy; the thumbs library zipped and shipped to executors with --py-files; Delta's SQL
# extension and catalog; quiet Spark logging. Locally it first makes .venv (scripts/bootstrap.sh)
# and runs Spark from it.
#
# Environment:
#   THUMBS_PYTHON        Python for the driver and executors (default: .venv/bin/python; on EMR
#                        set it to the cluster's python3 with the dependencies installed)
#   SPARK_SUBMIT         the spark-submit to run (default: the one beside THUMBS_PYTHON, else PATH)
#   THUMBS_JVM_PACKAGES  override the Maven coordinates; set it empty on a cluster that provides
#                        Delta and the Kafka connector itself
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ -z "${THUMBS_PYTHON:-}" ]]; then
    "$root/scripts/bootstrap.sh"
    THUMBS_PYTHON="$root/.venv/bin/python"
fi
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$THUMBS_PYTHON}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$THUMBS_PYTHON}"

submit=${SPARK_SUBMIT:-}
if [[ -z "$submit" ]]; then
    submit="$(dirname "$THUMBS_PYTHON")/spark-submit"
    [[ -x "$submit" ]] || submit=$(command -v spark-submit)
fi

# The stream needs the Kafka connector as well as Delta.
kafka=""
for arg in "$@"; do
    [[ "$arg" == *stream.py ]] && kafka="--kafka"
done
thumbs() { PYTHONPATH="$root/lib" "$THUMBS_PYTHON" -m "$@"; }

# The master this run gets: --master if given, else the one a cluster's spark-defaults.conf names
# (EMR names yarn there), else Spark's own default, local.
spark_master() {
    local previous="" arg
    for arg in "$@"; do
        [[ "$previous" == --master ]] && { echo "$arg"; return; }
        [[ "$arg" == --master=* ]] && { echo "${arg#--master=}"; return; }
        [[ "$arg" == *.py ]] && break
        previous=$arg
    done
    local defaults="${SPARK_CONF_DIR:-${SPARK_HOME:-/nonexistent}/conf}/spark-defaults.conf"
    local configured
    configured=$(awk '$1 == "spark.master" { print $2 }' "$defaults" 2>/dev/null || true)
    echo "${configured:-local}"
}
packages=${THUMBS_JVM_PACKAGES-$(thumbs thumbs.spark packages $kafka)}
bundle=$(thumbs thumbs.bundle "$root/build/thumbs.zip")

options=(--py-files "$bundle" --conf "spark.jars.ivy=$root/.cache/ivy")
[[ -n "$packages" ]] && options+=(--packages "$packages")
while IFS= read -r setting; do
    options+=(--conf "$setting")
done < <(thumbs thumbs.spark conf)
log_config="file:$root/jobs/log4j2.properties"
driver_java="-Dlog4j2.configurationFile=$log_config"
if [[ "$(spark_master "$@")" == local* ]]; then
    # A local driver is also the executor and shares the cores with rendering: JIT settings that
    # cost it less CPU (thumbs.spark.LOCAL_DRIVER_JAVA says which, and the measurements).
    driver_java+=" $(thumbs thumbs.spark local-driver-java)"
fi
options+=(--driver-java-options "$driver_java")
options+=(--conf "spark.executor.extraJavaOptions=-Dlog4j2.configurationFile=$log_config")
options+=(--conf "spark.ui.showConsoleProgress=false")

exec "$submit" "${options[@]}" "$@"
