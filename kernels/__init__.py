"""Triton kernels of ser_fast, installed as ``ser_fast.kernels``.

The fused ops (top-k expert dispatch, attention pooling, the batched orthogonality loss) land here
with issue #3; each has its pure-PyTorch reference and public function in ``ser_fast.ops``.
"""
