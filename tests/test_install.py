"""A plain (not editable) ``pip install .`` gives a working ``analogsam`` command with its presets.

The package is installed with ``--no-deps`` into a fresh virtual environment that sees this
interpreter's site-packages through a ``.pth`` line (added after the new environment's own
site-packages, so the installed copy comes first; .pth files of that folder, such as an editable
install's, are not run). Everything runs from a temporary folder, so the source tree is not on
``sys.path``: what is tested is the wheel's content (the shipped presets of the top-level ``devices/``
folder are the package data of ``analogsam.devices``).
"""

import os
import shutil
import subprocess
import sysconfig
import venv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # builds virtual environments

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.stem for p in (ROOT / "devices").glob("*.toml"))


def _run(args, cwd, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(bin folder, cwd) of a fresh venv holding a plain install of a copy of this source tree."""
    tmp = tmp_path_factory.mktemp("install")
    source = tmp / "source"  # a copy: pip's in-tree build would leave build/ and *.egg-info here
    shutil.copytree(ROOT / "analogsam", source / "analogsam", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "devices", source / "devices")
    for name in ("pyproject.toml", "setup.py", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, source / name)
    env_dir = tmp / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)  # (pip comes from the outer site-packages)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    python = bin_dir / "python"
    new_site = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp).strip()
    Path(new_site, "outer-site-packages.pth").write_text(
        "\n".join(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])) + "\n"
    )
    # No build isolation: the build uses the setuptools of this environment (a dev dependency), so the
    # test needs no package index.
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", str(source)], tmp)
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    return bin_dir, cwd, Path(new_site)


def test_the_installed_copy_is_imported_not_the_source_tree(installed):
    bin_dir, cwd, site = installed
    where = _run([str(bin_dir / "python"), "-c", "import analogsam; print(analogsam.__file__)"], cwd).strip()
    assert Path(where).resolve().is_relative_to(site.resolve()), where
    files = _run(
        [
            str(bin_dir / "python"),
            "-c",
            "from analogsam.hardware.presets.discovery import shipped; print(*shipped().values())",
        ],
        cwd,
    )
    assert all(Path(p).resolve().is_relative_to(site.resolve()) for p in files.split()), files


def test_analogsam_run_help(installed):
    bin_dir, cwd, _ = installed
    out = _run([str(bin_dir / "analogsam"), "run", "--help"], cwd)
    assert "usage: analogsam run" in out and "--preset" in out


def test_analogsam_presets_list_finds_every_shipped_preset(installed):
    bin_dir, cwd, _ = installed
    out = _run([str(bin_dir / "analogsam"), "presets", "list"], cwd)
    listed = [name for name in SHIPPED if name in out.split()]
    assert SHIPPED and listed == SHIPPED, out
    assert len(SHIPPED) >= 6


def test_a_preset_loads_by_name_from_the_installed_package(installed):
    bin_dir, cwd, site = installed
    out = _run([str(bin_dir / "analogsam"), "presets", "show", "pcm-hermes"], cwd)
    assert "file         devices/pcm-hermes.toml" in out and "hermes_devices" in out
    code = "from analogsam.hardware import presets; print(presets.load('pcm-hermes').path)"
    file = _run([str(bin_dir / "python"), "-c", code], cwd).strip()
    assert Path(file).resolve() == (site / "analogsam" / "devices" / "pcm-hermes.toml").resolve(), file
