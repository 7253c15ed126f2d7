"""Plan a scoring run from a pilot: which k, how many new tokens, how long and how much.

`plan_run` scores a seeded random pilot of rows (stratified by split) at `max_k` with its rollouts
kept, into the run folder the full run will use: the full `curate score` into that folder replaces
the pilot and reuses its rollouts from the cache (rollout j of a row is the same draw whatever k).
From the pilot alone it then reads, for each k up to `max_k`, the buckets a k-rollout run gives
(the first k rollouts of the same draws, so exact for these rows), how often they agree with the
max-k buckets, and how many rollouts an adaptive run would keep (the scorer's own decision,
`DifficultyScorer.adaptive_stop`, on the pilot's rollouts); the answers' lengths in tokens; and the
pilot's throughput, extrapolated to the whole dataset. The plan is saved beside the run's state
(`run_state.PLAN_FILE`), and the full run's provenance says how its k was chosen.
"""

from __future__ import annotations

import json
import math
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict

from difficulty_curation.answers import FINISH_LENGTH, FINISH_STOP, FINISH_UNKNOWN, Completion
from difficulty_curation.buckets import PAPER_BUCKETS, bucket_of
from difficulty_curation.config import DEFAULT_BATCH_SIZE, DEFAULT_MAX_K, DEFAULT_PILOT, ScoringConfig
from difficulty_curation.errors import ConfigError
from difficulty_curation.outputs import RUN_STATE_DIR, atomic_file
from difficulty_curation.prompts import row_reference
from difficulty_curation.redact import get_logger
from difficulty_curation.rollout_cache import RolloutCache, draws_identity
from difficulty_curation.runners.preamble import RunInputs
from difficulty_curation.runners.run_folder import score_to_dir
from difficulty_curation.runners.run_state import PLAN_FILE, RunFolder
from difficulty_curation.schema import pass_rate_interval
from difficulty_curation.scoring import DifficultyScorer
from difficulty_curation.splits import as_splits

logger = get_logger(__name__)

#: The k a plan compares (up to its max k, which it always includes).
PLAN_KS = (4, 8, 16, 32)
#: The recommended k is the smallest whose buckets agree with the max-k buckets on this share of rows...
AGREEMENT_TARGET = 0.9
#: ...with adaptive sampling where it keeps at least this share of rollouts undrawn.
ADAPTIVE_SAVING_TARGET = 0.1
#: The answer-length limit a plan suggests cuts off fewer than this share of answers.
CUT_OFF_TARGET = 0.01


@dataclass
class KEstimate:
    """What a run at `num_rollouts` would give, read from the pilot's first `num_rollouts` rollouts of each row."""

    num_rollouts: int
    #: bucket -> share of the pilot's scored rows
    buckets: dict[str, float]
    #: share of rows whose bucket equals the max-k bucket, with a 95% interval over rows (Jeffreys)
    agreement: float
    agreement_low: float
    agreement_high: float
    #: rollouts drawn per row, plain and adaptive (the scorer's own rule, on these rows' draws)
    rollouts_per_row: float
    adaptive_rollouts_per_row: float
    #: extrapolated wall time (hours) and money for the whole dataset, plain and adaptive (None: not measured)
    hours: float | None = None
    adaptive_hours: float | None = None
    cost: float | None = None
    adaptive_cost: float | None = None

    @property
    def adaptive_saving(self) -> float:
        """The share of rollouts adaptive sampling leaves undrawn."""
        return 1.0 - self.adaptive_rollouts_per_row / self.rollouts_per_row if self.rollouts_per_row else 0.0


@dataclass
class Plan:
    """A plan for scoring a dataset: per-k estimates from a pilot, answer lengths, throughput, a recommendation."""

    dataset_rows: int
    pilot_rows: int
    pilot_failed: int
    max_k: int
    seed: int
    estimates: list[KEstimate]
    #: completion tokens: percentiles, the share cut off at max_new_tokens, the smallest limit cutting off < 1%
    lengths: dict[str, Any]
    #: the pilot's generation: rollouts/s, tokens/s, rows/s, engine start-up seconds (None: not measured)
    throughput: dict[str, Any]
    price_per_hour: float | None
    recommended_k: int
    recommended_adaptive: bool
    recommendation: str
    command: str
    run_dir: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON form (what `--json` prints and the run folder keeps)."""
        record = asdict(self)
        for estimate, item in zip(self.estimates, record["estimates"]):
            item["adaptive_saving"] = round(estimate.adaptive_saving, 4)
        return record

    def summary(self) -> dict[str, Any]:
        """The few facts a dataset card needs to say how k was chosen."""
        chosen = next(e for e in self.estimates if e.num_rollouts == self.recommended_k)
        return {
            "pilot_rows": self.pilot_rows,
            "dataset_rows": self.dataset_rows,
            "max_k": self.max_k,
            "recommended_k": self.recommended_k,
            "recommended_adaptive": self.recommended_adaptive,
            "agreement": round(chosen.agreement, 4),
            "agreement_low": round(chosen.agreement_low, 4),
            "agreement_high": round(chosen.agreement_high, 4),
            "adaptive_saving": round(chosen.adaptive_saving, 4),
        }


def plan_run(
    dataset: Dataset | DatasetDict,
    scorer: DifficultyScorer,
    out_dir: str | Path,
    *,
    pilot: float = DEFAULT_PILOT,
    max_k: int = DEFAULT_MAX_K,
    price_per_hour: float | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    source: str | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Plan:
    """Score a pilot of `dataset` at `max_k` into the run folder `out_dir` and plan the full run from it.

    `scorer` carries every setting of the full run but k and adaptive, which the plan chooses; any
    backend works (the pilot is an ordinary `score_to_dir` run). `pilot` is a number of rows (>= 1) or
    a share of them (between 0 and 1), drawn at random with the sampling seed, stratified by split.
    A later `score_to_dir` (`curate score`) of the whole dataset into `out_dir` with the same settings
    replaces the pilot, generates nothing its rollouts already hold, and records the plan in its provenance.

    Example:
        >>> scorer = score_difficulty("my-org/my-vlm", verifier="math")  # doctest: +SKIP
        >>> plan = plan_run(load_source("train.parquet"), scorer, "scored/", pilot=256, max_k=32)  # doctest: +SKIP
        >>> print(plan.recommendation, plan.command)  # doctest: +SKIP

    Raises:
        ConfigError: a pilot larger than the dataset or not a row count or share, `max_k` < 2, a price < 0.
    """
    if isinstance(max_k, bool) or not isinstance(max_k, int) or max_k < 2:
        raise ConfigError(f"max_k must be an integer >= 2 (the k to compare smaller k against), got {max_k!r}.")
    if price_per_hour is not None and not (
        isinstance(price_per_hour, (int, float)) and math.isfinite(price_per_hour) and price_per_hour >= 0
    ):
        raise ConfigError(
            f"price_per_hour must be a number >= 0 (money per hour of the machine), got {price_per_hour!r}."
        )
    config = scorer.config
    parts = as_splits(dataset)
    dataset_rows = sum(len(part) for part in parts.values())
    picked = draw_pilot(parts, pilot, seed=config.rollout.seed)
    pilot_data: Dataset | DatasetDict = (
        DatasetDict(picked) if isinstance(dataset, DatasetDict) else next(iter(picked.values()))
    )
    pilot_config = config.replace(num_rollouts=max_k, adaptive=False, keep_rollouts=True)
    pilot_scorer = DifficultyScorer(pilot_config, verifier=scorer.custom_verifier)
    RunInputs(pilot_data, pilot_scorer, batch_size)  # columns and batch size, before the model loads
    RunFolder.check_root(out_dir, inputs=[source] if source else ())
    started = time.perf_counter()
    _ = pilot_scorer.engine  # start-up apart: the throughput counts the pilot's scoring alone
    startup = time.perf_counter() - started
    cache_path = Path(out_dir) / RUN_STATE_DIR / "rollouts.sqlite"
    rows_before = _cached_rows(cache_path)
    started = time.perf_counter()
    scored = score_to_dir(
        pilot_data,
        pilot_scorer,
        out_dir,
        batch_size=batch_size,
        source=source,
        progress=progress,
        overwrite=overwrite,
        pilot=True,
    )
    seconds = time.perf_counter() - started
    generated_rows = _cached_rows(cache_path) - rows_before

    rows = _pilot_rows(scored, pilot_config)
    scored_rows = [row for row in rows if row["scores"] is not None]
    estimates = [_estimate(k, scored_rows, max_k, pilot_scorer) for k in plan_ks(max_k)]
    lengths = answer_lengths(pilot_scorer, [row["completions"] for row in scored_rows], config.rollout.max_new_tokens)
    throughput = _throughput(
        Path(out_dir), generated_rows, len(rows), seconds, startup, max_k, lengths.pop("_tokens_per_row", None)
    )
    notes = [
        f"Times and costs are an extrapolation from the pilot's {len(rows)} rows on this engine and machine "
        f"to all {dataset_rows} rows; the rows are not all alike, so treat them as estimates.",
    ]
    if throughput.get("note"):
        notes.append(throughput.pop("note"))
    _extrapolate(estimates, dataset_rows, throughput, startup, price_per_hour)
    smaller = [e for e in estimates[:-1] if e.agreement >= AGREEMENT_TARGET]
    chosen = smaller[0] if smaller else estimates[-1]
    adaptive = chosen.adaptive_saving >= ADAPTIVE_SAVING_TARGET
    saving = f", and adaptive draws {chosen.adaptive_saving:.0%} fewer rollouts" if adaptive else ""
    if smaller:
        recommendation = (
            f"k={chosen.num_rollouts}{' with --adaptive' if adaptive else ''}: its buckets agree with k={max_k} "
            f"on {chosen.agreement:.0%} of the pilot's rows{saving}."
        )
    else:
        recommendation = (
            f"k={max_k}{' with --adaptive' if adaptive else ''}: no smaller k agrees with it on "
            f"{AGREEMENT_TARGET:.0%} of the pilot's rows{saving}; plan again with a larger --max-k to learn "
            f"whether k={max_k} itself is enough."
        )
    plan = Plan(
        dataset_rows=dataset_rows,
        pilot_rows=len(rows),
        pilot_failed=len(rows) - len(scored_rows),
        max_k=max_k,
        seed=config.rollout.seed,
        estimates=estimates,
        lengths=lengths,
        throughput=throughput,
        price_per_hour=price_per_hour,
        recommended_k=chosen.num_rollouts,
        recommended_adaptive=adaptive,
        recommendation=recommendation,
        command=score_command(config, source, out_dir, chosen.num_rollouts, adaptive, batch_size),
        run_dir=str(out_dir),
        notes=notes,
    )
    with atomic_file(Path(out_dir) / RUN_STATE_DIR / PLAN_FILE) as temporary:
        payload = {"draws": draws_identity(config), "summary": plan.summary(), "plan": plan.to_dict()}
        temporary.write_text(json.dumps(payload, indent=1, sort_keys=True))
    return plan


def plan_ks(max_k: int) -> list[int]:
    """The k a plan compares: 4, 8, 16, 32 up to `max_k`, and `max_k` itself."""
    return sorted({k for k in PLAN_KS if k < max_k} | {max_k})


def draw_pilot(parts: dict[str, Dataset], pilot: float, *, seed: int) -> dict[str, Dataset]:
    """A seeded random pilot of `pilot` rows (or that share of them), each split drawn in proportion to its size.

    Rows keep their order within a split. The split sizes are rounded by largest remainder, so they sum to the pilot.
    """
    total = sum(len(part) for part in parts.values())
    if isinstance(pilot, bool) or not isinstance(pilot, (int, float)) or not math.isfinite(pilot) or pilot <= 0:
        raise ConfigError(f"pilot must be a number of rows (>= 1) or a share between 0 and 1, got {pilot!r}.")
    if pilot < 1:
        size = max(1, round(pilot * total))
    elif float(pilot).is_integer():
        size = int(pilot)
    else:
        raise ConfigError(f"pilot {pilot!r} is neither a whole number of rows nor a share between 0 and 1.")
    if size > total:
        raise ConfigError(
            f"pilot of {size} rows is larger than the dataset ({total} rows); pass --pilot {total} or fewer, "
            "or a share such as 0.1."
        )
    exact = {name: size * len(part) / total for name, part in parts.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    for name in sorted(exact, key=lambda n: counts[n] - exact[n])[: size - sum(counts.values())]:
        counts[name] += 1
    generator = np.random.default_rng(seed)
    return {
        name: part.select(sorted(generator.choice(len(part), counts[name], replace=False).tolist()))
        for name, part in parts.items()
    }


def answer_lengths(scorer: DifficultyScorer, rows: list[list[Completion]], max_new_tokens: int) -> dict[str, Any]:
    """Completion tokens of the pilot's answers: percentiles, the share cut off at `max_new_tokens`,
    and the smallest limit that would cut off fewer than `CUT_OFF_TARGET` of them.

    A finished answer needs its tokens plus the end-of-sequence token; a cut-off one needs more than
    `max_new_tokens`, how many more no pilot can say.
    """
    completions = [completion for row in rows for completion in row]
    reasons = [completion.finish_reason for completion in completions]
    known = [reason for reason in reasons if reason is not None]
    cut = sum(reason == FINISH_LENGTH for reason in known)
    result: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "answers": len(completions),
        "cut_off": cut,
        "cut_off_share": cut / len(known) if known else None,
        "finish_unknown": len(completions) - len(known),
    }
    tokenizer = _tokenizer(scorer)
    if tokenizer is None or not completions:
        result["note"] = "answer lengths not measured: no tokenizer for this model on this machine"
        return result
    counts = [len(ids) for ids in tokenizer([str(c) for c in completions], add_special_tokens=False)["input_ids"]]
    needed = [
        math.inf if reason == FINISH_LENGTH else count + (1 if reason == FINISH_STOP else 0)
        for count, reason in zip(counts, reasons)
    ]
    finite = [n for n in needed if n != math.inf]
    if finite:
        result.update({f"p{q}": int(np.percentile(finite, q, method="higher")) for q in (50, 90, 99)})
        result["longest_finished"] = int(max(finite))
    may_exceed = math.ceil(CUT_OFF_TARGET * len(needed)) - 1  # answers a limit may cut off and stay under 1%
    limit = sorted(needed)[len(needed) - 1 - may_exceed] if may_exceed < len(needed) else 1
    if limit == math.inf:
        result["smallest_limit"] = None
        result["note"] = (
            f"{result['cut_off_share']:.0%} of the answers hit max_new_tokens={max_new_tokens}: the smallest limit "
            "that cuts off under 1% cannot be known from cut-off answers; plan again with a larger --max-new-tokens"
        )
    else:
        result["smallest_limit"] = int(limit)
    # generated tokens: a finished answer's end-of-sequence token too, a cut-off one max_new_tokens
    result["_tokens_per_row"] = sum(min(n, max_new_tokens) for n in needed) / len(rows)
    return result


def score_command(
    config: ScoringConfig, source: str | None, out_dir: str | Path, num_rollouts: int, adaptive: bool, batch_size: int
) -> str:
    """The `curate score` command that runs `config` at `num_rollouts` into `out_dir`, every other setting kept."""
    words = ["curate", "score", source or "DATA", "--model", config.model, "-k", str(num_rollouts)]
    if adaptive:
        words.append("--adaptive")
    defaults = ScoringConfig(model=config.model)
    current, standard = config.to_dict(), defaults.to_dict()
    current["api_base"] = config.api_base
    for name in ScoringConfig.option_names():
        if name in ("model", "num_rollouts", "adaptive", "keep_rollouts") or current[name] == standard[name]:
            continue
        value = current[name]
        flag = "--" + name.replace("_", "-")
        if name in ("engine_options", "chat_template_kwargs"):
            flag = "--engine-option" if name == "engine_options" else flag
            for key, item in (config.engine_options if name == "engine_options" else value).items():
                words += [flag, f"{key}={json.dumps(item) if not isinstance(item, str) else item}"]
        elif isinstance(value, bool):
            words.append(flag)
        elif value is None:
            words += [flag, "0" if name == "max_pixels" else "none"]
        else:
            words += [flag, str(value)]
    if batch_size != DEFAULT_BATCH_SIZE:
        words += ["--batch-size", str(batch_size)]
    words += ["--out", str(out_dir)]
    return shlex.join(words)


def _pilot_rows(scored: Dataset | DatasetDict, config: ScoringConfig) -> list[dict[str, Any]]:
    """Each pilot row's reference, completions (with finish reasons) and per-rollout scores (None: failed)."""
    rows = []
    for part in as_splits(scored).values():
        for row in part:
            reasons = row["rollout_finish_reasons"] or []
            completions = [
                Completion(text, None if reason == FINISH_UNKNOWN else reason)
                for text, reason in zip(row["rollouts"] or [], reasons)
            ]
            failed = bool(row["difficulty_error"]) or row["rollout_scores"] is None
            rows.append(
                {
                    "reference": row_reference(row, config.columns) if not failed else None,
                    "completions": completions,
                    "scores": None if failed else row["rollout_scores"],
                }
            )
    return rows


def _bucket(scores: list[float | None], threshold: float) -> str | None:
    judged = [score for score in scores if score is not None]
    if not judged:
        return None
    return bucket_of(1.0 - sum(score >= threshold for score in judged) / len(judged))


def _estimate(k: int, rows: list[dict[str, Any]], max_k: int, scorer: DifficultyScorer) -> KEstimate:
    threshold = scorer.config.correct_threshold
    buckets = [_bucket(row["scores"][:k], threshold) for row in rows]
    final = [_bucket(row["scores"][:max_k], threshold) for row in rows]
    compared = [(a, b) for a, b in zip(buckets, final) if b is not None]
    agree = sum(a == b for a, b in compared)
    low, high = pass_rate_interval(agree, len(compared)) if compared else (0.0, 1.0)
    scored = [b for b in buckets if b is not None]
    stops = [scorer.adaptive_stop(row["completions"][:k], row["reference"], num_rollouts=k) or k for row in rows]
    stops = [scorer.adaptive_drawn(stop, k) for stop in stops]  # what the engine draws to keep them
    return KEstimate(
        num_rollouts=k,
        buckets={name: (scored.count(name) / len(scored) if scored else 0.0) for name in PAPER_BUCKETS},
        agreement=agree / len(compared) if compared else 0.0,
        agreement_low=low,
        agreement_high=high,
        rollouts_per_row=float(k),
        adaptive_rollouts_per_row=sum(stops) / len(stops) if stops else float(k),
    )


def _cached_rows(path: Path) -> int:
    if not path.exists():
        return 0
    cache = RolloutCache(path)
    try:
        return len(cache)
    finally:
        cache.close()


def _throughput(
    out_dir: Path,
    generated_rows: int,
    pilot_rows: int,
    seconds: float,
    startup: float,
    max_k: int,
    tokens_per_row: float | None,
) -> dict[str, Any]:
    """The pilot's generation rates, or those an earlier plan in `out_dir` measured if this one drew nothing."""
    if generated_rows <= 0 or seconds <= 0:
        earlier = _earlier_plan(out_dir)
        if earlier and earlier.get("rollouts_per_second"):
            return {**earlier, "note": "The pilot's rollouts were all cached: the rates are those measured before."}
        return {"rollouts_per_second": None, "note": "The pilot generated nothing here (all cached): no rates."}
    rows_per_second = generated_rows / seconds
    return {
        "rollouts_per_second": rows_per_second * max_k,
        "tokens_per_second": None if tokens_per_row is None else rows_per_second * tokens_per_row,
        "rows_per_second": rows_per_second,
        "rows_generated": generated_rows,
        "seconds": seconds,
        "startup_seconds": startup,
    }


def _earlier_plan(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / RUN_STATE_DIR / PLAN_FILE
    try:
        return json.loads(path.read_text())["plan"]["throughput"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _extrapolate(
    estimates: list[KEstimate], rows: int, throughput: dict[str, Any], startup: float, price: float | None
) -> None:
    rate = throughput.get("rollouts_per_second")
    if not rate:
        return
    for estimate in estimates:
        estimate.hours = (startup + rows * estimate.rollouts_per_row / rate) / 3600
        estimate.adaptive_hours = (startup + rows * estimate.adaptive_rollouts_per_row / rate) / 3600
        if price is not None:
            estimate.cost = estimate.hours * price
            estimate.adaptive_cost = estimate.adaptive_hours * price


def _tokenizer(scorer: DifficultyScorer) -> Any:
    """The engine's tokenizer (transformers, vLLM), else the model's from the Hub or disk; None if there is none."""
    engine = scorer.engine
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is None and hasattr(engine, "llm"):
        tokenizer = engine.llm.get_tokenizer()
    if tokenizer is not None:
        return tokenizer
    try:
        from transformers import AutoTokenizer

        name = scorer.config.engine_options.get("tokenizer") or scorer.config.model
        return AutoTokenizer.from_pretrained(name, revision=scorer.config.revision)
    except Exception as error:  # an API model with no public tokenizer: lengths are not measured
        logger.info("no tokenizer for %s (%s); answer lengths not measured", scorer.config.model, error)
        return None
