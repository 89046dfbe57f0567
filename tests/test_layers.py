"""Layers point one way: the base imports no feature, a feature imports only the base
(and the device drivers, which sit between: the exporter serves them), the
orchestration (stack/) sits on top.  Read from the source with `ast`, so an
import hidden inside a function counts too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from homewatt.config import REPO

BASE = "homewatt"
DRIVERS = "devices"  # real meters' protocols and their simulator: what the exporter serves
FEATURES = ("exporter", "backfill", "partner_job", "reference_partner", "grafana", "alertmanager")
ORCHESTRATION = "stack"
LAYER = {BASE: 0, DRIVERS: 1, **dict.fromkeys(FEATURES, 2), ORCHESTRATION: 3}


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in a file, relative imports resolved."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name.split(".")[0]) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: the file's own package
                out.append((node.lineno, path.parent.name))
            elif node.module:
                out.append((node.lineno, node.module.split(".")[0]))
    return out


def violations(root: Path) -> list[str]:
    """Every import arrow in `root`'s project packages that runs the wrong way."""
    found = []
    for package in LAYER:
        for path in sorted((root / package).rglob("*.py")):
            for line, target in imports(path):
                if target not in LAYER or target == package:
                    continue  # the standard library, a third-party package, or itself
                allowed = LAYER[target] < LAYER[package]
                if not allowed:
                    found.append(f"{path.relative_to(root)}:{line}: {package} -> {target}")
    return found


def test_every_import_points_down_the_layers():
    assert violations(REPO) == []


@pytest.mark.parametrize(
    ("where", "code"),
    [
        ("homewatt/up.py", "from backfill.__main__ import backfill\n"),  # the arrow this issue removed
        ("homewatt/fleet2.py", "import stack.services\n"),
        ("exporter/x.py", "from partner_job import job\n"),  # feature -> feature
        ("backfill/x.py", "def f():\n    from stack import supervisor\n"),  # hidden in a function
        ("devices/x.py", "from exporter.render import FleetRenderer\n"),  # a driver reaching up
    ],
)
def test_a_wrong_way_import_is_caught(tmp_path, where, code):
    for package in LAYER:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / where).write_text(code)
    (found,) = violations(tmp_path)
    assert found.startswith(where)


def test_all_project_packages_are_known():
    """A new top-level package must be given a layer here before it can import anything."""
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")} | {"grafana"}
    assert packages - {"tests", "benchmarks"} == set(LAYER)
