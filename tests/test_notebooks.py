"""The notebooks: each one's paired source agrees with it, and each runs headless, top to bottom, with small parameters.

``notebooks/NAME.py`` (jupytext's percent format) is a notebook's source; ``NAME.ipynb`` holds the same
cells with the outputs of a real run (``notebooks/jupytext.toml`` pairs them). The agreement is jupytext's own
comparison of the two (what ``jupytext --sync`` keeps true). The runs execute the ``.py`` source with
papermill, which injects the small values in a cell after the notebook's cell tagged ``parameters``; run
folders and outputs go to a temporary folder, so the shared studies are never touched.
"""

from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest
from jupytext.compare import NotebookDifference, compare_notebooks

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
SOURCES = sorted(NOTEBOOK_DIR.glob("[0-9]*.py"))
PAIRED_FORMAT = "py:percent"

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


def test_every_notebook_is_paired_and_tested():
    assert {p.stem for p in NOTEBOOKS} == {p.stem for p in SOURCES} == set(SMALL_BY_NOTEBOOK)
    config = jupytext.config.find_jupytext_configuration_file(str(NOTEBOOK_DIR))
    assert config and Path(config).parent == NOTEBOOK_DIR, "notebooks/jupytext.toml pairs the notebooks"
    assert jupytext.config.load_jupytext_configuration_file(config).formats == [f"ipynb,{PAIRED_FORMAT}"]


def _differences(source, notebook) -> str:
    """jupytext's comparison of a source with its notebook (inputs, cell types, metadata): '' when they agree.

    The notebook is compared as the source ``jupytext --sync`` would write from it, so that what the pairing
    leaves out of the source (outputs, papermill's per-cell record) is left out of the notebook too.
    """
    as_source = jupytext.reads(jupytext.writes(notebook, fmt=PAIRED_FORMAT), fmt=PAIRED_FORMAT)
    try:
        compare_notebooks(source, as_source, fmt=PAIRED_FORMAT)
    except NotebookDifference as difference:
        return str(difference)
    return ""


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_source_and_notebook_agree(source):
    differences = _differences(jupytext.read(source), jupytext.read(source.with_suffix(".ipynb")))
    assert not differences, (
        f"{source.relative_to(NOTEBOOK_DIR.parent)} and its .ipynb differ: {differences}\n"
        f"run `jupytext --sync {source.relative_to(NOTEBOOK_DIR.parent)}` (then `./dev.sh notebooks "
        f"{source.stem[:2]}` if code changed)"
    )


@pytest.mark.parametrize("kind", ["code", "markdown"])
def test_the_agreement_check_sees_an_edit(kind):
    """An edit of one cell in the source alone (code or markdown) is a difference: the check above can fail."""
    source = SOURCES[0]
    edited = jupytext.read(source)
    cell = next(c for c in edited.cells if c.cell_type == kind)
    cell.source += "\n# edited" if kind == "code" else "\nedited"
    assert _differences(edited, jupytext.read(source.with_suffix(".ipynb")))


@pytest.mark.slow  # executes the notebooks
@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.stem)
def test_notebook_runs(source, tmp_path):
    notebook = jupytext.read(source)
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{source.name} needs exactly one cell tagged 'parameters'"
    unexecuted = tmp_path / f"{source.stem}.ipynb"
    nbformat.write(notebook, unexecuted)
    names = set(papermill.inspect_notebook(unexecuted))

    small = {**SMALL, **SMALL_BY_NOTEBOOK[source.stem], "RUNS": str(tmp_path / "runs"), "OUT": str(tmp_path / "out")}
    missing = set(SMALL_BY_NOTEBOOK[source.stem]) - names
    assert not missing, f"{source.name}'s parameters cell lost {sorted(missing)}: the test would run it at full size"
    assert {"RUNS", "OUT", "EPOCHS", "REPEATS"} <= names, f"{source.name} must take RUNS, OUT, EPOCHS and REPEATS"
    small = {k: v for k, v in small.items() if k in names}

    # cwd is the temporary folder: even a relative default path cannot reach the repository.
    # A cell that raises fails here with papermill's PapermillExecutionError (the cell and the traceback).
    executed = papermill.execute_notebook(
        unexecuted,
        tmp_path / f"{source.stem}-executed.ipynb",
        parameters=small,
        cwd=tmp_path,
        kernel_name="python3",
        progress_bar=False,
    )
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "DATASET = " in injected[0].source
    assert any(p.suffix == ".png" for p in (tmp_path / "out").iterdir()), "no plot was written"
