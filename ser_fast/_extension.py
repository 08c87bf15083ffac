"""Access to the compiled extension ``ser_fast._C``, with an error that says how to build it."""

from __future__ import annotations

import functools
import importlib
from types import ModuleType


class ExtensionNotBuiltError(ImportError):
    """Raised when a compiled backend is asked for but ``ser_fast._C`` was not built."""


@functools.cache
def extension() -> ModuleType:
    try:
        # By name: the compiled module is the one thing here that is not a layer of the package.
        compiled = importlib.import_module("ser_fast._C")
    except ImportError as err:
        raise ExtensionNotBuiltError(
            "the compiled extension ser_fast._C is not built or failed to load "
            f"({err}). Build it with `make build` (or `pip install -e . --no-build-isolation` "
            "from the repository root, with torch==2.13.0 installed first), or pass "
            'backend="torch" to use the pure-PyTorch path.'
        ) from err
    return compiled


def extension_available() -> bool:
    try:
        extension()
    except ExtensionNotBuiltError:
        return False
    return True


def cpu_isa() -> str:
    """The instruction set the compiled kernels run with: ``"avx512"``, ``"avx2"`` or ``"baseline"`` (the widest this
    CPU supports, detected at run time, unless pinned with :func:`set_cpu_isa`)."""
    return extension().cpu_isa()


def set_cpu_isa(name: str | None) -> None:
    """Pins the compiled kernels to one instruction set (for tests and benchmarks); ``None`` restores the best supported
    one. Raises ValueError for an unknown name or one this CPU lacks."""
    ext = extension()
    ext.set_cpu_isa(ext.best_cpu_isa() if name is None else name)
