"""Summarization models: load any HF seq2seq checkpoint (or warm-start a tied encoder-decoder from an
encoder-only one), fine-tune it with a plain loop, decode with beam search."""

from __future__ import annotations

import contextlib
import copy
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from defemb.errors import DefembError
from defemb.evaluation.summ_data import Encoded, collate
from defemb.method.data import batch_plan
from defemb.method.model import pad_batch
from defemb.models import load_tokenizer, resolve_model_name

if TYPE_CHECKING:
    from defemb.evaluation.summarization import SummarizationConfig

#: Model types trained with a task prefix ("summarize: ...") in their pretraining mixture.
PREFIXED_TYPES = ("t5", "mt5", "umt5", "longt5")


# ----------------------------------------------------------------------------------------------- model


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Warm-starting prints a long load report of expected missing weights (cross-attention): hide it."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def model_route(config) -> str:
    """``seq2seq`` (load as is) or ``warm-start`` (encoder-only: build a tied encoder-decoder from it)."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES,
    )

    seq2seq_types = MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES
    if getattr(config, "is_encoder_decoder", False) or config.model_type in seq2seq_types:
        return "seq2seq"
    archs = config.architectures or []
    if getattr(config, "is_decoder", False) or any(a.endswith(("CausalLM", "LMHeadModel")) for a in archs):
        raise DefembError(f"{config.model_type} ({', '.join(archs)}) is decoder-only; summarization here needs "
                          "an encoder-decoder or an encoder-only checkpoint to warm-start one")
    if config.model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise DefembError(f"cannot warm-start an encoder-decoder from model type '{config.model_type}': "
                          "transformers has no decoder with cross-attention for it")
    return "warm-start"


def tie_encoder_decoder(encoder: torch.nn.Module, decoder: torch.nn.Module) -> int:
    """Share every decoder parameter whose name and shape the encoder also has (cross-attention stays the
    decoder's own) and re-tie the LM head to the shared word embeddings; returns the count tied.

    transformers 5 dropped ``tie_encoder_decoder``; parameters (not modules) are shared so the decoder's
    layers keep their own causal-attention flags."""
    head = decoder.get_output_embeddings()
    head_tied = head is not None and head.weight is decoder.get_input_embeddings().weight
    source = dict(encoder.named_parameters())
    tied = 0
    for module_name, module in decoder.base_model.named_modules():
        for name, param in list(module._parameters.items()):
            key = f"{module_name}.{name}" if module_name else name
            if param is None or "crossattention" in key or key not in source:
                continue
            if source[key].shape != param.shape:
                continue
            module._parameters[name] = source[key]
            tied += 1
    if head_tied:
        head.weight = decoder.get_input_embeddings().weight
    return tied


def load_seq2seq(name: str, cfg: SummarizationConfig) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """Model, tokenizer and facts (route, model type, tied parameter count) for one checkpoint."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, EncoderDecoderModel

    path = resolve_model_name(name)
    try:
        hf_config = AutoConfig.from_pretrained(path, trust_remote_code=cfg.trust_remote_code)
    except Exception as exc:  # OSError / ValueError / hub errors: the user needs one line
        raise DefembError(f"cannot load a model config from '{name}': {str(exc).strip().splitlines()[0]}") from exc
    route = model_route(hf_config)
    safetensors = True if any(Path(path).glob("*.safetensors")) else None
    tokenizer = load_tokenizer(path, cfg.trust_remote_code)
    facts: dict[str, Any] = {"route": route, "model_type": hf_config.model_type}
    with _quiet_transformers():
        if route == "seq2seq":
            model = AutoModelForSeq2SeqLM.from_pretrained(path, trust_remote_code=cfg.trust_remote_code,
                                                          use_safetensors=safetensors)
        else:
            model = EncoderDecoderModel.from_encoder_decoder_pretrained(
                path, path, encoder_use_safetensors=safetensors, decoder_use_safetensors=safetensors)
            if cfg.tie_encoder_decoder:
                facts["tied_parameters"] = tie_encoder_decoder(model.encoder, model.decoder)
            start = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
            end = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
            if start is None or end is None or tokenizer.pad_token_id is None:
                raise DefembError(f"'{name}': warm-starting needs cls/bos, sep/eos and pad tokens in its tokenizer")
            for target in (model.config, model.generation_config):
                target.decoder_start_token_id, target.bos_token_id = start, start
                target.eos_token_id, target.pad_token_id = end, tokenizer.pad_token_id
    if tokenizer.pad_token_id is None:
        raise DefembError(f"'{name}': the tokenizer has no pad token; batches cannot be padded")
    if model.generation_config.decoder_start_token_id is None and model.config.decoder_start_token_id is None:
        raise DefembError(f"'{name}': the model config names no decoder_start_token_id")
    return model, tokenizer, facts


def source_limit(model: torch.nn.Module, tokenizer, wanted: int) -> int:
    """``wanted`` clipped to the encoder's position table and the tokenizer's own limit."""
    limits = [wanted]
    encoder_config = getattr(model.config, "encoder", model.config)
    if getattr(encoder_config, "max_position_embeddings", None):
        offset = 2 if encoder_config.model_type in ("roberta", "xlm-roberta", "camembert") else 0
        limits.append(encoder_config.max_position_embeddings - offset)
    if 0 < tokenizer.model_max_length < 1_000_000:
        limits.append(tokenizer.model_max_length)
    return min(limits)


def default_prefix(model_type: str) -> str:
    return "summarize: " if model_type in PREFIXED_TYPES else ""


# --------------------------------------------------------------------------------------- train / decode


def train(model, data: Encoded, cfg: SummarizationConfig, seed: int, pad_id: int, device: str,
          valid: Encoded | None = None) -> dict[str, Any]:
    """Plain loop: AdamW, linear warm-up then linear decay to 0, token-budget batches, clipped gradients."""
    plans = [batch_plan(data.lengths, cfg.batch_tokens, seed, epoch) for epoch in range(cfg.epochs)]
    steps = sum(math.ceil(len(p) / cfg.accumulate) for p in plans)
    if cfg.max_steps:
        steps = min(steps, cfg.max_steps)
    warmup = int(round(cfg.warmup_ratio * steps))
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "norm" in name.lower() else decay).append(param)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.999))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / (warmup + 1) if s < warmup else max(0.0, (steps - s) / max(1, steps - warmup)))
    log: dict[str, Any] = {"optimizer_steps": steps, "warmup_steps": warmup, "loss": [], "valid_loss": []}
    step, pending, losses = 0, 0, []
    model.train()
    progress = tqdm(total=steps, desc="train", unit=" steps")
    for plan in plans:
        for indices in plan:
            if step >= steps:
                break
            loss = _loss(model, collate(data, indices, pad_id, device))
            (loss / cfg.accumulate).backward()
            losses.append(float(loss.detach()))
            pending += 1
            if pending == cfg.accumulate or indices is plan[-1]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                log["loss"].append(round(float(np.mean(losses)), 5))
                progress.update(1)
                progress.set_postfix(loss=f"{log['loss'][-1]:.3f}")
                step, pending, losses = step + 1, 0, []
        if valid is not None:
            log["valid_loss"].append(round(mean_loss(model, valid, cfg.batch_tokens, pad_id, device), 5))
            model.train()
        if step >= steps:
            break
    progress.close()
    model.eval()
    return log


def _loss(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with warnings.catch_warnings():
        # EncoderDecoderModel warns on every call with labels about a v4.12 change that does not concern us
        warnings.filterwarnings("ignore", message="Version v4.12.0", category=FutureWarning)
        return model(**batch).loss


@torch.no_grad()
def mean_loss(model, data: Encoded, batch_tokens: int, pad_id: int, device: str) -> float:
    """Teacher-forced token-level cross-entropy over a whole split."""
    model.eval()
    total, tokens = 0.0, 0
    for indices in batch_plan(data.lengths, batch_tokens, 0, 0):
        batch = collate(data, indices, pad_id, device)
        count = int((batch["labels"] != -100).sum())
        total += float(_loss(model, batch)) * count
        tokens += count
    return total / max(tokens, 1)


@torch.no_grad()
def decode(model, tokenizer, sources: list[list[int]], cfg: SummarizationConfig, pad_id: int, device: str) -> list[str]:
    """Beam search (paper Table 15 beams / length penalty, trigram blocking); outputs in input order."""
    generation = copy.deepcopy(model.generation_config)
    # max_length / min_length from a checkpoint (bart-large-cnn: 142 / 56) would compete with ours
    generation.update(num_beams=cfg.beams, length_penalty=cfg.length_penalty, max_new_tokens=cfg.max_target_length,
                      min_new_tokens=cfg.min_length, no_repeat_ngram_size=3, early_stopping=cfg.beams > 1,
                      do_sample=False, num_return_sequences=1, max_length=None, min_length=None)
    model.generation_config = generation
    model.eval()
    order = sorted(range(len(sources)), key=lambda i: -len(sources[i]))  # similar lengths share a batch
    out: list[str] = [""] * len(sources)
    for start in tqdm(range(0, len(order), cfg.decode_batch_size), desc="decode", unit=" batches"):
        indices = order[start : start + cfg.decode_batch_size]
        input_ids, mask = pad_batch([sources[i] for i in indices], pad_id)
        generated = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device))
        texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
        for i, text in zip(indices, texts, strict=True):
            out[i] = text.strip()
    return out
