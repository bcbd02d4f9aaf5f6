"""JSON Schema files generated from the contract models; a test fails when they drift."""

import json
from pathlib import Path

from schemas.activity import MemberActivity
from schemas.base import Contract
from schemas.feedback import ModeratorFeedback
from schemas.incidents import Incident
from schemas.moderation import ModerationVerdict

JSONSCHEMA_DIR = Path(__file__).with_name("jsonschema")
CONTRACTS: tuple[type[Contract], ...] = (MemberActivity, ModerationVerdict, Incident, ModeratorFeedback)


def file_name(model: type[Contract]) -> str:
    return f"{model.__name__}.v{model.SCHEMA_VERSION}.json"


def render(model: type[Contract]) -> str:
    schema = model.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://steward.dev/schemas/{file_name(model)}"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_all() -> list[Path]:
    JSONSCHEMA_DIR.mkdir(exist_ok=True)
    paths = []
    for model in CONTRACTS:
        path = JSONSCHEMA_DIR / file_name(model)
        path.write_text(render(model))
        paths.append(path)
    return paths


def drifted() -> list[str]:
    """Names of committed files that differ from what the models generate now."""
    stale = []
    for model in CONTRACTS:
        path = JSONSCHEMA_DIR / file_name(model)
        if not path.exists() or path.read_text() != render(model):
            stale.append(path.name)
    return stale
