"""One self-contained HTML report of an experiment's leaderboard (see ``page``)."""

from orchestrator.report.page import SECTIONS, write_report
from orchestrator.report.sections import pareto_front

__all__ = ["SECTIONS", "pareto_front", "write_report"]
