"""The package's folders show the pipeline, and imports flow one way: a module imports only from
its own layer or the layers below it (imports inside functions count too)."""

import ast
from pathlib import Path

import analogsam

PACKAGE = Path(analogsam.__file__).parent

# Lowest first. A module belongs to the first prefix that matches its dotted name.
LAYERS = [
    (
        "base",
        (
            "analogsam.errors",
            "analogsam.validation",
            "analogsam.storage",
            "analogsam.scoring",
            "analogsam.statistics",
            "analogsam.device",
            "analogsam.distributed",
            "analogsam.progress",
        ),
    ),
    ("data", ("analogsam.data",)),
    ("models", ("analogsam.models",)),
    ("robustness", ("analogsam.robustness",)),
    ("quantization", ("analogsam.quantization",)),
    # below the optimizers and training: hardware-aware training (analogsam.hardware.hwa) and the
    # device-shaped sharpness (analogsam.optim.device_sam) read the device presets
    ("hardware", ("analogsam.hardware",)),
    ("optim", ("analogsam.optim",)),
    ("training", ("analogsam.training",)),
    ("evaluation", ("analogsam.evaluation",)),
    ("studies", ("analogsam.studies",)),
    ("cli", ("analogsam.cli", "analogsam.__main__")),
]


def _layer(module: str) -> int | None:
    if module == "analogsam":
        return None  # the package's lazy front door may name anything
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def _imports(name: str, path: Path):
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from analogsam.x import y` may import the submodule y
                yield f"{target}.{alias.name}" if target.startswith("analogsam") else target, node.lineno


def _resolve(target: str) -> str | None:
    """The longest prefix of ``target`` that is one of our modules."""
    known = {name for name, _ in _modules()}
    parts = target.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return None


def test_every_module_has_a_layer():
    for name, _ in _modules():
        _layer(name)


def test_lower_layers_never_import_higher_ones():
    violations = []
    for name, path in _modules():
        own = _layer(name)
        if own is None:
            continue
        for target, line in _imports(name, path):
            if not target.startswith("analogsam"):
                continue
            module = _resolve(target)
            other = _layer(module) if module else None
            if other is not None and other > own:
                violations.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line} ({LAYERS[own][0]}) imports "
                    f"{module} ({LAYERS[other][0]})"
                )
    assert not violations, "imports against the pipeline's direction:\n" + "\n".join(violations)


def test_the_checker_sees_a_violation(tmp_path, monkeypatch):
    """The rule is real: a lower module importing a higher one inside a function is caught."""
    path = tmp_path / "bad.py"
    path.write_text("def f():\n    from analogsam.evaluation import evaluate\n")
    found = [(t, _layer(_resolve(t))) for t, _ in _imports("analogsam.data", path)]
    assert found and found[0][1] > _layer("analogsam.data")
