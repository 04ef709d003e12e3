"""Grouped-query attention on the CPU without copying the KV cache.

transformers' `sdpa` attention gives torch's kernel the key/value heads repeated to the query
heads' count (`repeat_kv`, a copy of the whole cache in every layer at every decoding step)
whenever there is an attention mask, i.e. whenever a batch is padded. torch's CPU kernel reads
grouped heads itself (`enable_gqa`) with the same result, bit for bit: SmolLM2-135M (9 query heads,
3 key/value heads) decodes a padded batch of 8 real prompts 1.5–1.7× faster (benchmarks/README.md). This
module registers that variant under transformers' public attention interfaces as `CPU_GQA_SDPA`
and `use_cpu_gqa` switches a model on the CPU to it; a GPU keeps transformers' own choice.
"""

from __future__ import annotations

CPU_GQA_SDPA = "nep_cpu_gqa_sdpa"


def gqa_sdpa_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling: float | None = None,
                     is_causal: bool | None = None, **kwargs):
    """One attention call: `query` (batch, heads, q, dim), `key`/`value` (batch, kv_heads, k, dim),
    `attention_mask` a boolean or additive 4-D mask or None. Returns ((batch, q, heads, dim), None)."""
    import torch

    if kwargs.get("position_bias") is not None or kwargs.get("output_attentions"):
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    q_len = query.shape[2]
    causal = getattr(module, "is_causal", True) if is_causal is None else is_causal
    causal = bool(q_len > 1 and attention_mask is None and causal)
    if causal and key.shape[2] > q_len:  # an unmasked causal prefill over a pre-sized cache: the seen part only
        key, value = key[:, :, :q_len], value[:, :, :q_len]
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal,
        enable_gqa=query.shape[1] != key.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Register `CPU_GQA_SDPA` with transformers (attention and its mask, the sdpa mask); idempotent."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(CPU_GQA_SDPA, gqa_sdpa_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(CPU_GQA_SDPA, sdpa_mask)
    return CPU_GQA_SDPA


def use_cpu_gqa(model, device: str) -> bool:
    """Switch `model` to `CPU_GQA_SDPA` when it runs on the CPU with transformers' `sdpa` attention,
    its class dispatches attention through transformers' interface (`is_backend_compatible`: not every
    architecture or remote-code model does) and it has fewer key/value heads than query heads;
    otherwise leave it. Returns whether it switched."""
    config = getattr(model, "config", None)
    if device != "cpu" or config is None or getattr(config, "_attn_implementation", None) != "sdpa":
        return False
    compatible = getattr(type(model), "is_backend_compatible", None)
    if compatible is None or not compatible():
        return False
    heads, kv_heads = getattr(config, "num_attention_heads", None), getattr(config, "num_key_value_heads", None)
    if not heads or not kv_heads or kv_heads == heads:
        return False
    model.set_attn_implementation(register())
    return True
