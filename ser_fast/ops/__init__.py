"""The fused ops of the models, each with ``backend="auto" | "triton" | "torch" | "reference"``.

- :func:`attention_pool`: masked softmax attention pooling over time (weighted mean, optional std).
- :func:`orthogonality_loss`: DSNet's ``||Z1ᵀ Z2||_F²`` between column-z-scored embeddings, batched.
- :func:`moe`: frame-wise top-k mixture of experts with task-specific routers sharing the experts.

Each op's folder holds its reference (``naive.py``), its torch path (``cpu.py``), its
``torch.library`` custom ops (``op.py``: ``ser_fast::attention_pool``, ``ser_fast::orthogonality_loss``,
``ser_fast::moe_experts``, ``ser_fast::moe_routing`` and their ``*_backward`` ops, with fakes and
autograd, so torch.compile and torch.export take them as single nodes) and a README with the
maths; its Triton kernels are ``ser_fast.kernels.<op>``. ``ser_fast.ops.export`` says what each op
becomes outside PyTorch (its reference, for ONNX).
"""

from ser_fast.ops.attention_pool import attention_pool
from ser_fast.ops.moe import MoEAux, moe
from ser_fast.ops.orthogonality_loss import orthogonality_loss

__all__ = ["MoEAux", "attention_pool", "moe", "orthogonality_loss"]
