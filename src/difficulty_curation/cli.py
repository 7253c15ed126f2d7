"""`curate`: the command-line face of difficulty-curation. Every command is a thin shell over a public function."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import inspect
import json
import re
import signal
import sys
import threading
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core

from difficulty_curation.buckets import PAPER_BUCKETS
from difficulty_curation.columns import Columns
from difficulty_curation.config import (
    ANSWER_EXTRACTORS,
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_K,
    DEFAULT_PILOT,
    TRUNCATED_POLICIES,
    RolloutConfig,
    ScoringConfig,
    option_help,
    spoken_list,
)
from difficulty_curation.errors import CurationError, cli_flag
from difficulty_curation.exports import FORMATS
from difficulty_curation.hub import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from difficulty_curation.recipes.options import GRPOOptions, SFTOptions, TrainingOptions
from difficulty_curation.report import DEFAULT_ROWS_PER_BUCKET, DEFAULT_THUMBNAIL_SIZE
from difficulty_curation.verifiers import VERIFIERS

#: Click's exceptions, wherever this Typer keeps them (newer versions vendor Click as `typer._click`).
_click_errors = sys.modules[typer.BadParameter.__module__]


class _CurateGroup(typer.core.TyperGroup):
    """Typer's group, with Click's usage errors (a bad value, an unknown option or command, a missing
    argument) printed as one `Error:` line that says where to read more, like every other mistake."""

    def main(self, *args: Any, standalone_mode: bool = True, **options: Any) -> Any:
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **options)
        try:
            result = super().main(*args, standalone_mode=False, **options)
        except _click_errors.ClickException as error:
            if type(error).__name__ != "NoArgsIsHelpError":  # bare `curate`: the help was shown
                _print_error(_usage_message(error))
            sys.exit(error.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)


def _usage_message(error: Any) -> str:
    """A Click error's message and where to read what the command accepts (`curate score --help`)."""
    context = getattr(error, "ctx", None)
    command = context.command_path if context is not None else "curate"
    message = error.format_message().strip()
    ending = "" if message.endswith((".", "?", "!")) else "."
    return f"{message}{ending} Run `{command} --help` to see what it accepts."


app = typer.Typer(
    cls=_CurateGroup,
    name="curate",
    help=(
        "Curate post-training data by difficulty (DC-SFT): score each row with k sampled answers from a "
        "model, then keep what the model sometimes solves.\n\n"
        "Example: curate score train.parquet --model my-org/my-vlm --out scored/ && "
        "curate filter scored/ --bucket medium --out medium/"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON instead of tables.")]
OverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace OUT if it already holds files (never another scoring run).")
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress line.")]
ModelViewOption = Annotated[
    str | None,
    typer.Option("--model", help="Merged scores (`curate merge-scores`): judge rows by this model, or 'mean'."),
]
WhereOption = Annotated[
    str | None,
    typer.Option(help="Merged scores: keep rows by agreement, e.g. 'all hard', 'any easy', 'none medium'."),
]


@app.callback()
def _main(
    context: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens.")] = False,
) -> None:
    from difficulty_curation.redact import configure_logging
    from difficulty_curation.splits import datasets_switched_off

    configure_logging(verbose=verbose)
    # no command writes datasets' cache files into a folder it reads (an input stays as it was); restored after
    context.with_resource(datasets_switched_off("caching"))


@app.command()
def score(
    source: Annotated[
        str, typer.Argument(help="save_to_disk folder, parquet/jsonl/json/csv file or folder, or Hub id.")
    ],
    model: Annotated[str, typer.Option("--model", "-m", help=option_help("model"))],
    out: Annotated[Path | None, typer.Option(help="Folder for the scored dataset [default: <source>-scored].")] = None,
    split: Annotated[str | None, typer.Option(help="Score only this split.")] = None,
    num_rollouts: Annotated[
        int, typer.Option("--num-rollouts", "-k", help=option_help("num_rollouts"))
    ] = RolloutConfig.num_rollouts,
    temperature: Annotated[float, typer.Option(help=option_help("temperature"))] = RolloutConfig.temperature,
    top_p: Annotated[float, typer.Option(help=option_help("top_p"))] = RolloutConfig.top_p,
    top_k: Annotated[int, typer.Option(help=option_help("top_k"))] = RolloutConfig.top_k,
    max_new_tokens: Annotated[int, typer.Option(help=option_help("max_new_tokens"))] = RolloutConfig.max_new_tokens,
    seed: Annotated[int, typer.Option(help=option_help("seed"))] = RolloutConfig.seed,
    verifier: Annotated[
        str, typer.Option(help=f"{option_help('verifier')} Built in: {spoken_list(VERIFIERS)}.")
    ] = ScoringConfig.verifier,
    answer_extractor: Annotated[
        str, typer.Option(help=option_help("answer_extractor"))
    ] = ScoringConfig.answer_extractor,
    answer_pattern: Annotated[
        str | None, typer.Option(help=option_help("answer_pattern"))
    ] = ScoringConfig.answer_pattern,
    truncated: Annotated[str, typer.Option(help=option_help("truncated"))] = ScoringConfig.truncated,
    chat_template_kwargs: Annotated[
        list[str] | None,
        typer.Option(
            "--chat-template-kwargs",
            help="KEY=VALUE, repeatable; VALUE is JSON (Python's True/False/None too), a string in JSON quotes, e.g. "
            "--chat-template-kwargs enable_thinking=false --chat-template-kwargs 'reasoning_effort=\"high\"'. "
            + option_help("chat_template_kwargs"),
        ),
    ] = None,
    correct_threshold: Annotated[
        float, typer.Option(help=option_help("correct_threshold"))
    ] = ScoringConfig.correct_threshold,
    prompt_column: Annotated[str, typer.Option(help=option_help("prompt_column"))] = ScoringConfig.prompt_column,
    answer_column: Annotated[str, typer.Option(help=option_help("answer_column"))] = ScoringConfig.answer_column,
    image_column: Annotated[str, typer.Option(help=option_help("image_column"))] = ScoringConfig.image_column,  # type: ignore[assignment]
    system_prompt: Annotated[str | None, typer.Option(help=option_help("system_prompt"))] = ScoringConfig.system_prompt,
    keep_rollouts: Annotated[
        bool, typer.Option("--keep-rollouts", help=option_help("keep_rollouts"))
    ] = ScoringConfig.keep_rollouts,
    adaptive: Annotated[bool, typer.Option("--adaptive", help=option_help("adaptive"))] = ScoringConfig.adaptive,
    pass_rate_interval: Annotated[
        float | None, typer.Option(help=option_help("pass_rate_interval"))
    ] = ScoringConfig.pass_rate_interval,
    backend: Annotated[str, typer.Option(help=option_help("backend"))] = ScoringConfig.backend,
    revision: Annotated[str | None, typer.Option(help=option_help("revision"))] = ScoringConfig.revision,
    max_pixels: Annotated[int, typer.Option(help=option_help("max_pixels") + " 0 = never.")] = ScoringConfig.max_pixels,  # type: ignore[assignment]
    batch_size: Annotated[
        int, typer.Option(help="Rows per generate call (part of the run: keep it to resume).")
    ] = DEFAULT_BATCH_SIZE,
    fail_fast: Annotated[
        bool, typer.Option("--fail-fast", help="Stop at the first row that cannot be scored.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start afresh in OUT even if it holds another run.")
    ] = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Try the rows OUT recorded as failed again (after fixing the cause).")
    ] = False,
    use_ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Score on a Ray cluster ($RAY_ADDRESS, else a local one), one engine per worker, into the same "
            "resumable run folder OUT: Ray retries a batch whose worker dies; rerun the command if the driver dies.",
        ),
    ] = False,
    num_workers: Annotated[int, typer.Option(help="Ray workers, one engine each (with --ray).")] = 2,
    api_base: Annotated[str | None, typer.Option(help=option_help("api_base"))] = ScoringConfig.api_base,
    engine_option: Annotated[
        list[str] | None,
        typer.Option(
            "--engine-option",
            help="KEY=VALUE, repeatable; VALUE is read as JSON when it parses, e.g. --engine-option "
            "tensor_parallel_size=4. " + option_help("engine_options"),
        ),
    ] = None,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Score every row's difficulty with NUM_ROLLOUTS sampled answers and save the dataset with new columns.

    Adds difficulty (fraction of wrong answers), num_correct, num_rollouts and difficulty_error.
    Finished batches are saved as they complete: run the same command again to resume after a crash.

    Example: curate score train.parquet --model my-org/my-vlm -k 8 --verifier exact --out scored/
    """
    from difficulty_curation.config import parse_chat_template_kwargs, parse_engine_options
    from difficulty_curation.runners.run_folder import score_to_dir
    from difficulty_curation.scoring import score_difficulty
    from difficulty_curation.sources import load_source, scored_folder

    with _errors(resumable=True):
        scorer = score_difficulty(
            model,
            num_rollouts=num_rollouts,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            max_new_tokens=max_new_tokens,
            seed=seed,
            verifier=verifier,
            answer_extractor=answer_extractor,
            answer_pattern=answer_pattern,
            truncated=truncated,
            correct_threshold=correct_threshold,
            prompt_column=prompt_column,
            answer_column=answer_column,
            image_column=image_column,
            system_prompt=system_prompt,
            keep_rollouts=keep_rollouts,
            backend=backend,
            revision=revision,
            max_pixels=max_pixels or None,
            adaptive=adaptive,
            pass_rate_interval=pass_rate_interval,
            api_base=api_base,
            engine_options=parse_engine_options(engine_option),
            chat_template_kwargs=parse_chat_template_kwargs(chat_template_kwargs),
        )
        dataset = load_source(source, split=split)
        destination = out or scored_folder(source)
        ray = None
        if use_ray:
            from difficulty_curation.runners.distributed import RayOptions

            ray = RayOptions(num_workers=num_workers)
        _save_and_summarise(
            lambda: score_to_dir(
                dataset,
                scorer,
                destination,
                batch_size=batch_size,
                source=source,
                progress=not quiet,
                fail_fast=fail_fast,
                overwrite=overwrite,
                retry_failed=retry_failed,
                ray=ray,
            ),
            None,
            json_output=json_output,
            saved_to=destination,
            warnings=True,
        )


@app.command()
def rescore(
    run_dir: Annotated[Path, typer.Argument(help="A finished `curate score` output folder.")],
    verifier: Annotated[str | None, typer.Option(help=f"New verifier: {spoken_list(VERIFIERS)}.")] = None,
    correct_threshold: Annotated[float | None, typer.Option(help="New correctness threshold.")] = None,
    truncated: Annotated[
        str | None, typer.Option(help=f"New truncation policy: {spoken_list(TRUNCATED_POLICIES)}.")
    ] = None,
    answer_extractor: Annotated[
        str | None, typer.Option(help=f"New answer extractor: {spoken_list(ANSWER_EXTRACTORS)}.")
    ] = None,
    answer_pattern: Annotated[
        str | None, typer.Option(help="New answer pattern: a regular expression with one group (the regex extractor).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write to a new folder instead of updating RUN_DIR.")] = None,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Re-verify a scored run from its cached rollouts, nothing generated: another verifier, threshold,
    truncation policy or answer extractor.

    Example: curate rescore scored/ --verifier math --answer-extractor boxed --truncated exclude --out scored-math/
    """
    from difficulty_curation.runners.rescore import rescore_dir

    with _errors(resumable=True):
        _save_and_summarise(
            lambda: rescore_dir(
                run_dir,
                verifier=verifier,
                correct_threshold=correct_threshold,
                truncated=truncated,
                answer_extractor=answer_extractor,
                answer_pattern=answer_pattern,
                out_dir=out,
                overwrite=overwrite,
                progress=not quiet,
            ),
            None,
            json_output=json_output,
            saved_to=out or run_dir,
        )


def _scoring_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """`curate score`'s scoring flags (names, defaults and help as `score` declares them from the config)
    for `command`, in place of its `scoring` parameter, which receives them as a dict; not k and adaptive."""
    taken = {*ScoringConfig.option_names(), "engine_option", "batch_size"} - {
        "num_rollouts",
        "adaptive",
        "keep_rollouts",
    }
    flags = [p for p in inspect.signature(score, eval_str=True).parameters.values() if p.name in taken]
    signature = inspect.signature(command, eval_str=True)
    parameters = []
    for parameter in signature.parameters.values():
        parameters.extend(flags if parameter.name == "scoring" else [parameter])

    @functools.wraps(command)
    def with_scoring(**arguments: Any) -> Any:
        return command(scoring={p.name: arguments.pop(p.name) for p in flags}, **arguments)

    with_scoring.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
    with_scoring.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    return with_scoring


@app.command()
@_scoring_options
def plan(
    source: Annotated[
        str, typer.Argument(help="The dataset to plan for: save_to_disk folder, parquet/jsonl/json/csv file or Hub id.")
    ],
    scoring: dict[str, Any],
    pilot: Annotated[
        float, typer.Option(help="Rows in the pilot, or a share of the rows between 0 and 1 (e.g. 0.05).")
    ] = DEFAULT_PILOT,
    max_k: Annotated[
        int, typer.Option(help="The largest k to compare: rollouts the pilot draws per row.")
    ] = DEFAULT_MAX_K,
    price_per_hour: Annotated[
        float | None, typer.Option(help="What the machine costs per hour, to turn times into money.")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Run folder for the pilot and then the full run [default: <source>-scored]."),
    ] = None,
    split: Annotated[str | None, typer.Option(help="Plan for this split only.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start afresh in OUT even if it holds another run.")
    ] = False,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Before the big run: score a pilot at --max-k and say which k, how many new tokens, how long and how much.

    Compares k = 4, 8, 16, 32 (up to --max-k) on the pilot's own rollouts: buckets, agreement with the
    max-k buckets, rollouts with and without --adaptive, answer lengths, and time and cost extrapolated
    from the pilot. Ends with the `curate score` command to run; it reuses the pilot's rollouts.

    Example: curate plan train.parquet --model my-org/my-vlm --pilot 256 --max-k 32 --price-per-hour 2.5
    """
    from difficulty_curation.config import parse_engine_options
    from difficulty_curation.plan import plan_run
    from difficulty_curation.scoring import score_difficulty
    from difficulty_curation.sources import load_source, scored_folder

    with _errors(resumable=True):
        batch_size = scoring.pop("batch_size")
        scoring["engine_options"] = parse_engine_options(scoring.pop("engine_option"))
        scoring["chat_template_kwargs"] = parse_engine_options(
            scoring["chat_template_kwargs"], flag="--chat-template-kwargs"
        )
        scoring["max_pixels"] = scoring["max_pixels"] or None
        scorer = score_difficulty(**scoring)
        destination = out or scored_folder(source)
        made = plan_run(
            load_source(source, split=split),
            scorer,
            destination,
            pilot=pilot,
            max_k=max_k,
            price_per_hour=price_per_hour,
            batch_size=batch_size,
            source=source,
            progress=not quiet,
            overwrite=overwrite,
        )
        if json_output:
            typer.echo(json.dumps(made.to_dict(), indent=1))
            return
        _print_plan(made)


def _print_plan(made: Any) -> None:
    """A plan as a table, then its answer lengths, rates, notes, recommendation and command."""
    money = made.price_per_hour is not None

    def hours(value: float | None) -> str:
        if value is None:
            return "-"
        seconds = value * 3600
        return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if value < 2 else f"{value:.1f} h"

    rows = []
    for estimate in made.estimates:
        row = [
            str(estimate.num_rollouts),
            " / ".join(f"{estimate.buckets[name]:.0%}" for name in ("easy", "medium", "hard")),
            f"{estimate.agreement:.0%} ({estimate.agreement_low:.0%}-{estimate.agreement_high:.0%})",
            f"{estimate.rollouts_per_row:g} / {estimate.adaptive_rollouts_per_row:.1f}",
            f"{hours(estimate.hours)} / {hours(estimate.adaptive_hours)}",
        ]
        if money:
            row.append(f"{estimate.cost:.2f} / {estimate.adaptive_cost:.2f}" if estimate.cost is not None else "-")
        rows.append(row)
    header = ["k", "easy / medium / hard", f"agrees with k={made.max_k} (95%)", "rollouts/row (adaptive)"]
    header += ["time (adaptive)"] + (["cost (adaptive)"] if money else [])
    _table(f"Plan from a pilot of {made.pilot_rows} of {made.dataset_rows} rows", header, rows)
    lengths = made.lengths
    if "p50" in lengths:
        typer.echo(
            f"Answer tokens: median {lengths['p50']}, 90% {lengths['p90']}, 99% {lengths['p99']}, longest finished "
            f"{lengths['longest_finished']}; {lengths['cut_off']} of {lengths['answers']} cut off at "
            f"--max-new-tokens {lengths['max_new_tokens']}."
        )
    if lengths.get("smallest_limit") is not None:
        typer.echo(
            f"Smallest --max-new-tokens that cuts off under 1% of the pilot's answers: {lengths['smallest_limit']}."
        )
    rates = made.throughput
    if rates.get("rollouts_per_second"):
        tokens = rates.get("tokens_per_second")
        typer.echo(
            f"Pilot throughput: {rates['rollouts_per_second']:.2f} rollouts/s"
            + (f", {tokens:.1f} tokens/s" if tokens else "")
            + f", {rates['rows_per_second']:.2f} rows/s (engine start-up apart: {rates['startup_seconds']:.1f} s)."
        )
    for note in [lengths.get("note"), *made.notes]:
        if note:
            typer.echo(f"Note: {note}")
    typer.echo(f"Recommended: {made.recommendation}\nRun: {made.command}")


@app.command("filter")
def filter_command(
    scored: Annotated[str, typer.Argument(help="A scored dataset (folder from `curate score`, file or Hub id).")],
    out: Annotated[Path, typer.Option(help="Folder for the kept rows.")],
    bucket: Annotated[list[str] | None, typer.Option(help="Keep this bucket (easy, medium, hard); repeatable.")] = None,
    min_difficulty: Annotated[float | None, typer.Option("--min", help="Keep rows with difficulty >= this.")] = None,
    max_difficulty: Annotated[float | None, typer.Option("--max", help="Keep rows with difficulty <= this.")] = None,
    split: Annotated[str | None, typer.Option(help="Only this split.")] = None,
    model: ModelViewOption = None,
    where: WhereOption = None,
    overwrite: OverwriteOption = False,
    json_output: JsonOption = False,
) -> None:
    """Keep rows by difficulty bucket and/or range. Rows that failed to score are dropped and counted.

    Example: curate filter scored/ --bucket medium --out sft-m/     (the paper's SFT-M set)
    Merged scores: curate filter merged/ --where "all hard" --out suspects/
    """
    from difficulty_curation.sources import load_source
    from difficulty_curation.transforms import filter_difficulty

    with _errors():
        _save_and_summarise(
            lambda: filter_difficulty(
                load_source(scored, split=split),
                bucket,
                min=min_difficulty,
                max=max_difficulty,
                model=model,
                where=where,
            ),
            out,
            overwrite=overwrite,
            json_output=json_output,
            inputs=[scored],
        )


@app.command()
def stratify(
    scored: Annotated[str, typer.Argument(help="A scored dataset (folder from `curate score`, file or Hub id).")],
    out: Annotated[Path, typer.Option(help="Folder for a DatasetDict with one split per bucket.")],
    bins: Annotated[str | None, typer.Option(help="Custom edges, e.g. '0,0.25,0.75,1'.")] = None,
    quantiles: Annotated[int | None, typer.Option(help="Number of equal-size bins from the data.")] = None,
    split: Annotated[str, typer.Option(help="Split to stratify.")] = "train",
    model: ModelViewOption = None,
    where: WhereOption = None,
    overwrite: OverwriteOption = False,
    json_output: JsonOption = False,
) -> None:
    """Split a scored dataset into disjoint difficulty buckets (paper: easy, medium, hard).

    Example: curate stratify scored/ --out buckets/ && python -c "import datasets; print(datasets.load_from_disk('buckets'))"
    """
    from difficulty_curation.sources import load_source
    from difficulty_curation.transforms import model_view, unscored_count
    from difficulty_curation.transforms import stratify as stratify_dataset

    failed = 0

    def stratified() -> Any:
        nonlocal failed
        dataset = load_source(scored, split=split)
        failed = unscored_count(model_view(dataset, model))  # the rows the chosen model could not score
        return stratify_dataset(dataset, bins=edges, quantiles=quantiles, model=model, where=where)

    with _errors():
        edges = _parse_bins(bins) if bins else None
        buckets, destination = _save_and_summarise(
            stratified, out, overwrite=overwrite, summarise=False, inputs=[scored]
        )
        counts = {name: len(part) for name, part in buckets.items()}
        if json_output:
            typer.echo(json.dumps({"buckets": counts, "failed": failed, "saved_to": str(destination)}))
        else:
            _table("Buckets", ["bucket", "rows"], [[name, str(count)] for name, count in counts.items()])
            typer.echo(f"{failed} rows without a difficulty were left out. Saved to {destination}")


@app.command()
def stats(
    scored: Annotated[str, typer.Argument(help="A scored dataset (folder from `curate score`, file or Hub id).")],
    plot: Annotated[Path | None, typer.Option(help="Also save the histogram as a PNG (or .svg, .pdf) here.")] = None,
    split: Annotated[str | None, typer.Option(help="Only this split.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the --plot file if it exists.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Bucket counts, the difficulty histogram, and rows that failed to score with their reasons.

    Example: curate stats scored/ --plot difficulty.png
    """
    from difficulty_curation.sources import load_source

    with _errors():
        _save_and_summarise(
            lambda: load_source(scored, split=split),
            None,
            overwrite=overwrite,
            json_output=json_output,
            plot=plot,
            inputs=[scored],
        )


@app.command()
def card(
    scored: Annotated[str, typer.Argument(help="A scored dataset (folder from `curate score`).")],
    repo_id: Annotated[
        str, typer.Option(help="The Hub repo the card describes, e.g. my-org/digits-dc-sft.")
    ] = "my-org/curated-dataset",
    out: Annotated[Path, typer.Option(help="Where to write the card; the histogram PNG goes beside it.")] = Path(
        "README.md"
    ),
    template: Annotated[Path | None, typer.Option(help="Your own Jinja card template.")] = None,
    license: Annotated[str | None, typer.Option(help="License identifier for the metadata, e.g. cc-by-4.0.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace OUT and the histogram if they exist.")
    ] = False,
) -> None:
    """Render the dataset card (YAML metadata, provenance, bucket counts, histogram) locally, for review.

    Example: curate card scored/ --repo-id my-org/digits-dc-sft --out card/README.md
    """
    from difficulty_curation.cards import card_paths, write_card
    from difficulty_curation.outputs import check_output_file
    from difficulty_curation.sources import load_source

    with _errors():
        for path in card_paths(out):
            check_output_file(path, overwrite=overwrite, inputs=[scored, *([template] if template else [])])
        written, figure = write_card(load_source(scored), out, repo_id, template=template, license=license)
        typer.echo(f"card: {written}\nhistogram: {figure}")


@app.command()
def push(
    scored: Annotated[str, typer.Argument(help="A scored dataset (folder from `curate score`, save_to_disk folder).")],
    repo_id: Annotated[str, typer.Argument(help="The dataset repo, namespace/name, e.g. my-org/digits-dc-sft.")],
    buckets: Annotated[
        str, typer.Option(help="Comma-separated buckets to publish as configs, besides `all`.")
    ] = ",".join(PAPER_BUCKETS),
    private: Annotated[bool, typer.Option("--private", help="Create the repo private.")] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace the curated configs of a repo that already holds files.")
    ] = False,
    create_pr: Annotated[
        bool, typer.Option("--create-pr", help="Open a pull request with the push; main stays untouched.")
    ] = False,
    license: Annotated[str | None, typer.Option(help="License identifier for the card, e.g. cc-by-4.0.")] = None,
    template: Annotated[Path | None, typer.Option(help="Your own Jinja card template.")] = None,
    max_retries: Annotated[
        int, typer.Option(help="Tries again this often after network errors, 429 and 5xx, with backoff.")
    ] = DEFAULT_MAX_RETRIES,
    timeout: Annotated[
        float, typer.Option(help="Seconds a request may stall (connect, read or write) before it is tried again.")
    ] = DEFAULT_TIMEOUT,
    report: Annotated[
        bool,
        typer.Option("--report", help="Also upload report.html (see `curate report`) beside the card, linked from it."),
    ] = False,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Publish a scored dataset to the Hub: one config per bucket plus `all`, with its dataset card as README.md.

    The token comes from HF_TOKEN or `hf auth login`. A repo that already holds files is refused
    unless --overwrite or --create-pr is given; an interrupted push (--create-pr too) is completed by running it again.

    Example: curate push scored/ my-org/digits-dc-sft --private --license cc-by-4.0
    """
    from difficulty_curation.hub import push_curated

    with _errors():
        info = push_curated(
            scored,
            repo_id,
            buckets=[name.strip() for name in buckets.split(",") if name.strip()],
            private=private,
            overwrite=overwrite,
            create_pr=create_pr,
            license=license,
            template=template,
            max_retries=max_retries,
            timeout=timeout,
            progress=not quiet,
            report=report,
        )
        if json_output:
            typer.echo(json.dumps(info.to_dict()))
            return
        _table(
            f"Pushed to {info.repo_id}" + (" (private)" if info.private else ""),
            ["config", "split", "rows"],
            [[name, split, str(rows)] for name, splits in info.configs.items() for split, rows in splits.items()],
        )
        if info.empty_buckets:
            typer.echo(f"buckets without rows, not published: {', '.join(info.empty_buckets)}")
        if info.failed_rows:
            typer.echo(f"{info.failed_rows} rows without a difficulty are only in `all`.")
        typer.echo(f"repo: {info.repo_url}")
        if info.pr_url:
            typer.echo(f"pull request: {info.pr_url}")


@app.command()
def export(
    scored: Annotated[str, typer.Argument(help="A scored dataset (folder from `curate score` or `curate filter`).")],
    format: Annotated[str, typer.Option("--format", "-f", help=f"{spoken_list(FORMATS)}.")],
    out: Annotated[Path, typer.Option(help="Folder for the export (data files, images/, README.md).")],
    bucket: Annotated[
        list[str] | None, typer.Option(help="Export only this bucket (easy, medium, hard); repeatable.")
    ] = None,
    split: Annotated[str | None, typer.Option(help="Only this split.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an earlier export in OUT.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Write curated rows in the layout another trainer reads: TRL, ms-swift, LLaMA-Factory or verl.

    Example: curate export scored/ --format swift --bucket medium --out sft-m-swift/
    """
    from difficulty_curation.exports import export_dataset
    from difficulty_curation.outputs import MARKER_FILE, check_output
    from difficulty_curation.sources import load_source

    with _errors():
        check_output(out, overwrite=overwrite, earlier=(MARKER_FILE,), inputs=[scored])
        result = export_dataset(
            load_source(scored, split=split), out, format=format, buckets=bucket, overwrite=overwrite
        )
        if json_output:
            typer.echo(json.dumps(result.to_dict()))
            return
        typer.echo(
            f"exported {result.num_rows} rows and {result.num_images} images for {result.format} to {result.out} "
            f"({', '.join(result.files)}); {len(result.skipped)} rows could not be exported."
        )
        for skipped_split, row, reason in result.skipped[:10]:
            typer.echo(f"  row {row} of {_shown(skipped_split)}: {_shown(reason)}")


@app.command()
def audit(
    scored: Annotated[str, typer.Argument(help="A scored dataset with kept rollouts (curate score --keep-rollouts).")],
    min_agreement: Annotated[float, typer.Option(help="Share of rollouts that must give the same wrong answer.")] = 0.5,
    answer_column: Annotated[
        str, typer.Option(help="Column with the ground-truth answer.")
    ] = ScoringConfig.answer_column,
    split: Annotated[str, typer.Option(help="Split to audit.")] = "train",
    limit: Annotated[int, typer.Option(min=0, help="Show at most this many groups.")] = 30,
    answer_extractor: Annotated[
        str | None, typer.Option(help="Group by this extractor's answers [default: the one the run scored with].")
    ] = None,
    answer_pattern: Annotated[str | None, typer.Option(help="Group by this regex's one group instead.")] = None,
    json_output: JsonOption = False,
) -> None:
    """List hard rows whose rollouts agree on one wrong answer: likely label noise or synonyms, not hard data.

    Example: curate audit scored/ --min-agreement 0.75
    """
    from difficulty_curation.audit import audit_hard_rows
    from difficulty_curation.sources import load_source

    with _errors():
        groups = audit_hard_rows(
            load_source(scored, split=split),
            answer_column=answer_column,
            min_agreement=min_agreement,
            answer_extractor=answer_extractor,
            answer_pattern=answer_pattern,
        )
        if json_output:
            typer.echo(json.dumps([group.to_dict() for group in groups]))
            return
        _table(
            "Hard rows where the model agrees on another answer",
            ["reference", "majority answer", "rows", "agreement", "first rows"],
            [
                [g.reference, g.majority_answer, str(g.count), f"{g.agreement:.0%}", ", ".join(map(str, g.rows[:5]))]
                for g in groups[:limit]
            ],
        )
        typer.echo(f"{sum(g.count for g in groups)} hard rows in {len(groups)} groups.")


RunsArgument = Annotated[
    list[str], typer.Argument(help="Scored runs of the same rows (folders from `curate score`), in order.")
]
NameOption = Annotated[
    list[str] | None, typer.Option("--name", help="A label per run, in order; repeatable [default: model names].")
]


@app.command()
def compare(
    runs: RunsArgument,
    name: NameOption = None,
    noise: Annotated[
        list[str] | None,
        typer.Option(help="A run of one model with another seed, twice: the noise floor the changes are judged by."),
    ] = None,
    top: Annotated[int, typer.Option(help="List this many of the rows that moved most.")] = 20,
    plot: Annotated[
        Path | None, typer.Option(help="Save the transition matrix and per-row scatter as a PNG (or .svg, .pdf).")
    ] = None,
    split: Annotated[str | None, typer.Option(help="The split to compare, for runs with several.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the --plot file if it exists.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Compare scored runs of the same rows (checkpoints, models, seeds, k): how rows move between buckets.

    Rows are matched by content, not position; rows in only some runs are counted. The first run is
    compared with the last.

    Example: curate compare scored-step0/ scored-step500/ --noise scored-step0-seed1/ --noise scored-step0/
    """
    from difficulty_curation.compare import STATES, compare_runs, plot_comparison
    from difficulty_curation.outputs import FIGURE_SUFFIXES, check_output_file

    with _errors():
        inputs = [*runs, *(noise or [])]
        if plot is not None:
            check_output_file(plot, overwrite=overwrite, inputs=inputs, suffixes=FIGURE_SUFFIXES, option="--plot")
        result = compare_runs(runs, names=name, top=top, noise=noise, split=split)
        if plot is not None:
            plot = plot_comparison(result, plot, overwrite=overwrite, inputs=inputs)
        if json_output:
            typer.echo(json.dumps(result.to_dict()))
            return
        first, last = result.names[0], result.names[-1]
        _table(
            f"Bucket transitions: {first} (rows) -> {last} (columns)",
            ["", *STATES],
            [
                [a, *(f"{result.transitions[a][b]} ({result.transition_shares[a][b]:.0%})" for b in STATES)]
                for a in STATES
            ],
        )
        typer.echo(
            f"{result.matched} rows in every run; only in one run: "
            + ", ".join(f"{_shown(n)} {c}" for n, c in result.only_in.items())
            + f". {result.bucket_changes} rows changed bucket; "
            + (
                f"mean change {result.mean_delta}, mean |change| {result.mean_abs_delta}, "
                f"Spearman rank correlation {result.rank_correlation if result.rank_correlation is not None else 'not defined'}."
                if result.mean_delta is not None
                else f"no scored rows: no row was scored by both {_shown(first)} and {_shown(last)}."
            )
        )
        if result.noise is not None:
            noise_floor = result.noise
            typer.echo(
                f"Noise floor ({' vs '.join(map(_shown, noise_floor.names))}): 95% of seed-to-seed changes are <= "
                f"{noise_floor.floor}; {noise_floor.exceeding_rows} rows ({noise_floor.exceeding_share:.0%}) "
                f"moved more than that between {_shown(first)} and {_shown(last)}."
            )
        answers = any("majority_answer" in row for row in result.moved)
        _table(
            "Rows that moved most",
            ["key", "reference", *result.names, "change", *(["majority answers"] if answers else [])],
            [
                [
                    row["key"],
                    str(row["reference"]),
                    *(f"{v:.3f}" if v is not None else "failed" for v in row["difficulty"]),
                    f"{row['delta']:+.3f}",
                    *([" / ".join(str(a) for a in row["majority_answer"])] if answers else []),
                ]
                for row in result.moved
            ],
        )
        if plot is not None:
            typer.echo(f"plot: {plot}")


@app.command("merge-scores")
def merge_scores_command(
    runs: RunsArgument,
    out: Annotated[Path, typer.Option(help="Folder for the dataset with every run's difficulty.")],
    name: NameOption = None,
    split: Annotated[str | None, typer.Option(help="The split to merge, for runs with several.")] = None,
    overwrite: OverwriteOption = False,
    json_output: JsonOption = False,
) -> None:
    """Keep several runs' difficulty of the same rows in one dataset, under each model's name.

    Adds difficulty_by_model ({model: difficulty}); difficulty is their mean. Then filter/stratify
    --model NAME or --where "all hard", and `curate audit` lists rows every model gets wrong alike.

    Example: curate merge-scores scored-7b/ scored-72b/ --name 7b --name 72b --out merged/
    """
    from difficulty_curation.compare import merge_scores

    with _errors():
        _save_and_summarise(
            lambda: merge_scores(runs, names=name, split=split),
            out,
            overwrite=overwrite,
            json_output=json_output,
            inputs=runs,
        )


@app.command()
def mix(
    scored: Annotated[str, typer.Argument(help="A scored dataset (folder from `curate score` or `merge-scores`).")],
    ratio: Annotated[str, typer.Option(help="Share of rows per bucket, adding up to 1, e.g. medium=0.8,easy=0.2.")],
    rows: Annotated[int, typer.Option(help="Rows to draw in all.")],
    out: Annotated[Path, typer.Option(help="Folder for the training set.")],
    seed: Annotated[int, typer.Option(help="Seed of the draw and of the order's ties.")] = 0,
    order: Annotated[
        str, typer.Option(help="curriculum (easy to hard, ties broken by --seed) or shuffle.")
    ] = "curriculum",
    allow_short: Annotated[
        bool, typer.Option("--allow-short", help="Take all rows of a bucket that has fewer than the recipe asks for.")
    ] = False,
    model: ModelViewOption = None,
    split: Annotated[str, typer.Option(help="Split to draw from.")] = "train",
    overwrite: OverwriteOption = False,
    json_output: JsonOption = False,
) -> None:
    """Draw a training set to a recipe: exact counts per bucket, without replacement, in curriculum or shuffled order.

    The recipe goes into the provenance, the card, `push` and `export`.

    Example: curate mix scored/ --ratio medium=0.8,easy=0.2 --rows 1000 --seed 0 --out train-mix/
    """
    from difficulty_curation.provenance import read_provenance
    from difficulty_curation.sources import load_source
    from difficulty_curation.stats import summarize
    from difficulty_curation.transforms import mix as mix_dataset

    with _errors():
        drawn, destination = _save_and_summarise(
            lambda: mix_dataset(
                load_source(scored, split=split),
                ratio,
                num_rows=rows,
                seed=seed,
                order=order,
                allow_short=allow_short,
                model=model,
            ),
            out,
            overwrite=overwrite,
            summarise=False,
            inputs=[scored],
        )
        recipe = (read_provenance(drawn) or {}).get("mix")
        counts = summarize(drawn).buckets
        if json_output:
            typer.echo(
                json.dumps({"rows": len(drawn), "buckets": counts, "recipe": recipe, "saved_to": str(destination)})
            )
            return
        _table("Drawn", ["bucket", "rows"], [[n, str(c)] for n, c in counts.items() if c])
        typer.echo(f"{len(drawn)} rows, order {order}, seed {seed}. Saved to {destination}")


@app.command()
def report(
    scored: Annotated[str, typer.Argument(help="A scored dataset (run folder from `curate score`, file or Hub id).")],
    out: Annotated[Path, typer.Option(help="The HTML file to write.")] = Path("report.html"),
    compare: Annotated[
        str | None, typer.Option(help="A second scored run of the same rows: adds the transition matrix.")
    ] = None,
    rows_per_bucket: Annotated[int, typer.Option(help="Rows sampled per bucket (only these are read).")] = (
        DEFAULT_ROWS_PER_BUCKET
    ),
    seed: Annotated[int, typer.Option(help="Seed of the row sample.")] = 0,
    split: Annotated[str | None, typer.Option(help="Only this split.")] = None,
    thumbnail_size: Annotated[int, typer.Option(help="Longest side of an embedded thumbnail, in pixels.")] = (
        DEFAULT_THUMBNAIL_SIZE
    ),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUT if it exists.")] = False,
    json_output: JsonOption = False,
) -> None:
    """One self-contained HTML page: what each bucket holds and why (images, prompts, rollouts, audit, failures).

    Open it in any browser; it needs no network. Example: curate report scored/ --out report.html
    """
    from difficulty_curation.report import write_report

    with _errors():
        info = write_report(
            scored,
            out,
            compare=compare,
            rows_per_bucket=rows_per_bucket,
            seed=seed,
            split=split,
            thumbnail_size=thumbnail_size,
            overwrite=overwrite,
        )
        if json_output:
            typer.echo(json.dumps(info.to_dict()))
            return
        shown = ", ".join(f"{name} {count}" for name, count in info.sampled_rows.items())
        typer.echo(
            f"report: {info.path} ({info.size_bytes / 1e6:.2f} MB; {info.num_rows} rows, shown: {shown}). "
            f"Open it in a browser, e.g. xdg-open {info.path}"
        )


def _training_options(options_class: type[TrainingOptions]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A command's flags for the fields of `options_class`, built from the fields themselves.

    Each field not marked `flag=False` becomes a flag named by `errors.cli_flag`, with the field's
    default and help text; the command receives them as one `options=options_class(...)` in place of
    its `options` parameter. So each training option is declared once, in `recipes/options.py`.
    """
    types = typing.get_type_hints(options_class)
    flags = {
        cli_flag(item.name).removeprefix("--").replace("-", "_"): item
        for item in dataclasses.fields(options_class)
        if item.metadata.get("flag", True)
    }

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        generated = [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=item.default,
                annotation=Annotated[types[item.name], typer.Option(cli_flag(item.name), help=item.metadata["help"])],
            )
            for name, item in flags.items()
        ]
        parameters = []
        for parameter in signature.parameters.values():
            parameters.extend(generated if parameter.name == "options" else [parameter])

        @functools.wraps(command)
        def with_options(**arguments: Any) -> Any:
            options = options_class(**{item.name: arguments.pop(name) for name, item in flags.items()})
            return command(options=options, **arguments)

        with_options.__signature__ = signature.replace(parameters=parameters)  # type: ignore[attr-defined]
        with_options.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
        return with_options

    return decorate


MergeOption = Annotated[bool, typer.Option("--merge", help="Also save the LoRA-merged model in OUT/merged.")]
TrainingOverwriteOption = Annotated[
    bool, typer.Option("--overwrite", help="Replace an earlier training output in OUT (never anything else).")
]
SplitToTrainOption = Annotated[str, typer.Option(help="Split to train on.")]
PromptColumnOption = Annotated[str, typer.Option(help="Column with the question.")]
#: How answers are judged (`recipes.options.JUDGING_OPTIONS`): as the data was scored unless given.
_AS_SCORED = " Default: as the data was scored (its provenance), else {}."
VerifierJudgingOption = Annotated[
    str | None,
    typer.Option(
        "--verifier",
        help=f"{option_help('verifier')} Built in: {spoken_list(VERIFIERS)}."
        + _AS_SCORED.format(ScoringConfig.verifier),
    ),
]
AnswerExtractorOption = Annotated[
    str | None,
    typer.Option(help=option_help("answer_extractor") + _AS_SCORED.format(ScoringConfig.answer_extractor)),
]
AnswerPatternOption = Annotated[
    str | None, typer.Option(help=option_help("answer_pattern") + _AS_SCORED.format("none"))
]
TruncatedOption = Annotated[
    str | None, typer.Option(help=option_help("truncated") + _AS_SCORED.format(ScoringConfig.truncated))
]
ImageColumnOption = Annotated[str, typer.Option(help=option_help("image_column"))]


@app.command()
@_training_options(SFTOptions)
def sft(
    dataset: Annotated[str, typer.Argument(help="Training rows (e.g. from `curate filter`): folder, file or Hub id.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model to fine-tune: local folder or Hub id.")],
    out: Annotated[Path, typer.Option(help="Folder for the adapter (or the full model) and the processor.")],
    options: SFTOptions,
    merge: MergeOption = False,
    overwrite: TrainingOverwriteOption = False,
    split: SplitToTrainOption = "train",
    prompt_column: PromptColumnOption = ScoringConfig.prompt_column,
    answer_column: Annotated[str, typer.Option(help="Column with the answer to learn.")] = ScoringConfig.answer_column,
    image_column: ImageColumnOption = ScoringConfig.image_column,  # type: ignore[assignment]
    quiet: QuietOption = False,
) -> None:
    """Fine-tune on curated rows with TRL's SFTTrainer and a LoRA adapter (paper defaults); loss on answers only.

    Example: curate filter scored/ --bucket medium --out sft-m-data/ && curate sft sft-m-data/ --model M --out sft-m/ --merge
    """
    from difficulty_curation.recipes.sft import sft as run_sft

    with _errors():
        _train(
            run_sft,
            dataset,
            split,
            model,
            out,
            options=options,
            merge=merge,
            overwrite=overwrite,
            progress=not quiet,
            columns=Columns(prompt_column=prompt_column, answer_column=answer_column, image_column=image_column),
        )


@app.command()
@_training_options(GRPOOptions)
def grpo(
    dataset: Annotated[
        str, typer.Argument(help="Training prompts with answers (e.g. `curate filter --bucket medium`).")
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="Model to train: local folder or Hub id.")],
    out: Annotated[Path, typer.Option(help="Folder for the adapter, the processor, the reward log and curve.")],
    options: GRPOOptions,
    merge: MergeOption = False,
    overwrite: TrainingOverwriteOption = False,
    verifier: VerifierJudgingOption = None,
    answer_extractor: AnswerExtractorOption = None,
    answer_pattern: AnswerPatternOption = None,
    truncated: TruncatedOption = None,
    split: SplitToTrainOption = "train",
    prompt_column: PromptColumnOption = ScoringConfig.prompt_column,
    answer_column: Annotated[str, typer.Option(help="Column with the reference answer.")] = ScoringConfig.answer_column,
    image_column: ImageColumnOption = ScoringConfig.image_column,  # type: ignore[assignment]
    quiet: QuietOption = False,
) -> None:
    """GRPO with TRL and a LoRA adapter, rewarded as the rows were scored: verifier, extractor, truncation (paper defaults).

    On medium rows this is DAPO's dynamic-sampling filter done once, before training.

    Example: curate filter scored/ --bucket medium --out medium/ && curate grpo medium/ --model M --out grpo-m/ --merge
    """
    from difficulty_curation.recipes.grpo import grpo as run_grpo

    with _errors():
        _train(
            run_grpo,
            dataset,
            split,
            model,
            out,
            options=options,
            merge=merge,
            overwrite=overwrite,
            verifier=verifier,
            answer_extractor=answer_extractor,
            answer_pattern=answer_pattern,
            truncated=truncated,
            progress=not quiet,
            columns=Columns(prompt_column=prompt_column, answer_column=answer_column, image_column=image_column),
        )


@app.command("eval")
def eval_command(
    model: Annotated[str, typer.Argument(help="Model to evaluate: local folder or Hub id.")],
    dataset: Annotated[list[str], typer.Option(help="NAME=PATH of an evaluation set; repeatable.")],
    ood: Annotated[
        list[str] | None, typer.Option(help="NAME of a dataset that is out of distribution; repeatable.")
    ] = None,
    compare: Annotated[
        list[str] | None, typer.Option(help="Another model to evaluate on the same sets; repeatable.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write results.json, results.md and accuracy.png here.")] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace an earlier eval output in OUT (never anything else).")
    ] = False,
    verifier: VerifierJudgingOption = None,
    answer_extractor: AnswerExtractorOption = None,
    answer_pattern: AnswerPatternOption = None,
    truncated: TruncatedOption = None,
    max_new_tokens: Annotated[int, typer.Option(help=option_help("max_new_tokens"))] = RolloutConfig.max_new_tokens,
    split: Annotated[str, typer.Option(help="Split of each dataset that has several.")] = "test",
    prompt_column: PromptColumnOption = ScoringConfig.prompt_column,
    answer_column: Annotated[str, typer.Option(help="Column with the answer.")] = ScoringConfig.answer_column,
    image_column: ImageColumnOption = ScoringConfig.image_column,  # type: ignore[assignment]
    json_output: JsonOption = False,
) -> None:
    """Greedy accuracy with a 95% interval per dataset, judged as each set was scored; --compare for a table.

    Example: curate eval sft-m/merged --dataset id=test/ --dataset ood=rotated/ --ood ood --compare sft-all/merged
    """
    from difficulty_curation.recipes.evaluate import (
        check_models,
        check_report_folder,
        evaluate,
        load_eval_sets,
        markdown_table,
        write_report,
    )

    with _errors():
        models = [model, *(compare or [])]
        check_models(models)
        if out is not None:
            check_report_folder(out, models, overwrite=overwrite)
        columns = Columns(prompt_column=prompt_column, answer_column=answer_column, image_column=image_column)
        sets = load_eval_sets(dataset, split=split)
        reports = [
            evaluate(
                name,
                sets,
                ood=ood or (),
                verifier=verifier,
                answer_extractor=answer_extractor,
                answer_pattern=answer_pattern,
                truncated=truncated,
                max_new_tokens=max_new_tokens,
                columns=columns,
            )
            for name in models
        ]
        if out is not None:
            write_report(reports, out, overwrite=overwrite)
        if json_output:
            typer.echo(json.dumps([report.to_dict() for report in reports]))
        else:
            typer.echo(markdown_table(reports))


def _train(recipe: Any, dataset: str, split: str, model: str, out: Path, **options: Any) -> None:
    """Check the options and OUT, load `split` of `dataset`, run a training recipe on it and say where the model went."""
    from difficulty_curation.recipes.options import check_options
    from difficulty_curation.recipes.training import check_training_output
    from difficulty_curation.sources import load_source

    check_options(options["options"])
    check_training_output(out, model, overwrite=options["overwrite"])
    saved = recipe(load_source(dataset, split=split), model, out, **options)
    typer.echo(f"saved to {saved}")


@app.command()
def demo(
    rows: Annotated[int | None, typer.Option(help="Score only the first ROWS digits.")] = None,
    out: Annotated[Path | None, typer.Option(help="Also save the scored digits here.")] = None,
    overwrite: OverwriteOption = False,
    quiet: QuietOption = False,
    json_output: JsonOption = False,
) -> None:
    """Score the bundled handwritten digits with the bundled tiny VLM (built and cached on first use).

    Example: curate demo --rows 200
    """
    from difficulty_curation.demo import next_commands, run_demo

    with _errors():
        _, destination = _save_and_summarise(
            lambda: run_demo(num_rows=rows, progress=not quiet), out, overwrite=overwrite, json_output=json_output
        )
        if not json_output:
            typer.echo(next_commands(destination))


def _parse_bins(bins: str) -> list[float]:
    """`--bins '0,0.25,0.75,1'` as numbers, naming the first that is not one."""
    edges = []
    for edge in bins.split(","):
        try:
            edges.append(float(edge))
        except ValueError:
            raise CurationError(
                f"--bins {bins!r}: {edge.strip()!r} is not a number; pass comma-separated edges like 0,0.25,0.75,1."
            ) from None
    return edges


#: OS errors a user's machine causes (a full disk, a folder they cannot write), and what to do about each.
_OS_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space and run the same command again (finished work is kept)",
    errno.EDQUOT: "the disk quota is used up; free some space and run the same command again (finished work is kept)",
    errno.EROFS: "the file system is read-only; pass a writable folder",
    errno.EACCES: "permission denied; pass a folder you can write to",
    errno.EPERM: "operation not permitted; pass a folder you can write to",
    errno.ENAMETOOLONG: "a path or name is longer than the file system allows; pass a shorter one",
}


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run stops the way Ctrl-C stops it."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise _Terminated()


@contextlib.contextmanager
def _errors(*, resumable: bool = False) -> Iterator[None]:
    """Show our errors as one clear line and exit 2, instead of a traceback; Ctrl-C and SIGTERM as one line too.

    Secrets are redacted from the line. An interrupted command exits 130 (SIGINT) or 143 (SIGTERM).
    """
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    except CurationError as error:
        _print_error(str(error))
        raise typer.Exit(2) from None
    except OSError as error:
        code = error.errno or _errno_in_message(str(error))
        if code not in _OS_ADVICE:
            raise
        where = f"{error.filename}: " if error.filename else ""
        _print_error(f"{where}{_OS_ADVICE[code]}.")
        raise typer.Exit(2) from None
    except KeyboardInterrupt as interrupt:
        typer.echo("\ninterrupted" + (": run the same command to resume" if resumable else ""), err=True)
        raise typer.Exit(143 if isinstance(interrupt, _Terminated) else 130) from None
    finally:
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)


def _print_error(message: str) -> None:
    """Print `message` to stderr as one `Error:` line: secrets redacted, shown as written (`_shown`)."""
    from difficulty_curation.redact import redact

    typer.echo(f"Error: {_shown(redact(message), limit=_ERROR_LIMIT)}", err=True)


#: Characters that would move the cursor, recolour the terminal or break a line: shown as escapes instead.
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: The longest table cell, and the longest error line, shown in full; longer ones lose their middle.
_CELL_LIMIT = 200
_ERROR_LIMIT = 2000


def _shown(value: object, *, limit: int = _CELL_LIMIT) -> str:
    """`value` as one printable line of at most about `limit` characters: control characters as escapes
    (`\\x1b`, `\\n`), and a long value cut in the middle, saying how much was cut."""
    text = _CONTROL_CHARACTERS.sub(lambda found: repr(found.group())[1:-1], str(value))
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}…[{len(text) - 2 * keep:,} characters cut]…{text[-keep:]}"


def _errno_in_message(message: str) -> int | None:
    """The errno that pyarrow reports only in its message ("... [errno 28] No space left on device")."""
    found = re.search(r"\[errno (\d+)\]", message, flags=re.IGNORECASE)
    return int(found.group(1)) if found else None


def _save_and_summarise(
    make: Callable[[], Any],
    out: Path | None,
    *,
    overwrite: bool = False,
    json_output: bool = False,
    summarise: bool = True,
    plot: Path | None = None,
    inputs: Sequence[str | Path] = (),
    **summary: Any,
) -> tuple[Any, Path | None]:
    """The tail of every command that makes or reads a dataset: refuse an unusable `out` or `plot` before
    any work (the output guard, which also refuses the command's own `inputs`), `make()` the dataset, save
    it to `out` (`None`: nothing to save here) and print its difficulty summary (`_print_summary`, given
    `summary`; `plot`: the histogram figure, written first), unless `summarise=False` because the command
    prints its own. Returns the dataset and where it went.
    """
    from difficulty_curation.outputs import FIGURE_SUFFIXES, check_output_file, write_file
    from difficulty_curation.sources import check_output, save_dataset
    from difficulty_curation.stats import plot_histogram, summarize

    inputs = list(inputs)
    plot_guard: dict[str, Any] = {
        "overwrite": overwrite,
        "inputs": inputs,
        "suffixes": FIGURE_SUFFIXES,
        "option": "--plot",
    }
    if out is not None:
        check_output(out, overwrite=overwrite, inputs=inputs)
    if plot is not None:
        check_output_file(plot, **plot_guard)
    dataset = make()
    destination = save_dataset(dataset, out, overwrite=overwrite, inputs=inputs) if out is not None else None
    if summarise:
        numbers = summarize(dataset)
        if plot is not None:
            plot = write_file(plot, lambda temporary: plot_histogram(numbers, temporary), **plot_guard)
        _print_summary(numbers, json_output, **{"saved_to": destination, "plot": plot, **summary})
    return dataset, destination


def _print_summary(summary: object, json_output: bool, *, warnings: bool = False, **extra: object) -> None:
    from difficulty_curation.stats import DifficultySummary, scoring_warnings

    assert isinstance(summary, DifficultySummary)
    extra = {key: str(value) for key, value in extra.items() if value is not None}
    problems = scoring_warnings(summary) if warnings else []
    if json_output:
        typer.echo(json.dumps({**summary.to_dict(), **extra, **({"warnings": problems} if problems else {})}))
        return
    scored = max(summary.num_scored, 1)
    _table(
        "Difficulty buckets",
        ["bucket", "rows", "share"],
        [[name, str(count), f"{count / scored:.1%}"] for name, count in summary.buckets.items()]
        + [["failed", str(summary.num_failed), ""], ["total", str(summary.num_rows), ""]],
    )
    peak = max((count for _, count in summary.histogram), default=1)
    _table(
        "Histogram",
        ["difficulty", "rows", ""],
        [[f"{value:.3f}", str(count), "#" * max(1, round(30 * count / peak))] for value, count in summary.histogram],
    )
    if summary.rollouts_finish_known or summary.rollouts_finish_unknown:
        line = "truncated rollouts (hit max_new_tokens"
        line += f"={summary.max_new_tokens}" if summary.max_new_tokens else ""
        line += f"; truncated={summary.truncated_policy}): " if summary.truncated_policy else "): "
        share = summary.truncated_share
        line += (
            f"{summary.truncated_rollouts} of {summary.rollouts_finish_known} ({share:.1%})"
            if share is not None
            else "-"
        )
        if summary.rollouts_finish_unknown:
            line += (
                f"; {summary.rollouts_finish_unknown} rollouts scored before finish reasons were recorded: not known"
            )
        typer.echo(line)
    if summary.by_model:
        _table(
            "Buckets per model",
            ["model", *summary.by_model[next(iter(summary.by_model))]],
            [[name, *(str(n) for n in counts.values())] for name, counts in summary.by_model.items()],
        )
    if summary.failure_reasons:
        _table("Failed rows", ["reason", "rows"], [[reason, str(n)] for reason, n in summary.failure_reasons.items()])
        for index, reason in summary.failed_rows:
            typer.echo(f"  row {index}: {_shown(reason)}")
    for key, value in extra.items():
        typer.echo(f"{key.replace('_', ' ')}: {_shown(value, limit=_ERROR_LIMIT)}")
    for problem in problems:
        typer.echo(f"Warning: {problem}")


def _table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """Print a table to stdout. The one place the CLI prints through Rich: the title, headers and cells
    are shown as written (`_shown`), never read as markup (`[/INST] 3`, `[b]`) or emoji codes."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(_shown(title)), title_justify="left")
    for name in header:
        table.add_column(Text(_shown(name)), justify="right" if name in ("rows", "share") else "left")
    for row in rows:
        table.add_row(*(Text(_shown(cell)) for cell in row))
    Console(file=sys.stdout, soft_wrap=True, markup=False, emoji=False, highlight=False).print(table)


if __name__ == "__main__":  # pragma: no cover
    app()
