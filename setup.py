"""The package list, which pyproject.toml cannot express: the top-level ``devices/`` folder (the
shipped device presets, the first place a researcher looks) is installed as ``analogsam.devices``,
so a plain ``pip install .`` (a wheel) finds the presets by name. Everything else is in
pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["analogsam*"]) + ["analogsam.devices"],
    package_dir={"analogsam.devices": "devices"},
    package_data={"analogsam.devices": ["*.toml", "*.md"]},
)
