"""What every Steward service shares: settings, broker, MongoDB, telemetry, health and the
retrying, dead-lettering consumer. Services import these instead of building their own."""
