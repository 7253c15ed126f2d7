"""`write_report`: load a scored dataset, gather the page (`report.page`), render the template, write one file.

The template is package data (`templates/report.html.j2`), rendered with Jinja autoescape.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from difficulty_curation.errors import ConfigError
from difficulty_curation.outputs import PAGE_SUFFIXES, check_output_file, write_file
from difficulty_curation.redact import get_logger
from difficulty_curation.report.page import ReportPage, html_text
from difficulty_curation.splits import as_splits

if TYPE_CHECKING:
    from datasets import Dataset, DatasetDict

logger = get_logger(__name__)

#: Above this size the report is still written, with a warning naming the options that shrink it.
MAX_REPORT_BYTES = 10_000_000
DEFAULT_ROWS_PER_BUCKET = 24
DEFAULT_THUMBNAIL_SIZE = 128
#: The page's Jinja template, a file of this package.
TEMPLATE_FILE = "report.html.j2"


@dataclass
class ReportInfo:
    """What `write_report` wrote."""

    path: Path
    size_bytes: int
    num_rows: int
    #: bucket -> rows shown on the page.
    sampled_rows: dict[str, int] = field(default_factory=dict)
    num_thumbnails: int = 0
    compared_with: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "path": str(self.path)}


def write_report(
    scored: Dataset | DatasetDict | str | Path,
    out: str | Path = "report.html",
    *,
    compare: Dataset | DatasetDict | str | Path | None = None,
    rows_per_bucket: int = DEFAULT_ROWS_PER_BUCKET,
    seed: int = 0,
    split: str | None = None,
    thumbnail_size: int = DEFAULT_THUMBNAIL_SIZE,
    title: str | None = None,
    overwrite: bool = False,
) -> ReportInfo:
    """Write one self-contained HTML page about a scored dataset (see the `report` package docstring).

    Args:
        scored: a scored dataset, or anything `load_source` reads (a run folder, a `save_to_disk` folder, a file).
        out: the HTML file to write; never a file or folder `scored` or `compare` is read from, nor one inside
            a scoring run (see `outputs.check_output_file`).
        compare: a second scored run of the same rows: adds the transition matrix and rows that moved.
        rows_per_bucket: rows sampled per bucket (seeded by `seed`); only these are read and decoded.
        split: only this split (default: every split).
        thumbnail_size: longest side of an embedded thumbnail, in pixels.
        title: the page title (default: the source's name).
        overwrite: replace `out` if it exists (atomically: a reader sees the old page or the new one).

    Returns:
        `ReportInfo` with the path, its size and the rows sampled per bucket.

    Raises:
        ConfigError: bad options, an `out` refused by the output guard, or a dataset without a `difficulty` column.

    Example:
        >>> info = write_report("scored/", "report.html", rows_per_bucket=12)  # doctest: +SKIP
        >>> print(info.size_bytes)  # doctest: +SKIP
    """
    if isinstance(rows_per_bucket, bool) or not isinstance(rows_per_bucket, int) or rows_per_bucket < 0:
        raise ConfigError(f"rows_per_bucket must be an integer >= 0, got {rows_per_bucket!r}.")
    if isinstance(thumbnail_size, bool) or not isinstance(thumbnail_size, int) or not 8 <= thumbnail_size <= 1024:
        raise ConfigError(f"thumbnail_size must be an integer from 8 to 1024 pixels, got {thumbnail_size!r}.")
    inputs = [source for source in (scored, compare) if isinstance(source, (str, Path))]
    out = check_output_file(out, overwrite=overwrite, inputs=inputs, suffixes=PAGE_SUFFIXES)
    name = title or (Path(str(scored)).name if isinstance(scored, (str, Path)) else "scored dataset")
    splits = _load(scored, split)
    page = ReportPage(splits, thumbnail_size=thumbnail_size)
    context = page.context(rows_per_bucket, seed)
    compared_with = None
    if compare is not None:
        compared_with = Path(str(compare)).name if isinstance(compare, (str, Path)) else "second run"
        context["comparison"] = page.comparison(compare, [name, compared_with])
    html = _template().render(title=name, **context)
    data = html.encode("utf-8")
    write_file(
        out,
        lambda temporary: temporary.write_bytes(data),
        overwrite=overwrite,
        inputs=inputs,
        suffixes=PAGE_SUFFIXES,
    )
    size = len(data)
    if size > MAX_REPORT_BYTES:
        logger.warning(
            "the report is %.1f MB (over %.0f MB): pass a smaller --rows-per-bucket or --thumbnail-size",
            size / 1e6,
            MAX_REPORT_BYTES / 1e6,
        )
    return ReportInfo(
        path=out,
        size_bytes=size,
        num_rows=context["summary"].num_rows,
        sampled_rows={bucket["name"]: len(bucket["rows"]) for bucket in context["buckets"]},
        num_thumbnails=page.num_thumbnails,
        compared_with=compared_with,
    )


def _load(scored: Any, split: str | None) -> DatasetDict:
    from datasets import Dataset, DatasetDict

    if isinstance(scored, (str, Path)):
        from difficulty_curation.sources import load_source

        scored = load_source(scored, split=split)
    elif split is not None and isinstance(scored, DatasetDict):
        if split not in scored:
            raise ConfigError(f"split {split!r} is not in the dataset; available splits: {', '.join(scored)}.")
        scored = scored[split]
    if not isinstance(scored, (Dataset, DatasetDict)):
        raise ConfigError(f"expected a Dataset, a DatasetDict or a path, got {type(scored).__name__}.")
    splits = DatasetDict(as_splits(scored))
    for name, part in splits.items():
        if "difficulty" not in part.column_names:
            raise ConfigError(
                f"split {name!r} has no `difficulty` column: score it first (curate score / score_to_dir)."
            )
    return splits


def _template() -> Any:
    import jinja2

    source = resources.files("difficulty_curation").joinpath("templates", TEMPLATE_FILE).read_text(encoding="utf-8")
    environment = jinja2.Environment(
        autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, finalize=html_text
    )
    return environment.from_string(source)


__all__ = ["DEFAULT_ROWS_PER_BUCKET", "DEFAULT_THUMBNAIL_SIZE", "MAX_REPORT_BYTES", "ReportInfo", "write_report"]
