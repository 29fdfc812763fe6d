"""Qwen2 body with the score head folded to one dot product: logit("1") - logit("0") at the last position."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from mxbai_triton.core.model import ModelSpec

COMPUTE_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# Pads come after every real token of a row: causal attention alone keeps real tokens from seeing them.
PADDING_SIDE = "right"


def _rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    # Reduction in fp32 whatever the compute dtype: fp16 squares overflow.
    x = x.float()
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight.float()


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x = x.float()
    return x * cos + _rotate_half(x) * sin


class FoldedHeadScorer(nn.Module):
    """Scores right-padded [batch, seq] token ids with a Hugging Face Qwen2ForCausalLM's weights.

    Right padding: row r holds its tokens at positions 0..len_r-1 and pads after them, so causal
    attention needs no mask tensor (no real token attends to a later position). Every layer but the
    last runs `scaled_dot_product_attention(is_causal=True, enable_gqa=True)`, exported as an ONNX
    `Attention` node (opset 23) with Q, K and V only: the form TensorRT and ONNX Runtime run as
    fused kernels, no tensor holding two sequence axes. RoPE is relative, so the scores equal the
    reference's on its left-padded batches. Tied embeddings make the head
    logits[16] - logits[15] = norm(h_last) . (E[16] - E[15]); the last layer runs for each row's
    last real token only (its index from the mask's length): one query per row attending keys
    0..last, written as MatMul/Softmax/MatMul in fp32 (its scores are [b, kv_heads, groups, s], one
    sequence axis), then the MLP on that row.

    Pad positions: K and V are zeroed there in every layer. A fused kernel multiplies a masked
    probability (0) by V, and an additive mask adds to Q.K: a non-finite K or V at a pad position
    (fp16 overflow on a run of pad tokens) would otherwise turn real rows' outputs into NaN.

    Precision: weights, matmuls and Q/K/V of the causal layers run in `compute_dtype` (RoPE is
    applied in fp32, then cast); the residual stream, RMSNorm, the last layer's attention and the
    final dot stay fp32 (Qwen2 overflows fp16 there).
    """

    padding_side = PADDING_SIDE

    def __init__(self, causal_lm: nn.Module, spec: ModelSpec, compute_dtype: str = "fp32"):
        super().__init__()
        config = causal_lm.config
        if getattr(config, "use_sliding_window", False):
            raise NotImplementedError("sliding-window attention is not supported (mxbai-rerank-v2 does not use it)")
        self.dtype_ = COMPUTE_DTYPES[compute_dtype]
        self.body = causal_lm.model
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.eps = config.rms_norm_eps
        head = causal_lm.get_output_embeddings().weight.detach().float()
        self.register_buffer("direction", (head[spec.yes_token_id] - head[spec.no_token_id]).clone())
        inv_freq = 1.0 / (config.rope_theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float32) / self.head_dim))
        self.register_buffer("inv_freq", inv_freq)
        self.body.to(self.dtype_)

    def _attention(self, layer, x, cos, sin, real):
        """Causal self-attention of every position; `real` [b, 1, s, 1] marks the positions before each row's pads."""
        attn = layer.self_attn
        b, s, _ = x.shape
        q = attn.q_proj(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
        k = attn.k_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        v = attn.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2)
        q, k = _rope(q, cos, sin).to(self.dtype_), _rope(k, cos, sin).to(self.dtype_)
        # where, not a product: 0 * inf is NaN.
        k, v = torch.where(real, k, 0.0), torch.where(real, v, 0.0)
        # K/V keep their kv_heads: the op broadcasts query groups over them (GQA), never repeating K/V.
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
        return attn.o_proj(out.transpose(1, 2).reshape(b, s, self.heads * self.head_dim))

    def _last_token_attention(self, layer, x, cos, sin, real, last):
        """Attention of each row's last real token over keys 0..last, in fp32 with plain ops.

        No fused kernel is needed, and there is nothing for one to save: the scores are
        [b, kv_heads, groups, s], one sequence axis. As an ONNX `Attention` it would become an
        IAttention that is not decomposable (onnx-tensorrt onnxOpImporters.cpp,
        DEFINE_BUILTIN_OP_IMPORTER(Attention); TensorRT include/NvInfer.h:6904), whose build fails
        without a fused kernel, and a one-query masked attention has no documented one.
        """
        attn = layer.self_attn
        b, s, _ = x.shape
        groups = self.heads // self.kv_heads
        k = _rope(attn.k_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2), cos, sin)
        v = attn.v_proj(x).view(b, s, self.kv_heads, self.head_dim).transpose(1, 2).float()
        k, v = torch.where(real, k, 0.0), torch.where(real, v, 0.0)
        x_last = x.gather(1, last[:, None, None].expand(-1, 1, x.shape[-1]))
        q = attn.q_proj(x_last).view(b, self.kv_heads, groups, self.head_dim)  # head h = kv head h // groups
        q = _rope(q, cos[last][:, None, None], sin[last][:, None, None]) * self.head_dim**-0.5
        scores = q @ k.transpose(2, 3)  # [b, kv_heads, groups, s]
        # Key 0 is always visible, so no row is fully masked.
        scores = torch.where(real.transpose(2, 3), scores, torch.finfo(torch.float32).min)
        out = torch.softmax(scores, dim=-1) @ v  # [b, kv_heads, groups, head_dim]
        return attn.o_proj(out.reshape(b, 1, self.heads * self.head_dim).to(self.dtype_))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        seq = input_ids.shape[1]
        positions = torch.arange(seq, device=input_ids.device, dtype=torch.float32)
        angles = positions[:, None] * self.inv_freq[None, :]
        angles = torch.cat((angles, angles), dim=-1)  # [s, d], broadcast over batch and heads
        cos, sin = angles.cos(), angles.sin()
        last = attention_mask.sum(dim=1) - 1  # each row's last real token
        # where, not clamp: TensorRT's Clip takes float types only (export/trt_operators.md).
        last = torch.where(last < 0, torch.zeros_like(last), last)
        real = (torch.arange(seq, device=input_ids.device)[None, :] <= last[:, None])[:, None, :, None]

        hidden = self.body.embed_tokens(input_ids).float()  # residual stream: fp32
        layers = self.body.layers
        for i, layer in enumerate(layers):
            normed = _rms_norm(hidden, layer.input_layernorm.weight, self.eps).to(self.dtype_)
            if i == len(layers) - 1:
                # Only the last real token feeds the head: the last layer runs for one row per sequence.
                hidden = hidden.gather(1, last[:, None, None].expand(-1, 1, hidden.shape[-1]))
                attn_out = self._last_token_attention(layer, normed, cos, sin, real, last)
            else:
                attn_out = self._attention(layer, normed, cos, sin, real)
            hidden = hidden + attn_out.float()
            normed = _rms_norm(hidden, layer.post_attention_layernorm.weight, self.eps).to(self.dtype_)
            mlp = layer.mlp
            hidden = hidden + mlp.down_proj(F.silu(mlp.gate_proj(normed)) * mlp.up_proj(normed)).float()
        last_hidden = _rms_norm(hidden[:, 0], self.body.norm.weight, self.eps)
        return (last_hidden @ self.direction)[:, None]
