"""The notebooks execute headless, top to bottom, against a table a real backfill built, and
draw what they promise: the charts and the grid of thumbnails."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.conftest import SAMPLES

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CHARTS = ["failures_by_class", "throughput_per_hour", "render_time_distribution", "contact_sheet"]


def _execute(path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Any:
    import nbformat
    from nbclient import NotebookClient

    for name, value in env.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this process's environment
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", resources={
        "metadata": {"path": str(path.parent)}}).execute()
    return notebook


def _outputs(notebook: Any, kind: str) -> list[str]:
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if kind == "image/png" and kind in output.get("data", {}):
                found.append(output["data"][kind])
            elif kind == "text" and output.get("output_type") == "stream":
                found.append(output["text"])
            elif kind == "text" and "text/plain" in output.get("data", {}):
                found.append(output["data"]["text/plain"])
    return found


@pytest.mark.heavy
def test_the_results_notebook_runs_and_draws_its_charts(
    sample_results: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = tmp_path / "figures"
    notebook = _execute(NOTEBOOKS / "results.ipynb", {
        "THUMBS_TABLE": sample_results, "THUMBS_SOURCE": str(SAMPLES), "THUMBS_FIGURES": str(figures),
    }, monkeypatch)

    assert len(_outputs(notebook, "image/png")) == len(CHARTS)
    for name in CHARTS:
        with Image.open(figures / f"{name}.png") as image:
            assert image.width > 300 and image.height > 150, name
    with Image.open(figures / "contact_sheet.png") as sheet:
        assert sheet.size == (6 * 200, 2 * 230), "11 documents in rows of 6"
    text = "\n".join(_outputs(notebook, "text"))
    assert f"{sample_results}`: 11 rows" in text
    assert "password_required" in text and "corrupt" in text
    assert "11 objects under" in text and "0 waiting" in text
    assert "11 documents, latest row of each" in text
