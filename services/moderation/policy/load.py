"""Finding a community's policy: its own file, else the folder's default, else built-in."""

from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from services.moderation.policy.model import Policy

BUILT_IN = Path(__file__).with_name("default.yaml")


class PolicyError(ValueError):
    pass


def parse_policy(text: str, origin: str) -> Policy:
    try:
        return Policy.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as error:
        raise PolicyError(f"{origin}: not valid YAML: {error}") from None
    except ValidationError as error:
        raise PolicyError(f"{origin}: {error}") from None


@lru_cache(maxsize=1)
def built_in_policy() -> Policy:
    return parse_policy(BUILT_IN.read_text(), str(BUILT_IN))


class PolicyBook:
    """Policies of one folder, read once at start."""

    def __init__(self, folder: Path | None) -> None:
        self._policies: dict[str, Policy] = {}
        self._default = built_in_policy()
        if folder is None:
            return
        for path in sorted(folder.glob("*.yaml")):
            policy = parse_policy(path.read_text(), str(path))
            if path.stem == "default":
                self._default = policy
            else:
                self._policies[path.stem] = policy

    def for_community(self, community_id: str) -> Policy:
        return self._policies.get(community_id, self._default)
