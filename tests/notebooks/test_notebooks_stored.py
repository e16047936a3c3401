"""How the notebooks in notebooks/ are stored: the rules a reviewer would otherwise check by eye.

The notebooks are *executed* by nbmake (``pytest --nbmake notebooks/``, top to bottom from a
clean kernel). These tests check what execution cannot see, on the stored files:

* valid nbformat 4, a Python 3 kernel, a title cell;
* stored **without outputs** (no outputs, no execution counts), so they diff and read cleanly;
* every number comes from the packages: each notebook imports ``theory``, ``proofs`` or
  ``empirical``, and none imports torch directly (torch only through ``empirical/``);
* ``ipywidgets`` is imported only inside a ``try`` that handles ``ImportError``, so a kernel
  without it still runs the notebook (the static figures are always drawn);
* figures use the inline backend (``%matplotlib inline``) when matplotlib is used.

Each rule has a negative control: a copy of a real notebook broken on purpose, which the same
check must reject.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest

Notebook = dict[str, Any]
Cell = dict[str, Any]

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
#: the notebooks of issue #8
EXPECTED = (
    "01_definitions.ipynb",
    "02_bounds_explorer.ipynb",
    "03_paper_demonstration.ipynb",
    "04_verify_a_claim.ipynb",
    "05_condition_number.ipynb",
    "06_tightness.ipynb",
)

PACKAGE_IMPORT = re.compile(r"^\s*(from|import)\s+(theory|proofs|empirical)\b", re.MULTILINE)
TORCH_IMPORT = re.compile(r"^\s*(from|import)\s+torch\b", re.MULTILINE)
WIDGETS_IMPORT = re.compile(r"^\s*(from|import)\s+ipywidgets\b", re.MULTILINE)
MATPLOTLIB_IMPORT = re.compile(r"^\s*(from|import)\s+matplotlib\b", re.MULTILINE)


def source(cell: Cell) -> str:
    """A cell's source as one string (nbformat stores a string or a list of lines)."""
    text = cell.get("source", "")
    return text if isinstance(text, str) else "".join(text)


def code_cells(notebook: Notebook) -> list[Cell]:
    return [cell for cell in notebook.get("cells", []) if cell.get("cell_type") == "code"]


def problems(notebook: Notebook) -> list[str]:
    """Every storage rule ``notebook`` breaks (empty when it is stored as it should be)."""
    found: list[str] = []
    try:
        nbformat.validate(notebook)
    except nbformat.ValidationError as error:
        found.append(f"invalid nbformat: {error.message}")
    if notebook.get("nbformat") != 4:
        found.append(f"nbformat {notebook.get('nbformat')} instead of 4")
    kernel = notebook.get("metadata", {}).get("kernelspec", {}).get("name")
    if kernel != "python3":
        found.append(f"kernel {kernel!r} instead of 'python3'")
    cells = notebook.get("cells", [])
    first = cells[0] if cells else None
    if first is None or first.get("cell_type") != "markdown" or not source(first).startswith("# "):
        found.append("the first cell is not a markdown title ('# ...')")
    for index, cell in enumerate(code_cells(notebook)):
        text = source(cell)
        if cell.get("outputs"):
            found.append(f"code cell {index} is stored with outputs")
        if cell.get("execution_count") is not None:
            found.append(f"code cell {index} is stored with an execution count")
        if TORCH_IMPORT.search(text):
            found.append(f"code cell {index} imports torch directly (use empirical/)")
        if WIDGETS_IMPORT.search(text) and not ("try:" in text and "except ImportError" in text):
            found.append(f"code cell {index} imports ipywidgets outside a try/except ImportError")
    code = "\n".join(source(cell) for cell in code_cells(notebook))
    if not PACKAGE_IMPORT.search(code):
        found.append("no import of theory, proofs or empirical: numbers must come from them")
    if MATPLOTLIB_IMPORT.search(code) and "%matplotlib inline" not in code:
        found.append("uses matplotlib without '%matplotlib inline'")
    return found


def read(path: Path) -> Notebook:
    notebook: Notebook = json.loads(path.read_text(encoding="utf-8"))
    return notebook


def new_code_cell(text: str) -> Cell:
    return {
        "cell_type": "code",
        "id": "negative-control",
        "metadata": {},
        "source": text,
        "outputs": [],
        "execution_count": None,
    }


def test_the_notebooks_of_issue_8_exist() -> None:
    names = {path.name for path in NOTEBOOKS}
    assert set(EXPECTED) <= names, f"missing: {sorted(set(EXPECTED) - names)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_clean(path: Path) -> None:
    assert problems(read(path)) == []


# --------------------------------------------------------------------------- negative controls
@pytest.fixture
def sample() -> Notebook:
    """A deep copy of a real notebook (the bounds explorer: widgets, plots, theory imports)."""
    notebook = read(NOTEBOOK_DIR / "02_bounds_explorer.ipynb")
    assert problems(notebook) == []
    return copy.deepcopy(notebook)


def first_code_cell(notebook: Notebook) -> Cell:
    return code_cells(notebook)[0]


@pytest.mark.negative_control
def test_control_outputs_are_caught(sample: Notebook) -> None:
    cell = first_code_cell(sample)
    cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "4\n"}]
    cell["execution_count"] = 1
    found = problems(sample)
    assert any("stored with outputs" in p for p in found)
    assert any("execution count" in p for p in found)


@pytest.mark.negative_control
def test_control_direct_torch_import_is_caught(sample: Notebook) -> None:
    cell = first_code_cell(sample)
    cell["source"] = "import torch\n" + source(cell)
    assert any("imports torch directly" in p for p in problems(sample))


@pytest.mark.negative_control
def test_control_notebook_without_the_packages_is_caught(sample: Notebook) -> None:
    for cell in code_cells(sample):
        cell["source"] = PACKAGE_IMPORT.sub("# removed", source(cell))
    assert any("no import of theory" in p for p in problems(sample))


@pytest.mark.negative_control
def test_control_unguarded_widgets_import_is_caught(sample: Notebook) -> None:
    sample["cells"].append(new_code_cell("import ipywidgets\nipywidgets.IntSlider()"))
    assert any("ipywidgets outside" in p for p in problems(sample))


@pytest.mark.negative_control
def test_control_missing_inline_backend_is_caught(sample: Notebook) -> None:
    for cell in code_cells(sample):
        cell["source"] = source(cell).replace("%matplotlib inline", "")
    assert any("%matplotlib inline" in p for p in problems(sample))


@pytest.mark.negative_control
def test_control_missing_title_and_wrong_kernel_are_caught(sample: Notebook) -> None:
    sample["cells"][0]["source"] = "no title here"
    sample["metadata"]["kernelspec"]["name"] = "julia-1.10"
    found = problems(sample)
    assert any("markdown title" in p for p in found)
    assert any("kernel 'julia-1.10'" in p for p in found)
