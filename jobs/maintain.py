"""Compact, vacuum and age out the results and quarantine tables: `./spark-submit.sh jobs/maintain.py --help`."""

import sys
from pathlib import Path

# Run from a checkout, the repository's lib/ wins over the bundle spark-submit.sh ships to executors.
_LIB = Path(__file__).resolve().parent.parent / "lib"
if _LIB.is_dir():
    sys.path.insert(0, str(_LIB))

from thumbs.maintenance import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
