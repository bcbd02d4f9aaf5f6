"""Steward's contracts: every message on a topic is one of these models.

Producers and consumers import them from here and nowhere else; the JSON Schema files in
``schemas/jsonschema`` are generated from them (``steward schemas export``).
"""

from schemas.activity import ActivityKind, MemberActivity, Platform
from schemas.feedback import FeedbackAction, ModeratorFeedback
from schemas.incidents import Evidence, Incident, Severity
from schemas.moderation import CATEGORIES, Category, ModerationVerdict, Sentiment
from schemas import topics

__all__ = [
    "ActivityKind",
    "CATEGORIES",
    "Category",
    "Evidence",
    "FeedbackAction",
    "Incident",
    "MemberActivity",
    "ModerationVerdict",
    "ModeratorFeedback",
    "Platform",
    "Sentiment",
    "Severity",
    "topics",
]
