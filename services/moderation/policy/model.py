"""The policy schema. A community owns one YAML file; its ``version`` is stamped on every
verdict and incident so that any decision can be traced to the rules that made it."""

import re

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from schemas import CATEGORIES, Category, Severity

MAX_PATTERN_CHARS = 500  # a regex longer than this is refused: a cheap guard against runaway patterns


class CategoryRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(ge=0, le=1, description="Score at or above which the rule fires.")
    severity: Severity
    shadow: bool = Field(default=False, description="Computed and recorded, never emitted.")


class KeywordList(BaseModel):
    """Words/phrases (whole-word, case-insensitive) and regexes; ``allowlist`` phrases suppress
    any match that lies inside one of them (e.g. "Scunthorpe")."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    severity: Severity
    words: list[str] = Field(default_factory=list)
    regexes: list[str] = Field(default_factory=list)
    allowlist: list[str] = Field(default_factory=list)
    shadow: bool = False

    _patterns: tuple[re.Pattern[str], ...] = PrivateAttr(default=())
    _allow: re.Pattern[str] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _compile(self) -> "KeywordList":
        patterns = []
        words = [w.strip() for w in self.words if w.strip()]
        if words:
            alternatives = "|".join(r"\s+".join(map(re.escape, w.split())) for w in words)
            patterns.append(re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE))
        for source in self.regexes:
            if len(source) > MAX_PATTERN_CHARS:
                raise ValueError(f"regex {source[:40]!r}... is longer than {MAX_PATTERN_CHARS} characters")
            try:
                patterns.append(re.compile(source, re.IGNORECASE))
            except re.error as error:
                raise ValueError(f"invalid regex {source!r}: {error}") from None
        self._patterns = tuple(patterns)
        allow = [a.strip() for a in self.allowlist if a.strip()]
        if allow:
            self._allow = re.compile("|".join(r"\s+".join(map(re.escape, a.split())) for a in allow), re.IGNORECASE)
        return self

    def first_match(self, text: str) -> str | None:
        """The first matched text not covered by an allowlisted phrase, or None."""
        allowed = [m.span() for m in self._allow.finditer(text)] if self._allow else []
        for pattern in self._patterns:
            for match in pattern.finditer(text):
                start, end = match.span()
                if end > start and not any(a <= start and end <= b for a, b in allowed):
                    return match.group(0)
        return None


class MentionSpam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_mentions: int = Field(ge=0, description="More mentions than this in one message fire the rule.")
    severity: Severity = Severity.low
    category: Category = "spam"
    shadow: bool = False


class LinkSpam(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_links: int = Field(ge=0, description="More links (outside allowed_domains) than this fire the rule.")
    allowed_domains: list[str] = Field(default_factory=list, description="Links to these (and subdomains) don't count.")
    severity: Severity = Severity.low
    category: Category = "spam"
    shadow: bool = False


class RepeatOffenders(BaseModel):
    """The ``flags``-th flag (counting this one) by a member within ``window_s`` escalates."""

    model_config = ConfigDict(extra="forbid")

    flags: int = Field(ge=2)
    window_s: float = Field(gt=0)
    escalate_to: Severity | None = Field(default=None, description="None: one step up (critical stays).")
    shadow: bool = False


class Raid(BaseModel):
    """``joins`` joins within ``join_window_s`` in a community make a burst; a flagged message by a
    member who joined in the burst, within ``message_window_s`` of joining, escalates to ``severity``."""

    model_config = ConfigDict(extra="forbid")

    joins: int = Field(ge=2)
    join_window_s: float = Field(gt=0)
    message_window_s: float = Field(gt=0)
    severity: Severity = Severity.high
    shadow: bool = False


# A head bundle, pinned: "name@version" (services/moderation/model/head_bundle.py writes them).
BUNDLE_NAME = r"[a-z0-9][a-z0-9._-]{0,63}"
BUNDLE_REF = rf"^(?P<name>{BUNDLE_NAME})@(?P<version>[1-9][0-9]*)$"


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1)
    model: str | None = Field(
        default=None, pattern=BUNDLE_REF,
        description="The head bundle that scores this community, pinned as name@version "
        "(e.g. an adapted one: acme@3); the service's default model when absent.",
    )
    categories: dict[str, CategoryRule]
    channels: dict[str, dict[str, CategoryRule]] = Field(
        default_factory=dict, description="Per-channel overrides of category rules."
    )
    shadow: bool = Field(default=False, description="The whole policy runs in shadow: decisions are never emitted.")
    keywords: dict[str, KeywordList] = Field(default_factory=dict)
    keyword_channels: dict[str, dict[str, KeywordList | None]] = Field(
        default_factory=dict, description="Per-channel keyword lists: replace a list by name, or null to switch it off."
    )
    mention_spam: MentionSpam | None = None
    link_spam: LinkSpam | None = None
    repeat_offenders: RepeatOffenders | None = None
    raid: Raid | None = None

    @model_validator(mode="after")
    def _known_categories(self) -> "Policy":
        named = set(self.categories) | {c for rules in self.channels.values() for c in rules}
        unknown = named - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories {sorted(unknown)}; known: {list(CATEGORIES)}")
        return self

    def rules_for(self, channel_id: str | None) -> dict[str, CategoryRule]:
        return {**self.categories, **self.channels.get(channel_id or "", {})}

    def keywords_for(self, channel_id: str | None) -> dict[str, tuple[KeywordList, bool]]:
        """Keyword lists in force in a channel, each with whether it is a channel override."""
        lists = {name: (kw, False) for name, kw in self.keywords.items()}
        for name, kw in self.keyword_channels.get(channel_id or "", {}).items():
            if kw is None:
                lists.pop(name, None)
            else:
                lists[name] = (kw, True)
        return lists
