"""The demo community: a week of a small community's life, replayed through signed ingest."""
