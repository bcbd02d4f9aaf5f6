"""Reddit source: a poller over Reddit's OAuth API (Reddit has no webhooks).

``python -m services.ingest.reddit`` runs it; see docs/platforms/reddit.md.
"""

from services.ingest.reddit.client import RedditApiError, RedditAuthError, RedditClient
from services.ingest.reddit.cursor import Cursor, CursorStore
from services.ingest.reddit.mapping import event_id_for, to_activities, to_activity
from services.ingest.reddit.poller import RedditPoller, StreamResult
from services.ingest.reddit.settings import RedditSettings

__all__ = [
    "Cursor",
    "CursorStore",
    "RedditApiError",
    "RedditAuthError",
    "RedditClient",
    "RedditPoller",
    "RedditSettings",
    "StreamResult",
    "event_id_for",
    "to_activities",
    "to_activity",
]
