"""Module-tree surgery shared by the passes."""

from __future__ import annotations

from torch import nn


def replace_module(root: nn.Module, dotted_name: str, new: nn.Module) -> None:
    """Put `new` where `root.get_submodule(dotted_name)` was."""
    parent_name, _, child = dotted_name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)
