"""Generation backends behind one tiny protocol: `generate(requests, num_rollouts) -> list[list[str]]`."""

from difficulty_curation.engines.base import RolloutEngine
from difficulty_curation.engines.loader import load_engine, resolve_backend

__all__ = ["RolloutEngine", "load_engine", "resolve_backend"]
