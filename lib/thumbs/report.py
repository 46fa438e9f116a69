"""Print a results table's latest rows and its counts by status: `python -m thumbs.report PATH`."""

from __future__ import annotations

import sys
from pathlib import Path

from thumbs.spark import local_session


def main(argv: list[str]) -> int:
    table = str(Path(argv[0] if argv else "out/results").resolve())
    spark = local_session("thumbs-report", cores=1)
    spark.sparkContext.setLogLevel("ERROR")
    spark.sql(
        f"SELECT job, status, count(*) AS documents FROM delta.`{table}` "
        "GROUP BY job, status ORDER BY job, documents DESC"
    ).show(truncate=False)
    spark.sql(
        f"SELECT source_bucket, source_key, status, error_class, size(thumbnails) AS thumbnails, "
        f"round(render_ms, 1) AS render_ms FROM delta.`{table}` ORDER BY processed_at DESC LIMIT 20"
    ).show(truncate=60)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
