"""Builds the compiled extension ser_fast._C from csrc/ (metadata lives in pyproject.toml)."""

import os
from pathlib import Path

from setuptools import setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = Path(__file__).parent
SOURCES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "csrc").rglob("*.c*") if p.suffix in {".cc", ".cpp"})

# `make` installs the package editable with SER_FAST_SKIP_EXTENSION=1, then builds the extension in
# place with ninja so that a change in csrc/ recompiles only what changed.
setup(
    ext_modules=[] if os.environ.get("SER_FAST_SKIP_EXTENSION") == "1" else [
        CppExtension(
            name="ser_fast._C",
            sources=SOURCES,
            # -fno-math-errno and -fno-trapping-math let sqrt and selects vectorise. No -march: each
            # kernel is compiled per ISA with function attributes and picked at run time (csrc/common/isa.h);
            # -Wno-psabi silences notes about passing wide vectors, which only happens inside inlined code.
            extra_compile_args=[
                "-O3", "-std=c++20", "-fvisibility=hidden", "-fno-math-errno", "-fno-trapping-math", "-fopenmp",
                "-Wno-psabi",
            ],
            # at::parallel_for is header code: it needs OpenMP here; libgomp resolves to torch's copy.
            extra_link_args=["-fopenmp"],
        )
    ],
    cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)},
)
