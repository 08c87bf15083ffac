"""Access to the compiled extension ``ser_fast._C``, with an error that says how to build it."""

from __future__ import annotations

import functools
from types import ModuleType


class ExtensionNotBuiltError(ImportError):
    """Raised when a compiled backend is asked for but ``ser_fast._C`` was not built."""


@functools.cache
def extension() -> ModuleType:
    try:
        from ser_fast import _C
    except ImportError as err:
        raise ExtensionNotBuiltError(
            "the compiled extension ser_fast._C is not built or failed to load "
            f"({err}). Build it with `make build` (or `pip install -e . --no-build-isolation` "
            "from the repository root, with torch==2.13.0 installed first), or pass "
            'backend="torch" to use the pure-PyTorch path.'
        ) from err
    return _C


def extension_available() -> bool:
    try:
        extension()
    except ExtensionNotBuiltError:
        return False
    return True
