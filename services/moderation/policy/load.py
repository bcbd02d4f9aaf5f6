"""Finding a community's policy: its own file, else the folder's default, else built-in."""

import hashlib
import logging
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from services.moderation.policy.model import Policy

BUILT_IN = Path(__file__).with_name("default.yaml")
log = logging.getLogger(__name__)


class PolicyError(ValueError):
    pass


def _line_of(text: str, loc: tuple) -> int | None:
    """The 1-based line of the YAML node at pydantic's error location, as near as it gets."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == str(key)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
        if node is None:
            break
        line = node.start_mark.line + 1
    return line


def parse_policy(text: str, origin: str) -> Policy:
    try:
        return Policy.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as error:
        raise PolicyError(f"{origin}: not valid YAML: {error}") from None
    except ValidationError as error:
        lines = [
            f"{'.'.join(map(str, e['loc'])) or '(policy)'}"
            + (f" (line {n})" if (n := _line_of(text, e["loc"])) else "")
            + f": {e['msg']}"
            for e in error.errors()
        ]
        raise PolicyError(f"{origin}: invalid policy: " + "; ".join(lines)) from None


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


@dataclass
class ReloadResult:
    loaded: list[str] = field(default_factory=list)  # paths whose new content now serves
    removed: list[str] = field(default_factory=list)  # paths deleted since the last look
    rejected: dict[str, str] = field(default_factory=dict)  # path -> reason; last good keeps serving

    @property
    def changed(self) -> bool:
        return bool(self.loaded or self.removed or self.rejected)


@dataclass
class _Seen:
    stat: tuple[int, int]  # (mtime_ns, size)
    digest: str


class PolicyStore:
    """Policies of one folder, re-read when files change, keeping the last good version.

    ``<community>.yaml`` is a community's policy; ``default.yaml`` (else the built-in one) serves
    every other community, and any community whose file was deleted or never was valid.
    ``reload_if_changed()`` is cheap: a ``stat`` per file, a read and hash only when the stat
    changed (or is too recent to trust, since mtimes are coarse), a parse only when the hash did.
    """

    RACY_S = 2.0  # a file modified this recently is re-hashed even when its stat looks unchanged

    def __init__(self, folder: Path | None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._policies: dict[str, Policy] = {}
        self._default: Policy | None = None
        self._seen: dict[Path, _Seen] = {}
        self._errors: dict[str, str] = {}
        self.reload_if_changed()

    def for_community(self, community_id: str) -> Policy:
        return self._policies.get(community_id) or self._default or built_in_policy()

    def errors(self) -> dict[str, str]:
        """Files currently refused, path -> reason (each one's last good version, if any, serves)."""
        return dict(self._errors)

    def reload_if_changed(self) -> ReloadResult:
        result = ReloadResult()
        present: set[Path] = set()
        paths = sorted(self.folder.glob("*.yaml")) if self.folder is not None and self.folder.is_dir() else []
        now_ns = time.time_ns()
        for path in paths:
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            present.add(path)
            stat = (st.st_mtime_ns, st.st_size)
            seen = self._seen.get(path)
            if seen is not None and seen.stat == stat and now_ns - st.st_mtime_ns > self.RACY_S * 1e9:
                continue
            try:
                raw = path.read_bytes()
            except OSError as error:
                self._reject(path, f"{path}: unreadable: {error}", result)
                continue
            digest = hashlib.sha256(raw).hexdigest()
            if seen is not None and seen.digest == digest:
                seen.stat = stat
                continue
            self._seen[path] = _Seen(stat, digest)
            try:
                policy = parse_policy(raw.decode("utf-8"), str(path))
            except UnicodeDecodeError as error:
                self._reject(path, f"{path}: not UTF-8: {error}", result)
                continue
            except PolicyError as error:
                self._reject(path, str(error), result)
                continue
            if path.stem == "default":
                self._default = policy
            else:
                self._policies[path.stem] = policy
            self._errors.pop(str(path), None)
            result.loaded.append(str(path))
            log.info("policy loaded: %s version %s", path, policy.version)
        for path in [p for p in self._seen if p not in present]:
            del self._seen[path]
            self._errors.pop(str(path), None)
            if path.stem == "default":
                self._default = None
            else:
                self._policies.pop(path.stem, None)
            result.removed.append(str(path))
            log.info("policy removed: %s; the default serves", path)
        return result

    def _reject(self, path: Path, reason: str, result: ReloadResult) -> None:
        self._errors[str(path)] = reason
        result.rejected[str(path)] = reason
        log.error("policy rejected, last good version keeps serving: %s", reason)
