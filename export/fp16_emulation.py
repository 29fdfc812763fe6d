"""fp16 range and rounding on a CPU at fp32 speed: the scorer with weights and every Linear's input and output rounded to fp16.

Overflow becomes inf as in fp16; products accumulate in fp32 as on tensor cores. Softmax
probabilities and SiLU outputs are not rounded before their next product, so precision is slightly
better than real fp16 while the range is the same: an 8k-token check of the real shapes on a CPU.
"""

from __future__ import annotations


def emulate_fp16(scorer):
    """Round weights, and every Linear's input and output, to fp16 values while computing in fp32 (in place)."""
    import torch
    from torch import nn

    def to_half(tensor):
        return tensor.to(torch.float16).to(tensor.dtype)

    with torch.no_grad():
        for parameter in scorer.body.parameters():
            parameter.copy_(to_half(parameter))
    for module in scorer.body.modules():
        if isinstance(module, nn.Linear):
            module.register_forward_pre_hook(lambda _, args: tuple(to_half(a) for a in args))
            module.register_forward_hook(lambda _, __, output: to_half(output))
    return scorer
