"""Publish a scored dataset to the Hugging Face Hub: one config per difficulty bucket plus `all`, and its card.

The data goes up through `datasets`' own `push_to_hub` (parquet shards, images stay `Image`), one
commit per config; the card from `cards.render_card` becomes the repo's README.md with the
histogram PNG beside it. The order of commits makes an interrupted push resumable:

1. the card (without `configs:` yet) and the histogram, marked "in progress" by a push id;
2. one `push_to_hub` per config, each adding its `configs:` entry and `dataset_info` to the card;
3. the full card with every config and the marker "complete".

Running the same push again after an interruption finds its own in-progress marker, skips the
configs whose `dataset_info` already matches, and finishes; shard names are fixed by
`push_to_hub`, so nothing is duplicated. The token comes from `huggingface_hub` (`HF_TOKEN`, then
`hf auth login`) and is only ever sent in request headers.

Modules: `push` (`push_curated`: check, plan, commit in order), `configs` (the bucket configs,
their shards, the push's id), `repo` (the repo's state and each commit, retried through `retry`),
`http` (request deadlines and the Hub's refusals as one line).
"""

from difficulty_curation.hub.configs import ALL_CONFIG
from difficulty_curation.hub.http import DEFAULT_TIMEOUT
from difficulty_curation.hub.push import DEFAULT_MAX_RETRIES, REPORT_FILE, PushInfo, push_curated

__all__ = ["ALL_CONFIG", "DEFAULT_MAX_RETRIES", "DEFAULT_TIMEOUT", "REPORT_FILE", "PushInfo", "push_curated"]
