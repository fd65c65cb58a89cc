"""Leaderboards from the results store: tables, statistics, plots and exports under reports/SUITE/."""

from bench.report.leaderboard import Leaderboard, build_leaderboard, report_destination, write_reports

__all__ = ["Leaderboard", "build_leaderboard", "report_destination", "write_reports"]
