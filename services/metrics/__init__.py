"""Metrics: community KPIs from activity and verdicts, kept in MongoDB and served over HTTP."""
