import atexit
import os
import shutil
import sys
import warnings

# The Triton kernels run on CPU tensors through Triton's interpreter; Triton reads this when a kernel
# module is imported, so it is set before anything imports ser_fast.kernels.
os.environ.setdefault("TRITON_INTERPRET", "1")
import tempfile
from pathlib import Path

# Inductor's on-disk cache outlives a checkout and keys a graph without the custom ops' fake implementations, so a graph
# compiled against an earlier schema of a ser_fast op would be replayed; each test session compiles afresh.
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="ser_fast_inductor_")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _restore_threads():
    """Tests that change torch's thread count must not leak it into the next test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Tiny ops on two threads spin-wait against the other test worker; one thread is faster here."""
    torch.set_num_threads(1)


@pytest.fixture
def quiet_hf_mask_warning():
    """Hugging Face's WavLM attention warns about mismatched mask types whenever padding is present."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*key_padding_mask.*")
        yield
