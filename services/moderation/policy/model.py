"""The policy schema. A community owns one YAML file; its ``version`` is stamped on every
verdict and incident so that any decision can be traced to the rules that made it."""

from pydantic import BaseModel, ConfigDict, Field, model_validator

from schemas import CATEGORIES, Severity


class CategoryRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(ge=0, le=1, description="Score at or above which the rule fires.")
    severity: Severity


class Policy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1)
    categories: dict[str, CategoryRule]
    channels: dict[str, dict[str, CategoryRule]] = Field(
        default_factory=dict, description="Per-channel overrides of category rules."
    )

    @model_validator(mode="after")
    def _known_categories(self) -> "Policy":
        named = set(self.categories) | {c for rules in self.channels.values() for c in rules}
        unknown = named - set(CATEGORIES)
        if unknown:
            raise ValueError(f"unknown categories {sorted(unknown)}; known: {list(CATEGORIES)}")
        return self

    def rules_for(self, channel_id: str | None) -> dict[str, CategoryRule]:
        return {**self.categories, **self.channels.get(channel_id or "", {})}
