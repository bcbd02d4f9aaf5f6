"""Crosswalk: external classifiers' label sets onto Steward's categories.

Pure data plus two small functions; nothing here loads a model. Use it to compare Steward
with, or seed it from, scores produced by another moderation system.

Steward's categories (``schemas.moderation.CATEGORIES``): toxicity, severe_toxicity,
insult, threat, identity_attack, sexual, spam.

Rules
- One external label may feed several categories (OpenAI ``hate`` is both ``toxicity``
  and ``identity_attack``); when several external labels feed one category the category
  gets their **maximum** (the strongest evidence, like an "any of" over probabilities).
- A category appears in the result only when at least one of its labels was given. A
  category a scheme cannot speak to (no external scheme here detects ``spam``) is
  **absent**, never 0.0: "the other model did not look" is not "the other model said no".
- Labels are matched after ``strip().lower()``. Labels a scheme is known to have but that
  have no Steward counterpart are listed in ``UNMAPPED`` with the reason; anything else is
  unknown, ignored by :func:`map_scores` and reported by :func:`unknown_labels`.

Schemes (``SCHEMES``; aliases in ``ALIASES``)
- ``toxic-bert``: unitary/toxic-bert's HF config labels (Jigsaw 2018): toxic, severe_toxic,
  obscene, threat, insult, identity_hate.
- ``detoxify``: the ``detoxify`` library's output keys (original, unbiased and
  multilingual models): toxicity, severe_toxicity, obscene, identity_attack, insult,
  threat, sexual_explicit (original has no sexual_explicit; unbiased adds identity
  sub-labels such as ``male`` or ``muslim``, which describe *who* is mentioned, not harm,
  and are listed as unmapped).
  ``obscene`` in Jigsaw means profanity/vulgarity, not sexual content, so it maps to
  ``toxicity``; only ``sexual_explicit`` maps to ``sexual``.
- ``openai``: OpenAI moderation categories as the API returns them (slash names).
- ``llama-guard``: Llama Guard 3 / 4 hazard codes S1..S14 (MLCommons taxonomy). Llama Guard
  2 numbers its 11 codes differently (S9 is hate there, S10 self-harm): use
  ``llama-guard-2`` for it; feeding LG2 codes to ``llama-guard`` would mislabel them.
  Llama Guard flags content that *enables or endorses* a hazard; mapping S1 (violent
  crimes) and S9 (indiscriminate weapons) to ``threat`` is the closest fit Steward has,
  and a coarse one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from schemas.moderation import CATEGORIES

# scheme -> external label -> Steward categories it is evidence for
SCHEMES: dict[str, dict[str, tuple[str, ...]]] = {
    "toxic-bert": {
        "toxic": ("toxicity",),
        "severe_toxic": ("severe_toxicity",),
        "obscene": ("toxicity",),
        "threat": ("threat",),
        "insult": ("insult",),
        "identity_hate": ("identity_attack",),
    },
    "detoxify": {
        "toxicity": ("toxicity",),
        "severe_toxicity": ("severe_toxicity",),
        "obscene": ("toxicity",),
        "identity_attack": ("identity_attack",),
        "insult": ("insult",),
        "threat": ("threat",),
        "sexual_explicit": ("sexual",),
    },
    "openai": {
        "harassment": ("toxicity", "insult"),
        "harassment/threatening": ("toxicity", "insult", "threat"),
        "hate": ("toxicity", "identity_attack"),
        "hate/threatening": ("toxicity", "identity_attack", "threat"),
        "sexual": ("sexual",),
        "sexual/minors": ("sexual",),
    },
    "llama-guard": {
        "s1": ("threat",),            # violent crimes
        "s3": ("sexual",),            # sex-related crimes
        "s4": ("sexual",),            # child sexual exploitation
        "s9": ("threat",),            # indiscriminate weapons
        "s10": ("identity_attack",),  # hate
        "s12": ("sexual",),           # sexual content
    },
    "llama-guard-2": {
        "s1": ("threat",),            # violent crimes
        "s3": ("sexual",),            # sex-related crimes
        "s4": ("sexual",),            # child sexual exploitation
        "s8": ("threat",),            # indiscriminate weapons
        "s9": ("identity_attack",),   # hate
        "s11": ("sexual",),           # sexual content
    },
}

_DETOXIFY_IDENTITIES = (
    "male", "female", "homosexual_gay_or_lesbian", "christian", "jewish", "muslim", "black",
    "white", "psychiatric_or_mental_illness",
)
_SELF_HARM = "no self-harm category in Steward: route to a dedicated self-harm flow, do not fold into toxicity"

# scheme -> known external label with no Steward counterpart -> why
UNMAPPED: dict[str, dict[str, str]] = {
    "toxic-bert": {},
    "detoxify": {
        name: "identity mention (who is referred to), not a harm score"
        for name in _DETOXIFY_IDENTITIES
    },
    "openai": {
        "self-harm": _SELF_HARM,
        "self-harm/intent": _SELF_HARM,
        "self-harm/instructions": _SELF_HARM,
        "violence": "depiction of violence (news, fiction, games) is not a threat against "
        "someone; threats arrive via harassment/threatening and hate/threatening",
        "violence/graphic": "graphic depiction, no Steward category",
        "illicit": "advice on wrongdoing, no Steward category",
        "illicit/violent": "weapons/violent-wrongdoing advice, no Steward category",
    },
    "llama-guard": {
        "s2": "non-violent crimes: no Steward category",
        "s5": "defamation: a false claim, not an insult per se",
        "s6": "specialized advice: no Steward category",
        "s7": "privacy: no Steward category",
        "s8": "intellectual property: no Steward category",
        "s11": _SELF_HARM,
        "s13": "elections: no Steward category",
        "s14": "code interpreter abuse: not user-to-user content",
    },
    "llama-guard-2": {
        "s2": "non-violent crimes: no Steward category",
        "s5": "specialized advice: no Steward category",
        "s6": "privacy: no Steward category",
        "s7": "intellectual property: no Steward category",
        "s10": _SELF_HARM,
    },
}

ALIASES: dict[str, str] = {
    "unitary/toxic-bert": "toxic-bert",
    "jigsaw": "toxic-bert",
    "detoxify-original": "detoxify",
    "detoxify-unbiased": "detoxify",
    "detoxify-multilingual": "detoxify",
    "openai-moderation": "openai",
    "llama-guard-3": "llama-guard",
    "llama-guard-4": "llama-guard",
}


def known_schemes() -> list[str]:
    return sorted(set(SCHEMES) | set(ALIASES))


def resolve_scheme(scheme: str) -> str:
    """Canonical scheme name; ``ValueError`` naming the known ones otherwise."""
    key = scheme.strip().lower()
    key = ALIASES.get(key, key)
    if key not in SCHEMES:
        raise ValueError(f"unknown crosswalk scheme {scheme!r}; known: {', '.join(known_schemes())}")
    return key


def _norm(label: str) -> str:
    return label.strip().lower()


def unknown_labels(scheme: str, scores: Mapping[str, float]) -> list[str]:
    """Labels in ``scores`` that the scheme neither maps nor lists as unmapped (likely a
    typo or a different model version), as given, sorted."""
    key = resolve_scheme(scheme)
    known = SCHEMES[key].keys() | UNMAPPED[key].keys()
    return sorted(label for label in scores if _norm(label) not in known)


def unmapped_labels(scheme: str, scores: Mapping[str, float]) -> dict[str, str]:
    """Known labels in ``scores`` that deliberately have no Steward category, with why."""
    key = resolve_scheme(scheme)
    return {label: UNMAPPED[key][_norm(label)] for label in scores
            if _norm(label) in UNMAPPED[key]}


def map_scores(scheme: str, scores: Mapping[str, float]) -> dict[str, float]:
    """External ``{label: probability}`` -> Steward ``{category: probability}``.

    Max over the labels that feed a category; categories with no given label are absent.
    Unknown and unmapped labels are ignored (see :func:`unknown_labels`). Probabilities
    must be finite and in [0, 1]. Keys come out in ``CATEGORIES`` order.
    """
    mapping = SCHEMES[resolve_scheme(scheme)]
    merged: dict[str, float] = {}
    for label, value in scores.items():
        targets = mapping.get(_norm(label))
        if targets is None:
            continue
        p = float(value)
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"score for {label!r} must be a probability in [0, 1], got {value!r}")
        for category in targets:
            merged[category] = max(p, merged.get(category, 0.0))
    return {c: merged[c] for c in CATEGORIES if c in merged}
