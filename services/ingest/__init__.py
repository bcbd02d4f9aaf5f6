"""Ingest: the one verified door from platforms into ``community.activity.v1``."""
