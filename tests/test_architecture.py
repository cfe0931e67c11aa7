"""The package's import contracts hold, and breaking one fails.

The contracts are declared for import-linter in pyproject.toml (``[tool.importlinter]``):

- ``layers``: the pipeline's layers (README "What is in it"), highest first; a module imports only
  from its own layer or the ones below it, directly or through any chain of imports. It is
  exhaustive: a new top-level module that no layer names breaks it.
- ``acyclic``: no two modules or subpackages of one package import each other, directly or through
  their siblings (import-linter's ``acyclic_siblings``, at every depth under ``analogsam``).

import-linter (through grimp) reads every import statement, those inside functions included, so a
lazy import cannot hide an upward import or a cycle. It runs here, in the test suite, rather than as
a separate step of ``.ci/run``: every ``./dev.sh test`` (and so CI) checks it, in about a second.
Each check runs in a subprocess so that a deliberately broken copy of the package is the one analysed.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import analogsam

PACKAGE = Path(analogsam.__file__).parent
ROOT = PACKAGE.parent
CONFIG = ROOT / "pyproject.toml"

_LINT = "import sys; from importlinter.cli import lint_imports; sys.exit(lint_imports(config_filename=sys.argv[1], no_cache=True, no_logo=True))"


def _lint(root: Path) -> tuple[int, str]:
    """import-linter's exit code and report for the package under ``root`` and its pyproject.toml."""
    done = subprocess.run(
        [sys.executable, "-c", _LINT, str(root / "pyproject.toml")],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.returncode, done.stdout + done.stderr


def _copy(tmp_path: Path) -> Path:
    """A copy of the package and its contracts, to break on purpose."""
    shutil.copytree(PACKAGE, tmp_path / "analogsam", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(CONFIG, tmp_path / "pyproject.toml")
    return tmp_path


def _append(path: Path, code: str) -> None:
    path.write_text(path.read_text(encoding="utf-8") + code, encoding="utf-8")


def test_the_package_keeps_its_import_contracts():
    code, report = _lint(ROOT)
    assert code == 0, report
    assert "Contracts: 2 kept, 0 broken." in report


@pytest.mark.slow  # copies the package and runs import-linter on the copy
@pytest.mark.parametrize(
    "module, imported, expected",
    [
        # the cycle the acyclic contract was written for (issue 26): the Ray executor calling back into
        # the protocol that calls it, lazily, inside a function
        (
            "evaluation/ray_sweep.py",
            "analogsam.evaluation.protocol",
            ["any one package BROKEN", "No cycles are allowed in analogsam.evaluation.", ".ray_sweep -> .protocol"],
        ),
        # a lower layer importing a higher one, inside a function
        (
            "data.py",
            "analogsam.evaluation",
            ["(README 'What is in it') BROKEN", "analogsam.data -> analogsam.evaluation"],
        ),
    ],
)
def test_a_deliberate_break_fails_its_contract(tmp_path, module, imported, expected):
    root = _copy(tmp_path)
    _append(root / "analogsam" / module, f"\n\ndef _deliberate():\n    import {imported}\n\n    return {imported}\n")
    code, report = _lint(root)
    assert code == 1, report
    for text in expected:
        assert text in report, report


def test_every_layer_of_the_contract_is_in_the_readme_table():
    """The README's layer table and the contract name the same layers, in the same order (lowest first)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    contract = next(
        c for c in tomllib.loads(CONFIG.read_text())["tool"]["importlinter"]["contracts"] if c["id"] == "layers"
    )
    declared = [layer.split(" : ")[0].strip() for layer in reversed(contract["layers"])]
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("| layer | package | its job |") :].split("\n\n", 1)[0]
    packages = [line.split("|")[2] for line in table.splitlines()[2:]]
    first = [p.split(",")[0].strip().strip("`").removeprefix("analogsam.") for p in packages]
    assert first == declared
