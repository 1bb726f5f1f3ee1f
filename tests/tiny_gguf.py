"""A tiny Llama-architecture model with a byte-level BPE vocabulary (like SmolLM2), written as a GGUF file.

The tensors are written the way llama.cpp's converter writes them (Q and K rows permuted for its rotary
layout), so reading the file back must give the very model we started from.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from tiny_models import bytelevel_bpe_tokenizer

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
HEADS, KV_HEADS, LAYERS = 4, 2, 2
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_LAYER_TENSORS = {
    "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}  # fmt: skip


def _permute(weight: torch.Tensor, heads: int) -> torch.Tensor:
    """llama.cpp's reordering of Q/K rows (convert_hf_to_gguf.py, LlamaModel.permute)."""
    return weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(
        weight.shape)


def tiny_llama() -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    tokenizer = bytelevel_bpe_tokenizer(SPECIALS)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS,
                         num_attention_heads=HEADS, num_key_value_heads=KV_HEADS, max_position_embeddings=128,
                         bos_token_id=1, eos_token_id=2, tie_word_embeddings=True, rms_norm_eps=1e-5)
    return LlamaForCausalLM(config).eval(), tokenizer


def write_tiny_gguf(path: str | Path) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """Write the tiny model to ``path`` (float32 tensors); returns the model and tokenizer it holds."""
    import gguf

    model, tokenizer = tiny_llama()
    c = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_rope_dimension_count(c.hidden_size // HEADS)
    writer.add_vocab_size(len(tokenizer))
    tokens = [t for t, _ in sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t in SPECIALS else 1 for t in tokens])  # 3: control token
    merges = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    writer.add_token_merges([" ".join(m) if isinstance(m, list) else m for m in merges])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_chat_template(CHAT_TEMPLATE)
    state = model.state_dict()
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"].numpy())
    writer.add_tensor("output_norm.weight", state["model.norm.weight"].numpy())
    for i in range(LAYERS):
        prefix = f"model.layers.{i}."
        writer.add_tensor(f"blk.{i}.attn_q.weight", _permute(state[prefix + "self_attn.q_proj.weight"], HEADS).numpy())
        writer.add_tensor(f"blk.{i}.attn_k.weight",
                          _permute(state[prefix + "self_attn.k_proj.weight"], KV_HEADS).numpy())
        for ours, theirs in _LAYER_TENSORS.items():
            writer.add_tensor(f"blk.{i}.{ours}.weight", state[prefix + theirs + ".weight"].numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model, tokenizer
