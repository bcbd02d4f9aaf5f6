"""Topic names, in one place. The ``.vN`` suffix is the contract's major version."""

ACTIVITY = "community.activity.v1"
VERDICTS = "moderation.verdicts.v1"
INCIDENTS = "moderation.incidents.v1"
FEEDBACK = "moderation.feedback.v1"

ALL = (ACTIVITY, VERDICTS, INCIDENTS, FEEDBACK)

DLQ_SUFFIX = ".dlq"


def dead_letter(topic: str) -> str:
    """The dead-letter topic of ``topic``."""
    return topic + DLQ_SUFFIX
