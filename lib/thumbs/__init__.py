"""thumbs: PDF thumbnails on Spark, from S3 or local folders, with a Delta results ledger.

Modules, in the order data flows through them: `storage` lists and fetches documents and writes
thumbnails, `render` turns PDF bytes into encoded thumbnails, `keys` names them, `pipeline` is
the per-document step run on executors, `ledger` is the Delta results table, and `backfill` is
the batch job. `status` holds the outcome taxonomy, `options` the render options and limits.
"""

__version__ = "0.1.0"
