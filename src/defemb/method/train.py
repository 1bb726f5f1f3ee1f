"""`defemb train`: fit DefinitionEMB to mimic the pretrained rows from definitions (METHOD §7).

Run directory: ``config.json`` (resolved), ``metrics.jsonl``, ``checkpoint/`` (atomic; everything a
resume needs), and at the end ``model/`` (the trained body, `save_pretrained`), ``head.safetensors``
(W) and ``summary.json``. A run trains in the sibling ``OUT.partial`` and is renamed to ``OUT`` only
when complete, so a crash never leaves an ``OUT`` that looks finished and ``--force`` replaces an old
run only once the new one has succeeded. Resuming restores weights, optimiser, schedule, the global RNG
(dropout) and the position in the epoch's batch plan; masking draws come from a generator seeded by
(seed, step). So on CPU a run killed and resumed ends with the same weights as one never interrupted.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from tqdm import tqdm

from defemb.config import TrainConfig
from defemb.errors import DefembError
from defemb.evaluation.records import error_line
from defemb.frequency import BANDS, rank_tokens
from defemb.method.data import batch_plan, check_corpus, load_records, vocabulary_limit
from defemb.method.masking import STRATEGIES, Vocabulary, mask_encoder
from defemb.method.model import DefinitionEMB, collate
from defemb.models import get_table_module, tokenizer_kind
from defemb.models import load_model as load_hf_model
from defemb.outputs import check_writable, move_into_place, write_json_atomic
from defemb.seeding import seed_everything

BEST = "best.safetensors"  # weights of the best validation so far, in the run being written
#: The validation figure that picks the kept weights and drives early stopping: the error per *token* (each token's
#: positions averaged, then tokens averaged), as `embed` writes one row per token. Per position, a token with many
#: prompts ("-", common numbers) weighs as much as hundreds of rare tokens.
SELECT_ON = "valid_token_mse"
RIDGE_GRID = (1e-3, 1e-2, 1e-1, 1.0)  # ridge strengths, × mean eigenvalue of HᵀH; one is picked on held-out rows


def ridge_fit(H: torch.Tensor, T: torch.Tensor) -> torch.Tensor:
    """W (h_s, h_e) minimising ‖HW − T‖² + λ‖W‖², λ from RIDGE_GRID picked on the last fifth of the rows held
    out (a single row: the strongest), then refitted on every row. H (n, h_s), T (n, h_e) in float64."""

    def solve(rows: slice, strength: float) -> torch.Tensor:  # (h_s, h_e)
        gram = H[rows].T @ H[rows]
        ridge = strength * torch.trace(gram) / gram.shape[0]
        return torch.linalg.solve(gram + ridge * torch.eye(gram.shape[0], dtype=gram.dtype), H[rows].T @ T[rows])

    cut = len(H) * 4 // 5
    if cut:
        errors = {s: float(((H[cut:] @ solve(slice(0, cut), s) - T[cut:]) ** 2).sum(dim=1).mean()) for s in RIDGE_GRID}
        best = min(errors, key=errors.get)
    else:  # a single row: nothing to hold out, so the strongest ridge
        best = RIDGE_GRID[-1]
    return solve(slice(0, len(H)), best)


def band_ridge_fit(H: torch.Tensor, T: torch.Tensor, maps: torch.Tensor, count: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, D): the shared ridge fit on every row, W (h_s, h_e), and for each map k < ``count`` a ridge fit of
    the residuals T − HW on the rows with ``maps == k`` alone, D (count, h_s, h_e), zero for a map without
    rows. A band head's warm start: a band with few rows keeps a strong ridge and stays near W."""
    shared = ridge_fit(H, T)
    corrections = torch.zeros(count, *shared.shape, dtype=shared.dtype, device=shared.device)
    for k in range(count):
        at = maps == k
        if at.any():
            corrections[k] = ridge_fit(H[at], T[at] - H[at] @ shared)
    return shared, corrections


CONTRAST_TEMPERATURE = 0.05  # τ of `contrast_loss`: cosine 1 vs 0 is a logit gap of 20
TOP_K = 10  # validation's ``valid_top10``: the own row among the 10 nearest


def centred_cosines(predictions: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """cos(p − μ, t_v − μ) of every prediction with every row of ``table``, μ the table's mean row: the angles
    around the shared offset every row carries. predictions (N, h), table (V, h) → (N, V)."""
    mean = table.mean(dim=0)
    rows = torch.nn.functional.normalize(table - mean, dim=-1)
    return torch.nn.functional.normalize(predictions - mean, dim=-1) @ rows.T


def contrast_loss(predictions: torch.Tensor, ids: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Per prediction, −log softmax over every row of ``table`` of the centred cosine / τ at the prediction's own
    id (`centred_cosines`). Squared error alone is satisfied by a row near its band's mean; this asks the
    prediction to point, around the mean, toward its own row rather than any other, which is what cosine
    neighbours and word similarity read. predictions (N, h), ids (N,), table (V, h) → (N,)."""
    logits = centred_cosines(predictions, table) / CONTRAST_TEMPERATURE
    return torch.nn.functional.cross_entropy(logits, ids, reduction="none")


def own_row_in_top(predictions: torch.Tensor, ids: torch.Tensor, table: torch.Tensor, k: int = TOP_K) -> torch.Tensor:
    """1.0 where the prediction's own row is among its ``k`` nearest rows of ``table`` by centred cosine (ties
    counted against it), else 0.0: can the row it predicts be told from every other? (N,)"""
    cosines = centred_cosines(predictions, table)
    own = cosines.gather(1, ids[:, None])
    return ((cosines >= own).sum(dim=1) <= k).double()


def _device(name: str | None, world: int) -> torch.device:
    """The training device: ``--device``, else the GPU when there is one; one GPU per rank under torchrun."""
    device = torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DefembError(f"--device {name}: no CUDA GPU is available here")
        if world > 1 and device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return device


class Trainer:
    """Holds everything one run needs; `train()` runs (or continues) it in ``OUT.partial``."""

    def __init__(self, config: TrainConfig, out: str | Path):
        self.config = config
        self.out = Path(out)
        self.run_dir = partial_dir(self.out)  # where the run writes until it is complete
        self.rank = int(os.environ.get("RANK", "0"))
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.device = _device(config.device, self.world)
        if self.world > 1 and not torch.distributed.is_initialized():  # launched by torchrun / accelerate
            torch.distributed.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        seed_everything(config.seed)
        torch.set_flush_denormal(True)  # tiny gradients/moments as denormals slow CPU kernels 100-fold
        self.loaded = load_hf_model(config.model, trust_remote_code=config.trust_remote_code)
        self.kind = self.loaded.kind
        self.corpus_config = check_corpus(config.corpus, self.loaded.tokenizer)
        table = get_table_module(self.loaded.model, config.table).weight
        self.targets = table.detach().clone().float().to(self.device)  # frozen pretrained rows (V, h_e)
        self.vocab = Vocabulary.for_model(self.loaded)
        self.strategy = STRATEGIES[self.kind]
        tokenizer = self.loaded.tokenizer
        limit = vocabulary_limit(self.loaded)
        self.train_records = load_records(config.corpus, "train", limit)
        self.valid_records = validation_sample(load_records(config.corpus, "valid", limit), config.max_valid,
                                               config.seed)
        for split, records in (("training", self.train_records), ("validation", self.valid_records)):
            if not records:  # validation drives the logged scores, the best checkpoint and early stopping
                raise DefembError(f"corpus '{config.corpus}' has no {split} records; rebuild it with `defemb corpus "
                                  "build` (--valid-percent above 0)")
        self.lengths = np.array([len(r["input_ids"]) for r in self.train_records])
        self.position_weight = token_weights(self.train_records, self.targets.shape[0], config.token_weight
                                             ).to(self.device)
        batches = len(batch_plan(self.lengths, config.tokens, config.seed, 0))  # the same count every epoch
        if batches < self.world:  # a rank without a batch would wait for the others forever
            raise DefembError(f"the corpus makes {batches} batch(es) of --tokens {config.tokens} per epoch, fewer "
                              f"than the {self.world} processes; lower --tokens or start fewer processes")
        ranking = rank_tokens(tokenizer, self.targets.shape[0], None, tokenizer_kind(tokenizer))
        self.token_bands = ranking.band_of(self.targets.shape[0])
        generator = torch.Generator().manual_seed(config.seed)
        names, head_of_token = head_maps(config.head, self.token_bands)
        self.model = DefinitionEMB(self.loaded.model, self.kind, self.targets.shape[1], generator,
                                   torch.from_numpy(head_of_token), names).to(self.device)
        self._freeze_tables()
        if config.gradient_checkpointing:
            self._checkpoint_activations()
        self.optimizer, self.scheduler = self._optimiser()
        self.step, self.epoch, self.position, self.bad_evals = 0, 0, 0, 0
        self.started = False  # the start (validation, warm start) is done: true once a checkpoint exists
        self.best_step: int | None = None
        self.best_scores: dict[str, float] = {}  # per position and per token at the best step, for the summary

    @property
    def best(self) -> float:
        """The best validation so far (`SELECT_ON`); infinite before the first."""
        return self.best_scores.get(SELECT_ON, math.inf)

    # ----------------------------------------------------------------------------------------- set-up
    def _freeze_tables(self) -> None:
        """Token tables get no gradient and no optimiser state unless --train-embeddings."""
        if self.config.train_embeddings:
            return
        for module in self.loaded.model.modules():
            if isinstance(module, torch.nn.Embedding) and module.weight.shape[0] >= len(self.loaded.tokenizer):
                module.weight.requires_grad_(False)
        output = self.loaded.model.get_output_embeddings()
        if output is not None:
            output.weight.requires_grad_(False)

    def _checkpoint_activations(self) -> None:
        """Recompute the body's layers in the backward pass (non-reentrant: correct although the frozen tables'
        outputs need no gradient). Newer transformers 5.x name the switch activation_checkpointing_enable."""
        model, options = self.loaded.model, {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=options)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=options)

    def _optimiser(self):
        c = self.config
        body = [p for p in self.model.body.parameters() if p.requires_grad]
        head = list(self.model.head.parameters())  # W, and the band corrections of a band head
        groups = [{"params": body, "lr": c.lr}, {"params": head, "lr": c.lr * c.head_lr_scale}]
        if c.optimizer == "adafactor":
            from transformers.optimization import Adafactor

            optimizer = Adafactor(groups, lr=c.lr, scale_parameter=False, relative_step=False, warmup_init=False)
        else:
            optimizer = torch.optim.AdamW(groups, betas=(0.9, 0.98), weight_decay=0.01)
        return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(c, step))

    # ------------------------------------------------------------------------------------------ steps
    def _examples(self, records: list[dict], generator: torch.Generator, strategy=None):
        strategy = strategy or self.strategy
        return collate([strategy(r, self.vocab, generator) for r in records], self.vocab.pad_id).to(self.device)

    def _loss(self, predictions: torch.Tensor, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(optimised loss, per-prediction squared error ‖e − ẽ‖²) for predictions (N, h_e)."""
        targets = self.targets[batch.targets]
        squared = ((predictions - targets) ** 2).sum(dim=-1)  # (N,)
        if self.config.objective == "lm":
            loss_each = torch.nn.functional.cross_entropy(predictions @ self.targets.T, batch.targets, reduction="none")
        else:
            loss_each = squared * self.position_weight[batch.targets]
            if self.config.contrast:
                loss_each = loss_each + self.config.contrast * contrast_loss(predictions, batch.targets, self.targets)
        # per prompt: mean over its predicted positions; then summed over the batch (Eq. 5)
        counts = torch.bincount(batch.rows, minlength=batch.input_ids.shape[0]).clamp(min=1).float()
        per_prompt = torch.zeros_like(counts).index_add_(0, batch.rows, loss_each) / counts
        return per_prompt.sum(), squared.detach()

    def _by_band(self, squared: torch.Tensor, token_ids: torch.Tensor) -> dict[str, float]:
        """Mean squared error overall (``valid_mse``) and per frequency band of the target token, per position;
        and the same per token (``valid_token_mse``…: each token's positions averaged first), which is what
        `embed` writes and `replace` uses, one row per token. Per position, one token with many prompts can make
        a band: under the ranking that left "-" rare, 71 of the rare band's 158 validation positions on MiniLM
        were "-" (error 0.14), and the band read 0.61 while its other tokens averaged 0.99."""
        return {**by_band(squared, token_ids, self.token_bands, "valid_mse"),
                **by_band(squared, token_ids, self.token_bands, "valid_token_mse", per_token=True)}

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        """‖e − ẽ‖² over the validation predictions, overall and per band (eval mode, fixed draws); and
        ``valid_top10``…: the share of tokens (each once, its positions averaged) whose prediction has its own row
        among its 10 nearest rows of the table (`own_row_in_top`), what cosine neighbours read; and
        ``valid_contrast``, the mean of `contrast_loss` per position, whether or not training optimises it.

        Encoders are scored the way `embed` reads them, with every occurrence of the word masked: the
        training corruption keeps a quarter of the word in view, and those positions (≈ 1.16 against ≈ 1.50
        masked on MiniLM) made validation look better than the rows `embed` writes."""
        self.model.eval()
        generator = torch.Generator().manual_seed(self.config.seed + 7919)
        strategy = mask_encoder if self.kind == "encoder" else self.strategy
        squared_all, targets, hits, contrast = [], [], [], []
        for start in range(0, len(self.valid_records), 64):
            batch = self._examples(self.valid_records[start : start + 64], generator, strategy)
            predictions = self.model(batch)
            squared_all.append(self._loss(predictions, batch)[1])
            hits.append(own_row_in_top(predictions.float(), batch.targets, self.targets))
            contrast.append(contrast_loss(predictions.float(), batch.targets, self.targets))
            targets.append(batch.targets)
        self.model.train()
        targets = torch.cat(targets)
        return {**self._by_band(torch.cat(squared_all), targets),
                **by_band(torch.cat(hits), targets, self.token_bands, f"valid_top{TOP_K}", per_token=True),
                "valid_contrast": float(torch.cat(contrast).mean())}

    def _precision(self) -> torch.autocast:
        """The forward pass's precision: bfloat16 autocast with --bf16, else float32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    @torch.no_grad()
    def masked_states(self, records: list[dict], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(H, token ids): the body's states at the predicted positions of ``records`` in float64, read in
        training's precision with the masking validation and `embed` use (encoders: every occurrence of the
        word masked); ``seed`` seeds the masking draws. # (n, h_s), (n,)"""
        generator = torch.Generator().manual_seed(seed)
        strategy = mask_encoder if self.kind == "encoder" else self.strategy
        states, ids = [], []
        for start in range(0, len(records), 64):
            batch = self._examples(records[start : start + 64], generator, strategy)
            with self._precision():  # the states training's forward produces, W is fitted to
                states.append(self.model.hidden_states(batch).double())
            ids.append(batch.targets)
        return torch.cat(states), torch.cat(ids)

    @torch.no_grad()
    def warm_start_head(self) -> None:
        """W by ridge least squares on the frozen model's states at masked positions (METHOD lead): for
        encoders every occurrence of the word masked, the case validation scores and `embed` reads. A band
        head: each band's map is the shared fit plus a ridge correction fitted on that band's rows alone,
        so a band with few rows stays near the shared map."""
        self.model.eval()
        rng = np.random.default_rng(self.config.seed + 104729)
        size = min(self.config.ridge_examples, len(self.train_records))
        picks = rng.choice(len(self.train_records), size=size, replace=False)
        H, ids = self.masked_states([self.train_records[i] for i in picks], self.config.seed + 104729)
        head = self.model.head
        count = 0 if head.band_delta is None else len(head.names)
        shared, corrections = band_ridge_fit(H, self.targets[ids].double(), head.head_of_token[ids], count)
        head.weight.copy_(shared.T.float())
        if head.band_delta is not None:
            head.band_delta.copy_(corrections.transpose(1, 2).float())
        self.model.train()

    # -------------------------------------------------------------------------------- checkpointing
    def keep_if_best(self, scores: dict[str, float]) -> None:
        """Remember this step and keep its weights if its validation (`SELECT_ON`) is the best so far."""
        if scores[SELECT_ON] < self.best:
            self.best_step = self.step
            self.best_scores = {key: scores[key] for key in ("valid_mse", SELECT_ON)}
            self.save_best()

    def save_best(self) -> None:
        """Keep the weights of the best validation so far (``best.safetensors``, atomic): `finish` writes them."""
        if self.rank != 0 or not self.config.keep_best:
            return
        tmp = self.run_dir / ".best.tmp.safetensors"
        save_model(self.model, tmp)
        os.replace(tmp, self.run_dir / BEST)

    def save_checkpoint(self) -> None:
        if self.rank != 0:
            return
        tmp = Path(tempfile.mkdtemp(prefix=".checkpoint.tmp-", dir=self.run_dir))
        save_model(self.model, tmp / "model.safetensors")
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        save_file({"cpu_rng": torch.get_rng_state()}, tmp / "rng.safetensors")
        state = {"step": self.step, "epoch": self.epoch, "position": self.position, "best_step": self.best_step,
                 "best_scores": self.best_scores, "selected_on": SELECT_ON, "bad_evals": self.bad_evals,
                 "scheduler": self.scheduler.state_dict()}
        (tmp / "state.json").write_text(json.dumps(state))
        move_into_place(tmp, self.run_dir / "checkpoint")

    def load_checkpoint(self) -> None:
        folder = self.run_dir / "checkpoint"
        with reading(folder / "model.safetensors", self.out) as path:
            load_model(self.model, path)
        with reading(folder / "optimizer.pt", self.out) as path:  # weights_only: a pickle can run no code
            self.optimizer.load_state_dict(torch.load(path, weights_only=True, map_location=self.device))
        with reading(folder / "rng.safetensors", self.out) as path:
            torch.set_rng_state(load_file(path)["cpu_rng"])
        with reading(folder / "state.json", self.out) as path:
            state = json.loads(path.read_text())
            self.scheduler.load_state_dict(state["scheduler"])
            self.step, self.epoch, self.position = int(state["step"]), int(state["epoch"]), int(state["position"])
            self.bad_evals = int(state["bad_evals"])
            if state.get("selected_on") == SELECT_ON:  # a run from before chose on another figure: choose again
                self.best_step, self.best_scores = state["best_step"], state["best_scores"]
        self.started = True  # every checkpoint is written after the start
        self._trim_metrics()

    def _trim_metrics(self) -> None:
        """Drop metric lines logged after the checkpoint: the resumed run logs those steps again."""
        with reading(self.run_dir / "metrics.jsonl", self.out) as path:
            if path.exists():
                kept = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= self.step]
                path.write_text("".join(line + "\n" for line in kept))

    def log(self, **values) -> None:
        if self.rank == 0:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as handle:
                handle.write(json.dumps({"step": self.step, **values}) + "\n")

    # -------------------------------------------------------------------------------------- the loop
    def train(self) -> dict:
        c = self.config
        model = self.model
        if self.world > 1:  # unused parameters: e.g. BERT's pooler never sees a gradient here
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids, find_unused_parameters=True)
        model.train()
        if not self.started:
            scores = self.validate()
            self.log(event="start", **self.mean_row_mse(), **scores)
            if c.warm_start:  # least-squares W on the frozen model: the second predictor training must beat
                self.warm_start_head()
                scores = self.validate()
                self.log(event="warm_start", **scores)
            self.keep_if_best(scores)  # the start competes: training does not always improve on it
            self.started = True
            if c.warm_start:  # minutes on a large model: an interruption before the first save must not redo it
                self.save_checkpoint()
        progress = tqdm(total=c.steps, initial=self.step, desc="train", disable=self.rank != 0)
        window, started = [], time.perf_counter()
        while self.step < c.steps:
            plan = batch_plan(self.lengths, c.tokens, c.seed, self.epoch)
            plan = plan[: len(plan) - len(plan) % self.world][self.rank :: self.world]  # equal shares per rank
            while self.position < len(plan) and self.step < c.steps:
                squared = self._update(model, plan)
                if not torch.isfinite(squared).all():
                    raise DefembError(
                        f"loss became NaN/inf at step {self.step + 1}; stopped. The last good checkpoint "
                        f"is kept in '{self.run_dir / 'checkpoint'}'; start over with a lower --lr (--force)"
                    )
                self.step += 1
                window.append(float(squared.mean()))
                progress.update(1)
                if self.step % c.eval_every == 0 or self.step == c.steps:
                    scores = self.validate()
                    valid = scores[SELECT_ON]
                    elapsed = time.perf_counter() - started
                    self.log(train_mse=float(np.mean(window)), **scores, lr=self.scheduler.get_last_lr()[0],
                             seconds=round(elapsed, 2))
                    window = []
                    self.bad_evals = 0 if valid < self.best else self.bad_evals + 1
                    self.keep_if_best(scores)
                    if c.patience and self.bad_evals >= c.patience:
                        self.save_checkpoint()
                        progress.close()
                        return self.finish(early_stop=True)
                if self.step % c.save_every == 0:
                    self.save_checkpoint()
            if self.position >= len(plan):
                self.epoch, self.position = self.epoch + 1, 0
        progress.close()
        self.save_checkpoint()
        return self.finish(early_stop=False)

    def _update(self, model, plan: list[np.ndarray]) -> torch.Tensor:
        """One optimiser step over ``grad_accum`` batches; returns the squared errors seen."""
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.step)
        squared_all = []
        for _ in range(self.config.grad_accum):
            if self.position >= len(plan):
                break
            records = [self.train_records[i] for i in plan[self.position]]
            self.position += 1
            batch = self._examples(records, generator)
            with self._precision():
                predictions = model(batch)  # through the DDP wrapper when distributed
            loss, squared = self._loss(predictions.float(), batch)
            (loss / self.config.grad_accum).backward()
            squared_all.append(squared)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return torch.cat(squared_all)

    @torch.no_grad()
    def mean_row_mse(self) -> dict[str, float]:
        """The trivial predictors every training run must beat: the mean pretrained row (``mean_row_…``) and, the
        one a band head must beat, the mean row of the target token's own band (``band_mean_…``)."""
        ids = torch.tensor(
            [r["input_ids"][p] for r in self.valid_records for g in r["word_positions"] for p in g], dtype=torch.long
        ).to(self.device)
        mean = self.targets.mean(dim=0)
        band_means = mean.repeat(len(ids), 1)  # (N, h_e); a special id (no band) keeps the mean row
        bands = self.token_bands[ids.cpu().numpy()]
        for band in BANDS:
            at = torch.from_numpy(bands == band).to(self.device)
            if bool(at.any()):
                band_means[at] = self.targets[torch.from_numpy(self.token_bands == band).to(self.device)].mean(dim=0)
        scores = {}
        for name, means in (("mean_row", mean), ("band_mean", band_means)):
            for key, value in self._by_band(((self.targets[ids] - means) ** 2).sum(dim=-1), ids).items():
                scores[key.replace("valid", name, 1)] = value
        return scores

    def finish(self, early_stop: bool) -> dict:
        """Write the trained body, W and the summary, then rename the run into place (replacing an old one)."""
        kept = self.config.keep_best and self.best_step is not None
        best = self.best_scores  # empty only in a run resumed from before per-token selection, not scored since
        summary = {"steps": self.step, "selected_on": SELECT_ON, "best_valid_token_mse": best.get(SELECT_ON),
                   "best_valid_mse": best.get("valid_mse"), "best_step": self.best_step,
                   "weights": f"best (step {self.best_step})" if kept else "last", "early_stop": early_stop}
        if self.rank == 0:
            if kept:  # the body and W of the best validation, not of the last step
                load_model(self.model, self.run_dir / BEST)
            self.loaded.model.save_pretrained(self.run_dir / "model")
            self.loaded.tokenizer.save_pretrained(self.run_dir / "model")
            head = self.model.head
            tensors = {**{k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()},
                       "head_of_token": head.head_of_token.cpu()}
            save_file(tensors, self.run_dir / "head.safetensors", metadata={"maps": ",".join(head.names)})
            write_json_atomic(self.run_dir / "summary.json", summary)
            move_into_place(self.run_dir, self.out)
            (self.out / BEST).unlink(missing_ok=True)  # removed only now: a crash before the move can redo finish
        return summary


def by_band(squared: torch.Tensor, token_ids: torch.Tensor, token_bands: np.ndarray, name: str,
            per_token: bool = False) -> dict[str, float]:
    """``name``: the mean of ``squared`` (N,), and ``name_<band>`` per band of ``token_ids`` (N,); with
    ``per_token`` each token's values are averaged first, so every token counts once (NaN: an empty band)."""
    squared, token_ids = squared.detach().double().cpu(), token_ids.cpu()
    if per_token and len(token_ids):
        token_ids, inverse = torch.unique(token_ids, return_inverse=True)
        counts = torch.bincount(inverse, minlength=len(token_ids)).double()
        squared = torch.zeros(len(token_ids), dtype=torch.float64).index_add_(0, inverse, squared) / counts
    out = {name: float(squared.mean()) if len(squared) else float("nan")}
    bands = token_bands[token_ids.numpy()]
    for band in BANDS:
        mask = torch.from_numpy(bands == band)
        out[f"{name}_{band}"] = float(squared[mask].mean()) if bool(mask.any()) else float("nan")
    return out


def token_weights(records: list[dict], vocab_size: int, gamma: float) -> torch.Tensor:
    """Weight of a predicted position by its target token: n_t^-γ, n_t = the token's predicted positions in
    ``records``, scaled so the positions' mean weight is 1 (γ = 0: every position 1, the paper's loss). (V,)"""
    targets = [record["input_ids"][p] for record in records for group in record["word_positions"] for p in group]
    counts = np.bincount(np.asarray(targets, dtype=np.int64), minlength=vocab_size).astype(np.float64)
    seen = counts > 0
    weights = np.ones(vocab_size)
    weights[seen] = counts[seen] ** -gamma
    if seen.any():
        weights[seen] /= (weights * counts).sum() / counts.sum()
    return torch.from_numpy(weights).float()


def head_maps(head: str, token_bands: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
    """(map names, map index per token id) for ``--head``: one map for all, or one per band, where ids outside
    the ranking (special tokens) take the rare band's map. # (V,)"""
    if head == "single":
        return ("all",), np.zeros(len(token_bands), dtype=np.int64)
    index = {band: k for k, band in enumerate(BANDS)}
    return BANDS, np.array([index.get(band, index["rare"]) for band in token_bands], dtype=np.int64)


def lr_factor(config: TrainConfig, step: int) -> float:
    """The learning rate at ``step`` as a share of the peak: linear warm-up, then the schedule's decay."""
    warmup, steps = config.warmup, config.steps
    if config.schedule == "constant":
        return 1.0
    if warmup and step < warmup:
        return max(step, 1) / warmup
    if config.schedule == "inverse_sqrt":
        return math.sqrt(max(warmup, 1) / max(step, 1))
    done = min((step - warmup) / max(steps - warmup, 1), 1.0)  # share of the decay behind us
    return 1.0 - done if config.schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))


@contextlib.contextmanager
def reading(path: Path, out: Path) -> Iterator[Path]:
    """Turn any failure to read or apply one file of the run ``out`` into one line naming the file."""
    try:
        yield path
    except Exception as exc:  # corrupt, truncated, foreign or malicious: the user's fix is the same
        raise DefembError(f"'{path}' is damaged or not from this run ({error_line(exc)}); train again with "
                          f"`defemb train ... --out {out} --force`") from exc


def validation_sample(records: list[dict], size: int, seed: int) -> list[dict]:
    """Up to ``size`` records drawn (seeded) across the whole split, in corpus order: the split is sorted by
    headword, so its first records would be numbers and words from the start of the alphabet only."""
    if len(records) <= size:
        return records
    picks = np.sort(np.random.default_rng([seed, 7919]).choice(len(records), size=size, replace=False))
    return [records[i] for i in picks]


def partial_dir(out: str | Path) -> Path:
    """``OUT.partial``: where the run ``OUT`` lives until it is complete."""
    out = Path(out)
    if out.name in ("", ".", ".."):
        raise DefembError(f"run directory '{out}' must end in a folder name (e.g. runs/train)")
    return out.with_name(out.name + ".partial")


def interrupted(out: str | Path) -> bool:
    """Whether ``OUT.partial`` holds a run that was started and can be resumed."""
    return (partial_dir(out) / "config.json").is_file()


def train(config: TrainConfig, run_dir: str | Path, force: bool = False) -> dict:
    """Start a new run that ends in ``run_dir``; with ``force`` it replaces an old run once complete."""
    out = Path(run_dir)
    partial = partial_dir(out)
    first = int(os.environ.get("RANK", "0")) == 0
    if first:
        check_writable(out, force)
        if interrupted(out) and not force:
            step = _checkpoint_step(out)
            kept = "no checkpoint yet" if step is None else f"last checkpoint at step {step}"
            raise DefembError(f"'{partial}' holds an interrupted run ({kept}); continue it with "
                              f"`defemb train --resume {out}` or start over with --force")
    trainer = Trainer(config, out)  # loads and checks everything before a directory is touched
    if first:
        shutil.rmtree(partial, ignore_errors=True)  # an interrupted run the user chose to start over
        partial.mkdir(parents=True)
        resolved = {**asdict(config), "kind": trainer.kind, "vocab_hash": trainer.corpus_config["vocab_hash"]}
        write_json_atomic(partial / "config.json", resolved)
    if trainer.world > 1:
        torch.distributed.barrier()  # the other ranks write nothing but wait for the directory
    return _run(trainer, out)


def _run(trainer: Trainer, out: Path) -> dict:
    """Train; on Ctrl-C say where the work is kept and how to continue it (the CLI prints the note)."""
    try:
        return trainer.train()
    except KeyboardInterrupt as exc:
        step = _checkpoint_step(out)
        kept = "no checkpoint yet" if step is None else f"last checkpoint at step {step}"
        exc.add_note(f"the run is kept in '{partial_dir(out)}' ({kept}); continue it with "
                     f"`defemb train --resume {out}`, or start over with --force")
        raise


def _checkpoint_step(out: Path) -> int | None:
    """The step of the last checkpoint of the interrupted run ``out``; None when none was saved."""
    state = partial_dir(out) / "checkpoint" / "state.json"
    if not state.is_file():
        return None
    with reading(state, out):
        return int(json.loads(state.read_text())["step"])


def resume(run_dir: str | Path) -> dict:
    """Continue the interrupted run ``run_dir`` (its ``.partial``) from its last checkpoint, with its saved config."""
    out = Path(run_dir)
    if out.name.endswith(".partial"):  # the user named the partial folder itself
        out = out.with_name(out.name.removesuffix(".partial"))
    partial = partial_dir(out)
    if not interrupted(out):
        if (out / "summary.json").is_file():
            raise DefembError(f"'{out}' is a finished run: nothing to resume (train with --force to start over)")
        raise DefembError(f"'{out}' has no interrupted training run to resume (no '{partial / 'config.json'}')")
    with reading(partial / "config.json", out) as path:
        saved = {"head": "single", **json.loads(path.read_text())}  # runs started before --head had one W
        config = TrainConfig(**{k: v for k, v in saved.items() if k in TrainConfig.__dataclass_fields__})
    trainer = Trainer(config, out)
    if _checkpoint_step(out) is not None:
        trainer.load_checkpoint()
    else:
        (partial / "metrics.jsonl").unlink(missing_ok=True)  # nothing was kept: start over cleanly
    return _run(trainer, out)
