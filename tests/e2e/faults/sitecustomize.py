"""A bad release, for the poison drill: with this folder on PYTHONPATH and
STEWARD_DRILL_BAD_RELEASE set, Python loads this module at start-up, and the moderation
service it starts raises on every message whose text contains that marker, as a release with
a bug in its text handling would. The service itself is unchanged: deploying "the fix" is
starting it again without this folder."""

import os

MARKER = os.environ.get("STEWARD_DRILL_BAD_RELEASE")

if MARKER:
    import services.moderation.outcome as module

    released = module.outcome

    def outcome(event, *args, **kwargs):
        if MARKER in (event.text or ""):
            raise ValueError(f"bad release: cannot handle {MARKER!r} in message {event.message_id}")
        return released(event, *args, **kwargs)

    # Before services.moderation.app imports it by name.
    module.outcome = outcome
