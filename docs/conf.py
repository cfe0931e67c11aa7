"""Sphinx configuration of analogsam's reference: ``./dev.sh docs`` (``.ci/run`` adds ``-W``: warnings are errors).

Sphinx with autodoc and napoleon, because the docstrings are reStructuredText with Sphinx roles
(``:mod:``, ``:func:``, ...) that Sphinx resolves and, with ``nitpicky``, reports when broken; myst-nb
(which brings myst-parser) reads the markdown files and renders the notebooks from their committed
outputs; all of it installs from PyPI alone (nbsphinx would need pandoc).

The source folder is the repository root (``sphinx-build -c docs . docs/_build/html``), so the README's
relative links (``docs/devices.md``, ``devices/README.md``) resolve as they do on a code host, and
``include_patterns`` picks the documents.
"""

import builtins
import importlib
import os
import pkgutil
import re
import sys
from pathlib import Path

from sphinx import addnodes
from sphinx.ext import napoleon

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # this checkout's analogsam, whatever the environment has installed

project = "analogsam"
author = "the analogsam developers"
root_doc = "docs/index"
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon", "myst_nb"]
PACKAGE = "analogsam"
include_patterns = [
    "README.md",
    "devices/README.md",
    "docs/index.md",
    "docs/api.rst",
    "docs/_api/*.rst",  # written at each build by _write_api_pages below
    "docs/*.md",
    "docs/*/report.md",
    "docs/fault-study/activation/report.md",
    "docs/hwa-conformance/fixed-scale.md",
    "notebooks/*.ipynb",
]

# The notebooks as committed: their outputs are those of a real run, which the docs show, not redo.
nb_execution_mode = "off"
myst_heading_anchors = 3  # the README's "see X" links to its own sections

autodoc_member_order = "bysource"
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# A reference that resolves to nothing is a warning (and so a CI failure). Names of other packages and
# of the standard library cannot resolve here (no intersphinx: no network), so they alone are let through.
nitpicky = True
_OTHER_PACKAGES = (
    "torch|nn|numpy|np|scipy|matplotlib|aihwkit|numba|tqdm|sklearn|ray|threadpoolctl|transformers|timm|torchvision"
    "|abc|argparse|collections|concurrent|contextlib|dataclasses|enum|io|multiprocessing|os|pathlib|random|re|types"
    "|typing|typing_extensions|warnings"
)
nitpick_ignore_regex = [
    (r"py:class", rf"{PACKAGE}\..*\._\w+"),  # a private base class (``show-inheritance``), not documented
    (r"py:.*", rf"({_OTHER_PACKAGES})\..*"),
    # builtins, and the names annotations import bare (``from torch import Tensor, nn``)
    (
        r"py:.*",
        r"(int|float|str|bool|bytes|dict|list|tuple|set|frozenset|object|type|None|Ellipsis|callable"
        r"|Exception|ValueError|TypeError|RuntimeError|KeyError|OSError|UserWarning|Warning|NotImplemented"
        r"|Tensor|Module|Generator|Parameter|TransformerEncoderLayer|Path|Any|Callable|Iterable|Iterator|Mapping|Sequence)",
    ),
]

html_theme = "alabaster"
html_title = "analogsam"
# The front page is docs/index (the source folder is the repository's root): index.html leads to it.
templates_path = [os.path.join(HERE, "_templates")]  # absolute: the source folder is not this one
html_additional_pages = {"index": "redirect.html"}


_LITERAL = re.compile(r"(``.*?``)")


def _read_docstring(app, what, name, obj, options, lines):
    """How the docs read a docstring: napoleon's sections, and bars as text.

    napoleon (``Args:``, ``Returns:`` ...) reads functions, classes and modules only: on an attribute, a
    constant or a property it reads a first line ``X: Y`` as "type X, description Y", and the project
    writes those as sentences ("The default study's time points: 1 s, 1 h, ...").

    The docstrings write absolute values and norms as the papers do (``|w|``, ``‖ε‖``), which
    reStructuredText would read as a substitution ``|w|``; the package defines none, so every bar outside
    a literal is text.
    """
    if what not in ("attribute", "data", "property"):
        napoleon._process_docstring(app, what, name, obj, options, lines)
    for i, line in enumerate(lines):
        parts = _LITERAL.split(line)  # odd indices: ``literals``, left as they are
        lines[i] = "".join(part if k % 2 else part.replace("|", "\\|") for k, part in enumerate(parts))


def _write_api_pages(app):
    """docs/_api: one page per module of the package, found by walking it (a module added, moved or
    removed is there, moved or gone at the next build, with no list to edit).

    A module's page documents what the module defines (autodoc ``:members:``), so every docstring is read
    in its own module, where its short references resolve. A package's page shows its docstring, what its
    ``__init__`` defines, links to what it exports (``__all__``: each to the page that defines it, through
    ``_resolve_by_definition``) and its submodules.
    """
    out = Path(HERE) / "_api"
    out.mkdir(exist_ok=True)
    package = importlib.import_module(PACKAGE)
    names = [PACKAGE] + [
        m.name for m in pkgutil.walk_packages(package.__path__, f"{PACKAGE}.") if not m.name.endswith(".__main__")
    ]  # private modules too (``optim._common`` defines what ``optim`` exports); ``__main__`` runs the CLI
    pages = {}
    for name in names:
        module = importlib.import_module(name)
        # every public name the module defines, whether or not its __all__ exports it (imported names are skipped)
        lines = [name, "=" * len(name), "", f".. automodule:: {name}", "   :members:", "   :ignore-module-all:"]
        lines += ["   :show-inheritance:", ""]
        if hasattr(module, "__path__"):  # a package: what its __init__ defines, then links, not copies
            exports = getattr(module, "__all__", [])
            if exports:
                lines += [".. rubric:: Exports", ""] + [f"- :py:obj:`~{name}.{e}`" for e in exports] + [""]
            children = [n for n in names if n.rpartition(".")[0] == name]
            lines += [".. rubric:: Modules", "", ".. toctree::", "   :maxdepth: 1", ""] + [f"   {c}" for c in children]
        pages[f"{name}.rst"] = "\n".join(lines) + "\n"
    for stale in set(p.name for p in out.glob("*.rst")) - set(pages):
        (out / stale).unlink()
    for filename, text in pages.items():
        path = out / filename
        if not path.exists() or path.read_text() != text:  # unchanged pages are not read again
            path.write_text(text)


def _defined_at(path):
    """The full names where the object that ``path`` (``analogsam.evaluation.evaluate``) reaches may be defined."""
    parts = path.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            return []
        break
    else:
        return []
    if getattr(obj, "__module__", None) and getattr(obj, "__qualname__", None):
        return [f"{obj.__module__}.{obj.__qualname__}"]
    # a constant: the modules of the package that hold this very object under this name
    return [
        f"{name}.{parts[-1]}"
        for name, module in list(sys.modules.items())
        if name.startswith(PACKAGE) and name != ".".join(parts[:-1]) and getattr(module, parts[-1], None) is obj
    ]


def _resolve_by_definition(app, env, node, contnode):
    """A reference by a public path (``analogsam.evaluate``, ``analogsam.evaluation.evaluate``, or a short name
    in a package's docstring) goes to the object's page where it is defined; anything else stays missing."""
    if node.get("refdomain") != "py":
        return None
    target, module = node["reftarget"], node.get("py:module")
    for path in (f"{module}.{target}" if module else None, target):
        if not path or not path.startswith(f"{PACKAGE}."):
            continue
        for defined in _defined_at(path):
            if defined == path:
                continue
            domain = env.domains["py"]
            found = domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"], defined, node, contnode)
            if found is None:
                found = domain.resolve_xref(env, node["refdoc"], app.builder, "obj", defined, node, contnode)
            if found is not None:
                return found
    return None


def _builtins_are_builtins(app, doctree):
    """A builtin's name in an annotation (``-> type``, ``int``) means the builtin, not an attribute of that
    name somewhere in the package: Sphinx searches annotations loosely (any ``*.type`` matches), so
    ``Knob.type`` would make ``type`` ambiguous. The exact search finds nothing, which is left unchecked."""
    for node in doctree.findall(addnodes.pending_xref):
        if node.get("refdomain") == "py" and node.get("refspecific") and hasattr(builtins, node["reftarget"]):
            del node["refspecific"]


def setup(app):
    # napoleon's own handler gives way to _read_docstring, which calls it for the kinds of object it reads
    # well (Sphinx has no setting for that; app.events.listeners is how Sphinx lists an event's handlers)
    for listener in list(app.events.listeners["autodoc-process-docstring"]):
        if listener.handler is napoleon._process_docstring:
            app.disconnect(listener.id)
    app.connect("autodoc-process-docstring", _read_docstring)
    app.connect("builder-inited", _write_api_pages)
    app.connect("missing-reference", _resolve_by_definition)
    app.connect("doctree-read", _builtins_are_builtins)
