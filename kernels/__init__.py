"""Triton kernels of ser_fast, installed as ``ser_fast.kernels``: top-k expert dispatch, attention
pooling and the batched orthogonality loss. Each has its pure-PyTorch reference and public function
in ``ser_fast.ops``."""

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
