"""Per-rollout seeds, and counter-based sampling: every rollout draws its tokens from its own random stream.

Seeds: rollout `j` of a row is seeded `row_seed + j` (`rollout_seed`), where `row_seed` comes from the
run's seed and the row's content (`row_seed`). Every backend seeds from here, so rollout `j` is the
same draw whatever k, batch, round or backend path draws it; and since vLLM seeds the children of an
`n=m` request `seed, seed+1, ...`, rollouts `j0..j0+m-1` of a row are one request seeded `row_seed + j0`.

`transformers` samples all sequences of a `generate` call from one shared random generator, so a
row's rollouts depend on which other rows share its batch. `CounterSampler` instead draws token
`t` of rollout `i` of a row from `uniform(seed(row, i), t)`, a pure function. Results then do not
depend on batch size or batch composition: a resumed or distributed run, or an adaptive run that
draws rollouts in rounds, reproduces exactly the rollouts of a plain run with the same seed (up to
floating-point differences from padding).

It applies temperature, top-k and top-p in that order, like transformers' own warpers, then
inverse-CDF sampling, and returns scores where only the chosen token is finite; `generate` is
called with its own warpers switched off, so its sampling step simply takes that token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: Row seeds are below 2**62, so `row_seed + j` stays a signed 64-bit integer (what vLLM, its server and
#: torch accept) for any number of rollouts.
ROW_SEED_BITS = 62


def row_seed(seed: int, content_hash: str) -> int:
    """The seed of a row's rollout 0: a 62-bit hash of the run's seed and the row's content, the same in any process."""
    digest = hashlib.sha256(f"{seed}:{content_hash}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - ROW_SEED_BITS)


def rollout_seed(seed: int, content_hash: str, index: int) -> int:
    """The seed of rollout `index` of a row: `row_seed + index`, whatever k, batch, round or backend draws it."""
    return row_seed(seed, content_hash) + index


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX_1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX_2 = np.uint64(0x94D049BB133111EB)


def _splitmix64(values: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        values = values + _GOLDEN
        values = (values ^ (values >> np.uint64(30))) * _MIX_1
        values = (values ^ (values >> np.uint64(27))) * _MIX_2
        return values ^ (values >> np.uint64(31))


def counter_uniform(seeds: np.ndarray, step: int) -> np.ndarray:
    """One uniform number in [0, 1) per seed for this step; a pure function of (seed, step)."""
    mixed = _splitmix64(seeds ^ _splitmix64(np.full(seeds.shape, step, dtype=np.uint64)))
    return (mixed >> np.uint64(11)).astype(np.float64) * (2.0**-53)


class CounterSampler:
    """A transformers logits processor that samples each sequence from its own seeded stream."""

    def __init__(
        self, sequence_seeds: Sequence[int], prompt_length: int, *, temperature: float, top_k: int, top_p: float
    ) -> None:
        self.seeds = np.asarray(sequence_seeds, dtype=np.uint64)
        self.prompt_length = prompt_length
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        import torch

        step = input_ids.shape[1] - self.prompt_length
        uniform = torch.from_numpy(counter_uniform(self.seeds, step)).to(scores.device, torch.float32)
        logits = scores.float() / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            values, indices = logits.topk(self.top_k, dim=-1)
        else:
            values, indices = logits.sort(dim=-1, descending=True)
        probs = values.softmax(dim=-1)
        if self.top_p < 1.0:
            before = probs.cumsum(dim=-1) - probs
            probs = probs * (before < self.top_p)  # the smallest prefix reaching top_p (always >= 1 token)
        cdf = probs.cumsum(dim=-1)
        targets = (uniform * cdf[:, -1]).unsqueeze(-1)
        positions = torch.searchsorted(cdf, targets).clamp(max=cdf.shape[-1] - 1)
        chosen = indices.gather(-1, positions)
        only_chosen = torch.full_like(scores, float("-inf"))
        return only_chosen.scatter_(-1, chosen, 0.0)
