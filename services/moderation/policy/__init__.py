"""Community moderation policies: a YAML schema, loading, and pure rule evaluation."""
