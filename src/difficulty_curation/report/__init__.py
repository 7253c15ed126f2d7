"""A self-contained HTML page that shows what each bucket holds and why: `write_report` / `curate report`.

One file, no network needed to open it: styles inline, images as small embedded thumbnails, a
Content-Security-Policy that allows no script at all. It shows the provenance, the bucket counts
and histogram, a seeded sample of rows per bucket (thumbnails, prompt, reference, difficulty, and
each kept rollout with its verdict and extracted answer), the hard-row audit's clusters, the failed
rows with their reasons and, given a second run, the transition matrix between the two. Only the
sampled rows are read and decoded, so a large dataset renders in seconds. All text is escaped
(Jinja autoescape) and redacted.

Modules: `page` (gathers what the page shows) and `render` (`write_report`: the template and the file).
"""

from difficulty_curation.report.render import (
    DEFAULT_ROWS_PER_BUCKET,
    DEFAULT_THUMBNAIL_SIZE,
    MAX_REPORT_BYTES,
    ReportInfo,
    write_report,
)

__all__ = ["DEFAULT_ROWS_PER_BUCKET", "DEFAULT_THUMBNAIL_SIZE", "MAX_REPORT_BYTES", "ReportInfo", "write_report"]
