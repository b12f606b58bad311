"""Every folder of ember that is a package is listed in pyproject.toml, with its directory: a
wheel (or a non-editable install) built from the list would otherwise miss it."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
TOP = ("compiler", "passes", "runtime", "targets", "tools")


def test_every_package_folder_is_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {p.parent.relative_to(ROOT).as_posix() for top in TOP
               for p in (ROOT / top).rglob("__init__.py") if "__pycache__" not in p.parts}
    expected = {"ember." + folder.replace("/", "."): folder for folder in folders}
    listed = {name: path for name, path in setuptools["package-dir"].items() if name != "ember"}
    assert listed == expected
    assert set(setuptools["packages"]) - {"ember"} == set(expected)
