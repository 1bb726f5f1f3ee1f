"""The DefinitionEMB model: a pretrained LM body and a projection W from its hidden states to rows.

ẽ(p_k) = W · h_g(k), W ∈ R^{h_e × h_s}, no bias, initialised N(0, h_s^-1/2) (METHOD §7). The body is
the loaded checkpoint itself (its own class, so nothing is re-initialised); its token tables stay
frozen unless asked otherwise.

With a band head (`train --head band`, the default) the map is W + D_b: a shared W plus a correction for
the frequency band b of the token being predicted. The band is known whenever a row is predicted (it is
the token being embedded), and rare rows sit in a different part of the space from frequent ones, which
one linear map fits badly (docs/results.md, "A head per band"). ``head_of_token`` gives each token id its
map; a new word, which has no id yet, is read with the map a caller names (`extend` and `add-tokens`: the
shared W, measured best).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from defemb.errors import DefembError
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


SHARED = "shared"  # the name of a band head's W without any band's correction


class BandHead(nn.Module):
    """Linear maps without bias. ``weight`` (h_e, h_s) is the shared map, the paper's W; a band head adds one
    correction per band, ``band_delta`` (K, h_e, h_s), and prediction n uses ``weight + band_delta[heads[n]]``.
    Every band trains the shared map and only its own correction, which starts at zero (or at the warm start's
    fit), so a band with few rows stays near the shared map. ``head_of_token`` (V,) names each token id's map;
    it is part of the run, not of the state dict (`train` derives it from the ranking and writes it beside W)."""

    def __init__(self, hidden: int, row_size: int, head_of_token: torch.Tensor, names: tuple[str, ...] = ("all",),
                 seed_generator: torch.Generator | None = None):
        super().__init__()
        self.names = tuple(names)  # what each map is for: ("all",), or the bands
        self.weight = nn.Parameter(torch.empty(row_size, hidden).normal_(0.0, hidden**-0.5, generator=seed_generator))
        self.band_delta = nn.Parameter(torch.zeros(len(names), row_size, hidden)) if len(names) > 1 else None
        self.register_buffer("head_of_token", head_of_token.long(), persistent=False)

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]

    def index(self, name: str) -> int:
        """The map called ``name``: a band's, or ``shared`` (W without a correction, index K); a single map serves
        every name."""
        if len(self.names) == 1:
            return 0
        if name not in (*self.names, SHARED):
            raise DefembError(f"unknown map '{name}' for the head; choose one of {', '.join((*self.names, SHARED))}")
        return len(self.names) if name == SHARED else self.names.index(name)

    def forward(self, states: torch.Tensor, heads: torch.Tensor) -> torch.Tensor:
        """states (N, h_s), heads (N,) map index per prediction (K: the shared map). # (N, h_e)"""
        if self.band_delta is None:
            return states @ self.weight.T
        maps = torch.cat([self.weight + self.band_delta, self.weight[None]])  # (K + 1, h_e, h_s)
        order = torch.argsort(heads, stable=True)
        counts = torch.bincount(heads, minlength=len(maps)).tolist()
        pieces = [chunk @ maps[k].T for k, chunk in enumerate(torch.split(states[order], counts))]
        return torch.cat(pieces)[torch.argsort(order)]  # back to the predictions' order


class DefinitionEMB(nn.Module):
    """Body + projection head; ``forward`` returns one predicted row per target. # (N, h_e)"""

    bf16 = False  # read rows under bfloat16 autocast (`read_rows`; set from a run trained with --bf16)

    def __init__(self, body: nn.Module, kind: str, row_size: int, seed_generator: torch.Generator | None = None,
                 head_of_token: torch.Tensor | None = None, names: tuple[str, ...] = ("all",)):
        super().__init__()
        self.body = body
        self.kind = kind
        hidden = body.config.get_text_config(decoder=True).hidden_size  # the states we read (decoder's for seq2seq)
        if head_of_token is None:
            head_of_token = torch.zeros(body.get_input_embeddings().weight.shape[0], dtype=torch.long)
        self.head = BandHead(hidden, row_size, head_of_token, names, seed_generator)

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

    def forward(self, batch: Batch, heads: torch.Tensor | None = None) -> torch.Tensor:
        """Rows for the batch's targets, each by its token's map; ``heads`` (N,) overrides the maps (new words,
        whose target is a mask or a piece)."""
        if heads is None:
            heads = self.head.head_of_token[batch.targets]
        return self.head(self.hidden_states(batch), heads)


def read_rows(model: DefinitionEMB, batch, heads: torch.Tensor | None = None) -> torch.Tensor:
    """The model's rows for a batch as float32, in the precision its run trained and validated in (bfloat16
    autocast after `train --bf16`): W was fitted to those states, so reading them in float32 is a different
    predictor from the one validation chose. # (N, h_e)"""
    device = next(model.parameters()).device.type
    with torch.autocast(device, dtype=torch.bfloat16, enabled=model.bf16):
        return model(batch, heads).float()
