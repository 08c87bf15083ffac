"""The fused ops of the models, each with ``backend="auto" | "triton" | "torch" | "reference"``.

- :func:`attention_pool`: masked softmax attention pooling over time (weighted mean, optional std).
- :func:`orthogonality_loss`: DSNet's ``||Z1ᵀ Z2||_F²`` between column-z-scored embeddings, batched.
- :func:`moe`: frame-wise top-k mixture of experts with task-specific routers sharing the experts.

Each op's folder holds its reference (``naive.py``), its torch path (``cpu.py``), its registration (``op.py``: a
``FusedOp``, which torch.compile and torch.export see as the custom ops ``ser_fast::<op>`` and
``ser_fast::<op>_backward`` and eager code calls as a plain autograd function) and a README with the maths; its Triton
kernels are ``ser_fast.kernels.<op>``. ``ser_fast.ops.export`` says what each op becomes outside PyTorch (its reference,
for ONNX).
"""

from ser_fast.ops.attention_pool import attention_pool
from ser_fast.ops.moe import MoEAux, moe
from ser_fast.ops.orthogonality_loss import orthogonality_loss

__all__ = ["MoEAux", "attention_pool", "moe", "orthogonality_loss"]
