"""Kernel tests run on CPU through Triton's interpreter; on a CUDA machine they launch for real.

``TRITON_INTERPRET=1`` must be set before ``lite_export.kernels.fused`` is imported
(``@triton.jit`` reads it at decoration), so it is set here, at collection, whenever no CUDA
device is visible and the variable was not set by the caller.
"""

from __future__ import annotations

import os

import torch

if "TRITON_INTERPRET" not in os.environ and not torch.cuda.is_available():
    os.environ["TRITON_INTERPRET"] = "1"


def _speed_up_interpreter_xor_sum() -> None:
    """Give Triton's interpreter a numpy fast path for ``xor_sum``.

    ``tl.sort``/``tl.topk``/``tl.bitonic_merge`` find each compare-exchange partner with
    ``xor_sum`` over a size-2 axis. The interpreter has numpy paths for min/max/sum but runs any
    other reduction element by element in Python (~80 ms per [32, 64] compare-exchange), which
    would make these tests take minutes. Same semantics, numpy speed; the interpreter only.
    """
    if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        return
    import numpy as np
    import triton.language as tl
    from triton.runtime import interpreter

    ops = interpreter.ReduceOps
    if getattr(ops, "_lite_export_xor_patch", False):
        return
    original = ops.apply_impl

    def apply_impl(self, input):  # noqa: A002 - the interpreter's signature
        if self.combine_fn == tl.standard._xor_combine:
            x = input[0]
            data = np.bitwise_xor.reduce(x.handle.data, axis=self.axis, keepdims=self.keep_dims)
            return self.to_tensor(data, x.dtype)
        return original(self, input)

    ops.apply_impl = apply_impl
    ops._lite_export_xor_patch = True


_speed_up_interpreter_xor_sum()
