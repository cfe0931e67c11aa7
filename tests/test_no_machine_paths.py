"""Committed outputs belong to no one machine: the notebooks' saved outputs and the docs hold no
absolute path of the machine that made them (a home, scratch or work folder, a virtual
environment); they name files relative to the repository or the package, or by placeholders."""

import json
import re
from pathlib import Path

import pytest

from analogsam.hardware.presets import describe

ROOT = Path(__file__).resolve().parent.parent

# An absolute path under a machine's own folders, or any absolute path into a virtual environment.
# System locations that the README documents (/usr/share/datasets) are everyone's and allowed.
MACHINE_PATH = re.compile(
    r"(?<![\w.~/<>$}-])/(?:work|root|home|tmp|Users|opt|mnt|scratch|private|var/folders)/[^\s\"'`)]*"
    r"|(?<![\w.~/<>$}-])/[^\s\"'`)]*(?:venv|site-packages)[^\s\"'`)]*"
)


def committed(*patterns: str) -> list[Path]:
    """The repository's files matching ``patterns`` (outputs of local runs are ignored by git and
    live in ``studies/``, ``runs/`` or ``notebooks/outputs/``, which these patterns do not reach)."""
    return sorted({path for pattern in patterns for path in ROOT.glob(pattern)})


def notebook_outputs(path: Path) -> str:
    """Every text a notebook's saved outputs show (streams, plain text, markdown, errors)."""
    texts = []
    for cell in json.loads(path.read_text())["cells"]:
        for output in cell.get("outputs", []):
            texts.append("".join(output.get("text", "")))
            for kind, value in output.get("data", {}).items():
                if kind.startswith("text/"):
                    texts.append("".join(value))
            texts.extend(output.get("traceback", []))
    return "\n".join(texts)


def found(text: str) -> list[str]:
    return sorted(set(MACHINE_PATH.findall(text)))


def test_the_pattern_finds_machine_paths_and_spares_relative_and_system_ones():
    assert found("file /work/main/devices/pcm.toml and /home/ann/x") == ["/home/ann/x", "/work/main/devices/pcm.toml"]
    assert found("ran /opt/venvs/py313/bin/python -m pytest") == ["/opt/venvs/py313/bin/python"]
    assert found("ran /srv/envs/a-venv/bin/pip") == ["/srv/envs/a-venv/bin/pip"]
    assert not found("read from /usr/share/datasets/fashion-mnist; .venv/bin/python; ../studies/x; a/tmp/b")


@pytest.mark.parametrize("path", committed("notebooks/*.ipynb"), ids=lambda p: p.name)
def test_notebook_outputs_name_no_machine_path(path):
    paths = found(notebook_outputs(path))
    assert not paths, (
        f"{path.relative_to(ROOT)} shows absolute paths of the machine that ran it: {paths[:5]}; "
        f"print names or relative paths and re-execute it (./dev.sh notebooks "
        f"{path.name[:2]})"
    )


@pytest.mark.parametrize("path", committed("*.md", "docs/**/*.md"), ids=lambda p: str(p.relative_to(ROOT)))
def test_docs_name_no_machine_path(path):
    paths = found(path.read_text())
    assert not paths, f"{path.relative_to(ROOT)} names absolute paths of one machine: {paths[:5]}"


def test_a_shipped_preset_is_shown_by_its_folder_in_the_repository():
    text = describe("pcm")
    assert "file         devices/pcm.toml" in text
    assert not found(text) and str(ROOT) not in text


def test_a_study_report_names_its_folders_by_placeholders():
    from analogsam.studies.robustness import portable_command

    command = "analogsam study robustness --out /work/robustness-full --data-root /srv/data --quick"
    assert portable_command(command) == "analogsam study robustness --out OUT --data-root DATA_ROOT --quick"
    assert portable_command("analogsam study robustness --out runs/study") == (
        "analogsam study robustness --out runs/study"
    )
