"""Silences: matchers and a time window that mute matching incidents (Alertmanager-style).

``models`` (the API's shapes and validation), ``matching`` (pure: which silence mutes a
label set at a time), ``store`` (MongoDB, ``notifier_silences``), ``views`` (the router).
"""

from services.notifier.silences.matching import matching_silences, silencing
from services.notifier.silences.models import (
    Silence,
    SilenceIn,
    SilenceList,
    SilenceState,
    SilenceWindowError,
    silence_state,
)
from services.notifier.silences.store import COLLECTION, SilenceStore
from services.notifier.silences.views import build_silences_router

__all__ = [
    "COLLECTION",
    "Silence",
    "SilenceIn",
    "SilenceList",
    "SilenceState",
    "SilenceStore",
    "SilenceWindowError",
    "build_silences_router",
    "matching_silences",
    "silence_state",
    "silencing",
]
