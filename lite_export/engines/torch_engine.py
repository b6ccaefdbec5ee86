"""PyTorch engine: the frozen encoder in eager mode (optionally torch.compile), ranking through
:func:`lite_export.kernels.rank` (the fused Triton kernel on CUDA, the CPU path elsewhere)."""

from __future__ import annotations

import numpy as np
import torch

from lite_export.engines.base import Engine


class TorchEngine(Engine):
    """Options: ``device`` ("cpu" | "cuda", default cuda when available), ``compile`` (bool),
    ``ranker`` ("auto": :func:`lite_export.kernels.rank`; "torch": plain matmul + topk, the
    unfused baseline the benchmarks compare with)."""

    name = "torch"

    def _load_impl(self) -> None:
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel

        from lite_export.exporters.onnx import FrozenUserEncoder

        device = self.options.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")
        cfg = dict(self.manifest["rec_llm_config"])
        backbone = AutoModel.from_config(AutoConfig.for_model(cfg.pop("model_type"), **cfg))
        state = load_file(str(self.path / "encoder.safetensors"))
        table = state["item_table"]
        encoder = FrozenUserEncoder(table, backbone.to(table.dtype))
        encoder.load_state_dict(state)
        head = load_file(str(self.path / "head.safetensors"))
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        self.weight = head["weight"].to(self.device, table.dtype)
        self.bias = head["bias"].to(self.device, table.dtype)
        self._forward = torch.compile(self.encoder) if self.options.get("compile") else self.encoder

    @torch.inference_mode()
    def _recommend_impl(self, item_ids: np.ndarray, exclude_ids: np.ndarray, k: int):
        from lite_export.kernels import rank, topk_projection_reference

        ids = torch.from_numpy(item_ids).to(self.device)
        h = self._forward(ids)  # [B, d]
        exclude = torch.from_numpy(exclude_ids).to(self.device)
        w, b = self.weight, self.bias
        if self.device.type == "cpu" and h.dtype != torch.float32:  # the CPU path ranks in fp32
            h, w, b = h.float(), w.float(), b.float()
        ranker = topk_projection_reference if self.options.get("ranker") == "torch" else rank
        scores, indices = ranker(h, w, b, k, exclude)
        return scores.float().cpu().numpy(), indices.cpu().numpy()
