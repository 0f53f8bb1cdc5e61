"""Re-execute the demo notebooks in place so their stored outputs match the current code.

Usage: ``.venv/bin/python scripts/refresh_notebooks.py [NOTEBOOK ...]`` (default: every
``notebooks/*.ipynb``). Each notebook runs top to bottom in a fresh kernel, in demo mode (no API
key, so the notice a newcomer sees is the one saved) with the emulator at time scale 0, as
``make test`` runs it under nbval. Widget state is not
stored: a saved panel could never be redrawn without its live kernel, and its models only churn
diffs. Cells tagged ``raises-exception`` may fail; any other failure stops the script and leaves
the notebook untouched.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parents[1]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def demo_env() -> dict[str, str]:
    """The environment the notebooks run in: no key (so demo mode, as a newcomer sees it)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in {"PARALLEL_API_KEY", "PARALLEL_BASE_URL", "PARALLEL_NB_DEMO"}
    }
    env["PARALLEL_NB_TIME_SCALE"] = "0"
    # A fresh run store, so the saved outputs show real runs, never cache hits.
    env["PARALLEL_NB_DATA_DIR"] = tempfile.mkdtemp(prefix="parallel-nb-refresh-")
    return env


def without_widget_views(notebook: nbformat.NotebookNode) -> None:
    """Drop widget views from outputs, keeping their text and HTML fallbacks."""
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.outputs:
            data = output.get("data")
            if data is not None and WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                if not data:
                    continue
            kept.append(output)
        cell.outputs = kept


def refresh(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        record_timing=False,
        store_widget_state=False,
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute(env=demo_env())
    without_widget_views(notebook)
    nbformat.validate(notebook)
    nbformat.write(notebook, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted((REPO / "notebooks").glob("*.ipynb"))
    for path in paths:
        print(f"executing {path}", file=sys.stderr)
        refresh(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
