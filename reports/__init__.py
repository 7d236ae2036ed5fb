"""Evaluation reports: `python -m reports.build` writes metrics.json, index.html and report.pdf here."""
