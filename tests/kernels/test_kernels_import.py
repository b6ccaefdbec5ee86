"""``import lite_export.kernels`` must stay lean: no Triton, ONNX Runtime, onnx or faiss."""

from __future__ import annotations

import json
import subprocess
import sys


def test_import_does_not_load_triton_or_onnxruntime():
    code = (
        "import json, sys; import lite_export.kernels as k; "
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'triton', 'onnxruntime', 'onnx', 'faiss'}); "
        "print(json.dumps({'heavy': heavy, 'cuda': __import__('torch').cuda.is_initialized(), "
        "'has_rank': callable(k.rank)}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"heavy": [], "cuda": False, "has_rank": True}, result


def test_topk_projection_attribute_is_lazy():
    code = (
        "import sys, lite_export.kernels as k; assert 'triton' not in sys.modules; "
        "f = k.topk_projection; print(f.__module__, 'triton' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["lite_export.kernels.fused", "True"]


def test_public_name_is_the_function_after_the_module_is_imported():
    # the kernel module is imported first (as the engines and rank() do); the public name in
    # kernels.__all__ must still be the function, not a submodule of the same name
    code = (
        "import lite_export.kernels.fused, lite_export.kernels as k; "
        "from lite_export.kernels import topk_projection; "
        "print(callable(topk_projection), type(topk_projection).__name__, "
        "topk_projection is k.topk_projection, all(hasattr(k, n) for n in k.__all__))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "function", "True", "True"]
