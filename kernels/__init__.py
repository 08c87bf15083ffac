"""Triton kernels of ser_fast, installed as ``ser_fast.kernels``.

- ``attention_pool``: masked softmax attention pooling over time, forward and backward kernels.
- ``orthogonality_loss``: DSNet's batched ``||Z1ᵀ Z2||_F²``, forward and backward kernels.
- ``moe``, ``moe_routing``, ``moe_grouped_gemm``, ``moe_combine``, ``moe_activation``: the
  top-k mixture of experts (routing, grouped expert GEMMs over the sorted pairs, combine).
- ``_utils``: what the launchers share (interpreter detection, rounding, device checks).

Each op module's ``forward`` and ``backward`` are the "triton" backend of the op's
``torch.library`` custom op in ``ser_fast.ops.<op>.op``; the public functions, the references and
the torch paths are in ``ser_fast.ops``. Set ``TRITON_INTERPRET=1`` before the first import to run
the kernels on CPU tensors through Triton's interpreter.
"""

import importlib.util
import os
import sys
from importlib.machinery import PathFinder

# Python run from the repository root (`python -m pytest`, `python -c ...`) puts the root first on
# sys.path, where this folder is a package named plain `kernels`, the name of a dependency
# (transformers imports Hugging Face's `kernels`). Imported under that name, this file hands the
# import to the first `kernels` found on sys.path outside the repository root, or fails as if the
# folder were not there, so no code of the project is ever importable as `kernels`. (A folder
# without __init__.py would step aside by itself, but setuptools' editable install cannot map a
# namespace folder into the regular package ser_fast, so the in-place checkout would lose it.)
if __name__ != "ser_fast.kernels":

    def _is_root(entry: str, root: str) -> bool:
        try:  # samefile: a symlink, a bind mount or another spelling of the root is the root too
            return os.path.samefile(entry or os.curdir, root)
        except OSError:
            return False

    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _elsewhere = [p for p in sys.path if not _is_root(p, _root)]
    _spec = PathFinder.find_spec(__name__, _elsewhere)
    if _spec is None or _spec.loader is None or (_spec.origin and _is_root(os.path.dirname(
            os.path.dirname(os.path.abspath(_spec.origin))), _root)):
        raise ModuleNotFoundError(f"No module named {__name__!r}", name=__name__)
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[__name__] = _module
    _spec.loader.exec_module(_module)
