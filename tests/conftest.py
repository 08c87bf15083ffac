import os
import sys

# The Triton kernels run on CPU tensors through Triton's interpreter; Triton reads this when a kernel
# module is imported, so it is set before anything imports ser_fast.kernels.
os.environ.setdefault("TRITON_INTERPRET", "1")
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _restore_threads():
    """Tests that change torch's thread count must not leak it into the next test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)
