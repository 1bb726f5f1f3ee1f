"""The DefinitionEMB model: a pretrained LM body and a projection W from its hidden states to rows.

ẽ(p_k) = W · h_g(k), W ∈ R^{h_e × h_s}, no bias, initialised N(0, h_s^-1/2) (METHOD §7). The body is
the loaded checkpoint itself (its own class, so nothing is re-initialised); its token tables stay
frozen unless asked otherwise.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from defemb.method.masking import Example


@dataclass
class Batch:
    input_ids: torch.Tensor  # (B, T)
    attention_mask: torch.Tensor  # (B, T)
    rows: torch.Tensor  # (N,) batch index of each prediction
    positions: torch.Tensor  # (N,) position of each prediction (in the decoder sequence for seq2seq)
    targets: torch.Tensor  # (N,) token ids whose pretrained rows are the targets
    decoder_input_ids: torch.Tensor | None = None  # (B, S)
    decoder_attention_mask: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return Batch(**{k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in moved.items()})

    @property
    def tokens(self) -> int:
        """Useful (non-padding) tokens, for throughput figures."""
        total = int(self.attention_mask.sum())
        return total + (int(self.decoder_attention_mask.sum()) if self.decoder_attention_mask is not None else 0)


def pad_batch(sequences: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and their attention mask, the mask built from lengths (a pad id can be a real token).
    # (B, L), (B, L)"""
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for k, s in enumerate(sequences):
        ids[k, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[k, : len(s)] = 1
    return ids, mask


def collate(examples: list[Example], pad_id: int) -> Batch:
    """Pad to the longest example of the batch (batches are length-bucketed, so padding is small)."""
    input_ids, attention_mask = pad_batch([e.input_ids for e in examples], pad_id)
    rows = torch.tensor([k for k, e in enumerate(examples) for _ in e.positions], dtype=torch.long)
    positions = torch.tensor([p for e in examples for p in e.positions], dtype=torch.long)
    targets = torch.tensor([t for e in examples for t in e.targets], dtype=torch.long)
    batch = Batch(input_ids, attention_mask, rows, positions, targets)
    if examples[0].decoder_input_ids is not None:
        decoder = pad_batch([e.decoder_input_ids for e in examples], pad_id)
        batch.decoder_input_ids, batch.decoder_attention_mask = decoder
    return batch


class DefinitionEMB(nn.Module):
    """Body + projection head; ``forward`` returns one predicted row per target. # (N, h_e)"""

    bf16 = False  # read rows under bfloat16 autocast (`read_rows`; set from a run trained with --bf16)

    def __init__(self, body: nn.Module, kind: str, row_size: int, seed_generator: torch.Generator | None = None):
        super().__init__()
        self.body = body
        self.kind = kind
        hidden = body.config.get_text_config(decoder=True).hidden_size  # the states we read (decoder's for seq2seq)
        self.head = nn.Linear(hidden, row_size, bias=False)
        with torch.no_grad():
            self.head.weight.normal_(0.0, hidden**-0.5, generator=seed_generator)

    def hidden_states(self, batch: Batch) -> torch.Tensor:
        """Last hidden state at every position the batch predicts from. # (N, h_s)"""
        if self.kind == "encoder-decoder":
            out = self.body(
                input_ids=batch.input_ids,
                attention_mask=batch.attention_mask,
                decoder_input_ids=batch.decoder_input_ids,
                decoder_attention_mask=batch.decoder_attention_mask,
                output_hidden_states=True,
                use_cache=False,
            )
            states = out.decoder_hidden_states[-1]  # (B, S, h)
        else:
            base = self.body.base_model
            states = base(input_ids=batch.input_ids, attention_mask=batch.attention_mask).last_hidden_state
        return states[batch.rows, batch.positions]

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.head(self.hidden_states(batch))


def read_rows(model: DefinitionEMB, batch) -> torch.Tensor:
    """The model's rows for a batch as float32, in the precision its run trained and validated in (bfloat16
    autocast after `train --bf16`): W was fitted to those states, so reading them in float32 is a different
    predictor from the one validation chose. # (N, h_e)"""
    device = next(model.parameters()).device.type
    with torch.autocast(device, dtype=torch.bfloat16, enabled=model.bf16):
        return model(batch).float()
