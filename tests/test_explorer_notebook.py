"""The example notebook executes (nbclient) and every page renders as a widget."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "explorer.ipynb"


@pytest.mark.timeout(600)
def test_example_notebook_executes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("LOWBIT_STORE", str(tmp_path / "runs.sqlite"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT)}})
    client.execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    panels = [o for o in outputs if "application/vnd.holoviews_exec.v0+json" in o.get("data", {})]
    assert len(panels) >= 3  # FormatLab, LiveTraining, Compare
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "done 60 steps" in text
    last = nb.cells[-1].outputs[-1]["data"]["text/plain"]
    assert "comparison.html" in last and "comparison.png" in last
