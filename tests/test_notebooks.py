"""Every notebook in notebooks/ runs headless, top to bottom, with small parameters.

The small values are injected in a cell right after the notebook's ``parameters`` cell (as papermill
does); run folders and outputs go to a temporary folder, so the shared studies are never touched.
"""

import ast
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # executes the notebooks

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))

# Small enough for seconds per notebook: the 8x8 digits, an MLP, one epoch, two repeats.
SMALL = {
    "DATASET": "digits",
    "MODEL": "mlp",
    "EPOCHS": 1,
    "REPEATS": 2,
    "EVAL_LIMIT": 200,
}
SMALL_BY_NOTEBOOK = {
    "01-quickstart": {"TIMES": "1s,1d,1y"},
    "02-optimizers": {
        "TIMES": "1s,1y",
        "EPOCHS": 2,
        "SEEDS": [0, 1],  # seed groups: the seed-level tests run
        "HYPERPARAMETERS": {"adversarial": {"attack_steps": 1}, "saf": {"saf_history": 1, "saf_start": 1}},
    },
    "03-device-presets": {
        "PRESET_TIMES": "1s,1d",
        "ADC_BITS": [4, 8],
        "ADC_TIMES": "1s",
        "DRIFT_SCALES": [1.0, 2.0],
        "DRIFT_SCALE_TIMES": "1s,1y",
        "DRIFT_MODES": ["none", "global"],
        "DRIFT_TIMES": "1s,1y",
    },
    "04-networks": {
        "TIMES": "1s,1y",
        "MODELS": ["vit-tiny", "mobilenet-tiny"],
        "OPTIMIZERS": ["sgd", "sam"],
        "TRAIN_LIMIT": None,
    },
}


def _parameter_names(source: str) -> set[str]:
    return {
        t.id
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name)
    }


def test_every_notebook_is_tested():
    assert {p.stem for p in NOTEBOOKS} == set(SMALL_BY_NOTEBOOK)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path):
    nb = nbformat.read(path, as_version=4)
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
    index = tagged[0]
    names = _parameter_names(nb.cells[index].source)

    small = {**SMALL, **SMALL_BY_NOTEBOOK[path.stem], "RUNS": str(tmp_path / "runs"), "OUT": str(tmp_path / "out")}
    small = {k: v for k, v in small.items() if k in names or k in SMALL_BY_NOTEBOOK[path.stem]}
    missing = set(SMALL_BY_NOTEBOOK[path.stem]) - names
    assert not missing, f"{path.name}'s parameters cell lost {sorted(missing)}: the test would run it at full size"
    assert {"RUNS", "OUT", "EPOCHS", "REPEATS"} <= names, f"{path.name} must take RUNS, OUT, EPOCHS and REPEATS"
    injected = nbformat.v4.new_code_cell("\n".join(f"{k} = {v!r}" for k, v in small.items()))
    injected.metadata["tags"] = ["injected-parameters"]
    nb.cells.insert(index + 1, injected)

    # cwd is the temporary folder: even a relative default path cannot reach the repository
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()

    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors
    assert any(p.suffix == ".png" for p in (tmp_path / "out").iterdir()), "no plot was written"
