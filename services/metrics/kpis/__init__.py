"""Pure KPI functions over stored facts; the definitions are SPEC.md's, exactly."""
