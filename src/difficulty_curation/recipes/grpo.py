"""GRPO recipe: TRL's `GRPOTrainer` with a PEFT LoRA adapter, rewarded by the scoring verifier.

The reward of a completion is the score scoring itself gives it (`DifficultyScorer.judge`: the same
verifier, answer extractor and truncation policy, read from the data's provenance), so "correct"
means one thing across `curate score`, `curate grpo` and `curate eval`. Defaults follow
the paper's RL baseline: 8 generations per prompt at temperature 0.9, KL coefficient (beta) 0.04,
learning rate 1e-5, LoRA rank 32 / alpha 64 / dropout 0.05 on all linear layers.

Trained on `curate filter --bucket medium` rows, this is DAPO's dynamic-sampling filter done once,
offline: rows the model always or never solves give every completion the same reward, hence zero
advantage and no gradient, so dropping them up front saves their generations.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from datasets import Dataset

from difficulty_curation.answers import FINISH_LENGTH, FINISH_STOP, Completion, finish_reason
from difficulty_curation.columns import Columns
from difficulty_curation.config import ScoringConfig
from difficulty_curation.errors import ConfigError, RowError, require
from difficulty_curation.models import load_training_model
from difficulty_curation.provenance import read_provenance
from difficulty_curation.recipes.formats import to_trl_format
from difficulty_curation.recipes.options import GRPOOptions, judging_options
from difficulty_curation.redact import get_logger
from difficulty_curation.scoring import score_difficulty
from difficulty_curation.verifiers import Verifier, verifier_name

logger = get_logger(__name__)

#: the column of the training data that carries each row's reference answer to the reward function
REFERENCE_COLUMN = "reference"


def verifier_reward(
    verifier: str | Verifier = ScoringConfig.verifier,
    *,
    answer_extractor: str = ScoringConfig.answer_extractor,
    answer_pattern: str | None = ScoringConfig.answer_pattern,
    truncated: str = ScoringConfig.truncated,
    max_completion_length: int | None = None,
    eos_token_id: int | None = None,
) -> Callable[..., list[float | None]]:
    """A TRL reward function: each completion judged exactly as scoring judges a rollout (`DifficultyScorer.judge`):
    the answer `answer_extractor` (or `answer_pattern`) takes from it, scored by `verifier` against the
    row's reference answer, a truncated completion treated as `truncated` says.

    A completion is truncated when its `completion_ids` (which TRL passes) fill `max_completion_length`
    without ending in `eos_token_id`; without them its ending is not known and it is judged as written.
    Under `truncated="exclude"` a truncated completion's reward is None, TRL's "no reward" (its mean
    leaves it out; its sum counts it as 0). Accepts plain-text and conversational completions; the
    reference comes from the `reference` column that `grpo` adds to the training rows.

    Raises:
        ConfigError: an unknown verifier or extractor, a bad pattern or truncation policy.

    Example:
        >>> reward = verifier_reward("exact", answer_extractor="answer-is")
        >>> reward(prompts=["q", "q"], completions=["The answer is: 7", "1"], reference=["7", "7"])
        [1.0, 0.0]
    """
    options = {"answer_extractor": answer_extractor, "answer_pattern": answer_pattern, "truncated": truncated}
    # the judge only judges: its model is never loaded
    judge = score_difficulty("(judging only)", verifier=verifier, image_column=None, **options)

    def reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float | None]:
        ids = columns.get("completion_ids") or [None] * len(completions)
        texts = [_completion(c, i, max_completion_length, eos_token_id) for c, i in zip(completions, ids, strict=True)]
        try:
            return [judge.judge([text], ref)[0] for text, ref in zip(texts, columns[REFERENCE_COLUMN], strict=True)]
        except RowError as error:  # a verifier is user code: say which one failed, never a bare traceback
            raise ConfigError(f"the reward failed: {error}") from None

    reward.__name__ = f"verifier_{verifier_name(verifier).rsplit('.', 1)[-1]}"
    return reward


def grpo(
    dataset: Dataset,
    model: str,
    out_dir: str | Path,
    *,
    options: GRPOOptions | None = None,
    merge: bool = False,
    overwrite: bool = False,
    revision: str | None = None,
    verifier: str | Verifier | None = None,
    answer_extractor: str | None = None,
    answer_pattern: str | None = None,
    truncated: str | None = None,
    columns: Columns = Columns(),
    progress: bool = True,
) -> Path:
    """Train `model` with GRPO on `dataset`'s prompts (read from `columns`), rewarded as scoring judges; save to `out_dir`.

    The reward (`verifier_reward`) judges each completion as `dataset` was scored: the verifier, answer
    extractor and pattern and truncation policy of its provenance (`ScoringConfig`'s defaults for rows
    never scored); `verifier`, `answer_extractor`, `answer_pattern` and `truncated` override them.

    Writes, like `sft`: the LoRA adapter with the processor in `out_dir` (and with `merge=True` a
    merged model in `out_dir/merged`), `grpo_options.json`; and for RL: `log_history.json` (the
    trainer's metrics per logging step, mean reward included), `rollouts.jsonl` (every completion
    with its reference and reward, so rewards can be re-verified) and `reward_curve.png`. Returns the
    folder to load for evaluation. Everything is written aside and swapped in whole, as by `sft`.

    Raises:
        ColumnNotFoundError: a named column is not in the dataset (checked before any model loads).
        ConfigError: unknown verifier, empty dataset, options GRPO cannot use, or an `out_dir` that would lose
            something (a non-empty folder without `overwrite`, a run folder, the model being trained).
        TrainingDivergedError: the loss or the weights are not finite, or the run collapsed (the loss of the
            first rows' reference answers exploded, see `training.check_trained`); nothing is saved.
        BackendUnavailableError: `use_vllm=True` without vLLM installed.
        ModelLoadError: the model or its processor cannot be loaded.

    Example:
        >>> grpo(filter_difficulty(scored, "medium"), "my-org/my-vlm", "grpo-m/", merge=True)  # doctest: +SKIP
    """
    from difficulty_curation.outputs import write_aside
    from difficulty_curation.recipes.options import check_options
    from difficulty_curation.recipes.training import (
        TRAINING_FILES,
        check_trained,
        check_training_output,
        probe_loss,
        probe_rows,
    )

    options = options or GRPOOptions()
    check_options(options)
    if options.use_vllm:
        require(
            "vllm", "vllm", "use_vllm=True (--use-vllm)", package="vLLM", hint="on a GPU machine; or drop --use-vllm"
        )
    require("trl", "train", "the GRPO recipe", package="TRL")
    judging = judging_options(
        read_provenance(dataset),
        verifier=verifier,
        answer_extractor=answer_extractor,
        answer_pattern=answer_pattern,
        truncated=truncated,
    )
    reward = verifier_reward(**judging)  # a bad judging option fails here, before anything loads
    train = _grpo_rows(dataset, columns)

    from trl import GRPOConfig, GRPOTrainer

    from difficulty_curation.recipes.training import (
        TrainingProgress,
        lora_config,
        save_trained,
        trainer_arguments,
        use_progress,
    )

    out_dir = check_training_output(out_dir, model, overwrite=overwrite)
    processor, network = load_training_model(model, revision)
    eos_token_id = getattr(getattr(processor, "tokenizer", processor), "eos_token_id", None)
    reward = verifier_reward(**judging, max_completion_length=options.max_completion_length, eos_token_id=eos_token_id)
    rollouts: list[dict[str, Any]] = []

    def recorded_reward(prompts: list[Any], completions: list[Any], **columns: Any) -> list[float]:
        rewards = reward(prompts, completions, **columns)
        step = columns["trainer_state"].global_step
        ids = columns.get("completion_ids") or [None] * len(completions)
        for completion, token_ids, reference, value in zip(
            completions, ids, columns[REFERENCE_COLUMN], rewards, strict=True
        ):
            text = _completion(completion, token_ids, options.max_completion_length, eos_token_id)
            rollouts.append(
                {
                    "step": step,
                    "completion": str(text),
                    "finish_reason": finish_reason(text),
                    "reference": reference,
                    "reward": value,
                }
            )
        return rewards

    recorded_reward.__name__ = reward.__name__
    local = [model] if Path(model).expanduser().exists() else []
    with write_aside(out_dir, overwrite=overwrite, earlier=TRAINING_FILES, protect=local) as staging:
        config = GRPOConfig(
            **trainer_arguments(options, staging),
            per_device_train_batch_size=options.batch_size * options.num_generations,  # TRL counts completions
            num_generations=options.num_generations,
            temperature=options.temperature,
            beta=options.beta,
            max_completion_length=options.max_completion_length,
            use_vllm=options.use_vllm,
        )
        peft_config = lora_config(options)
        trainer = GRPOTrainer(
            model=network,
            reward_funcs=[recorded_reward],
            args=config,
            train_dataset=train,
            processing_class=processor,
            peft_config=peft_config,
        )
        use_progress(trainer, TrainingProgress("GRPO", enabled=progress, metrics=("reward", "loss")))
        probe = probe_rows(dataset, columns)
        probe_before = probe_loss(trainer.model, processor, probe)
        started = time.perf_counter()
        result = trainer.train()
        probe_after = probe_loss(trainer.model, processor, probe)
        check_trained(trainer, probe_before=probe_before, probe_after=probe_after)
        logger.info("trained %d GRPO steps in %.0f s", result.global_step, time.perf_counter() - started)
        with (staging / "rollouts.jsonl").open("w") as handle:
            for record in rollouts:
                handle.write(json.dumps(record, default=str) + "\n")
        plot_reward_curve(trainer.state.log_history, staging / "reward_curve.png")
        judged = {**judging, "verifier": verifier_name(judging["verifier"])}
        probed = {"probe_loss_before": probe_before, "probe_loss_after": probe_after}
        record = {**asdict(options), "base_model": model, "rows": len(dataset), **judged, **probed}
        saved = save_trained(trainer, processor, staging, "grpo_options.json", record, merge=merge)
    return out_dir / saved.relative_to(staging)


def plot_reward_curve(log_history: list[dict[str, Any]], path: str | Path) -> Path:
    """Mean reward (with its spread within groups) per logged step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from difficulty_curation.stats import save_figure

    logged = [entry for entry in log_history if "reward" in entry]
    steps = [entry["step"] for entry in logged]
    figure, axes = plt.subplots(figsize=(5, 3), dpi=100)
    axes.plot(steps, [entry["reward"] for entry in logged], marker="o", label="mean reward")
    if logged and "reward_std" in logged[0]:
        axes.plot(steps, [entry["reward_std"] for entry in logged], linestyle="--", label="reward std")
    axes.set_xlabel("step")
    axes.set_ylabel("reward")
    axes.legend(fontsize=8)
    return save_figure(figure, path)


def _grpo_rows(dataset: Dataset, columns: Columns) -> Dataset:
    """Conversational prompts, images and the reference answer: what `GRPOTrainer` and the reward read."""
    if len(dataset) == 0:
        raise ConfigError("the dataset has no rows to train on.")
    rows = to_trl_format(dataset, columns=columns).remove_columns("completion")
    return rows.add_column(REFERENCE_COLUMN, dataset[columns.answer_column])


def _completion(
    completion: Any, token_ids: list[int] | None, max_completion_length: int | None, eos_token_id: int | None
) -> str:
    """A TRL completion as scoring sees a rollout: its text as a `Completion` that says whether it hit
    `max_completion_length` (its token ids fill it without ending in `eos_token_id`); a plain `str` when
    that is not known."""
    text = _completion_text(completion)
    if token_ids is None or max_completion_length is None:
        return text
    cut = len(token_ids) >= max_completion_length and (not token_ids or token_ids[-1] != eos_token_id)
    return Completion(text, FINISH_LENGTH if cut else FINISH_STOP)


def _completion_text(completion: Any) -> str:
    """The text of a completion, plain (`"7"`) or conversational (`[{"role": "assistant", "content": ...}]`)."""
    if isinstance(completion, str):
        return completion
    parts = []
    for message in completion:
        content = message.get("content")
        if isinstance(content, str):
            parts.append(content)
        else:
            parts.extend(part.get("text") or "" for part in content or [] if part.get("type") == "text")
    return "".join(parts)
