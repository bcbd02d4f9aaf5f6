"""The routing YAML: receivers and a routing tree, in the spirit of Prometheus Alertmanager.

    receivers:
      - name: console
        console: {}
      - name: moderators
        slack: {}                      # webhook_url falls back to STEWARD_SLACK_WEBHOOK_URL
        email: {to: [mods@example.org]}  # empty ``to`` falls back to STEWARD_EMAIL_TO
    route:
      receiver: console
      group_by: [community, category]
      routes:
        - matchers: ['severity=~"high|critical"']
          receiver: moderators

Matchers use Alertmanager syntax (``label="v"``, ``!=``, ``=~``, ``!~``; quotes optional;
regexes fully anchored). A label the incident lacks matches as the empty string.
``group_by``/``group_wait``/``group_interval``/``repeat_interval`` are inherited by children
and stored; grouping timers act on them in a later issue.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

__all__ = [
    "DEFAULT_GROUP_INTERVAL",
    "DEFAULT_GROUP_WAIT",
    "DEFAULT_REPEAT_INTERVAL",
    "ConsoleConfig",
    "EmailConfig",
    "MatchOp",
    "Matcher",
    "ReceiverConfig",
    "Route",
    "RoutingConfig",
    "RoutingConfigError",
    "SlackConfig",
    "default_routing_path",
    "format_duration",
    "load_configured_routing",
    "load_default_routing",
    "load_routing",
    "parse_duration",
    "parse_matcher",
]

DEFAULT_GROUP_WAIT = timedelta(seconds=30)
DEFAULT_GROUP_INTERVAL = timedelta(minutes=5)
DEFAULT_REPEAT_INTERVAL = timedelta(hours=4)

GROUP_BY_ALL = "..."
"""``group_by: ['...']`` groups by every label, as in Alertmanager."""


class RoutingConfigError(ValueError):
    """The routing YAML is invalid; ``problems`` lists each one, with its line when known."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid routing config ({source}):\n{lines}")


# --------------------------------------------------------------------------- matchers


class MatchOp(StrEnum):
    eq = "="
    ne = "!="
    re = "=~"
    nre = "!~"


_LABEL_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_MATCHER_RE = re.compile(
    rf"^\s*(?P<name>{_LABEL_NAME})\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$", re.DOTALL
)
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n", "t": "\t"}


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] == '"':
        body, out, i = raw[1:-1], [], 0
        while i < len(body):
            ch = body[i]
            if ch == '"':
                raise ValueError("unescaped '\"' inside a quoted value")
            if ch == "\\":
                if i + 1 >= len(body):
                    raise ValueError("dangling backslash at the end of a quoted value")
                nxt = body[i + 1]
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                i += 2
                continue
            out.append(ch)
            i += 1
        return "".join(out)
    if raw.startswith('"') or raw.endswith('"'):
        raise ValueError("unbalanced quotes in the value")
    return raw


@dataclass(frozen=True)
class Matcher:
    """One label matcher; regexes are anchored at both ends, as in Alertmanager."""

    name: str
    op: MatchOp
    value: str
    _pattern: re.Pattern[str] | None = field(
        default=None, init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        if self.op in (MatchOp.re, MatchOp.nre):
            try:
                re.compile(self.value)  # errors point into the user's text, not the wrapper
                pattern = re.compile(rf"^(?:{self.value})$")
            except re.error as exc:
                raise ValueError(f"invalid regex {self.value!r}: {exc}") from None
        else:
            pattern = None
        object.__setattr__(self, "_pattern", pattern)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op is MatchOp.eq:
            return actual == self.value
        if self.op is MatchOp.ne:
            return actual != self.value
        hit = self._pattern.fullmatch(actual) is not None  # type: ignore[attr-defined]
        return hit if self.op is MatchOp.re else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op.value}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse ``label="value"`` / ``label!="v"`` / ``label=~"re"`` / ``label!~"re"``."""
    if not isinstance(text, str):
        raise ValueError(f"a matcher must be a string like 'severity=\"high\"', got {text!r}")
    m = _MATCHER_RE.match(text)
    if m is None:
        raise ValueError(
            f"bad matcher {text!r}: expected label=\"value\", label!=\"value\", "
            f"label=~\"regex\" or label!~\"regex\""
        )
    try:
        value = _unquote(m["value"])
        return Matcher(m["name"], MatchOp(m["op"]), value)
    except ValueError as exc:
        raise ValueError(f"bad matcher {text!r}: {exc}") from None


def _validate_matcher(value: Any) -> Matcher:
    if isinstance(value, Matcher):
        return value
    return parse_matcher(value)


MatcherField = Annotated[
    Matcher, PlainValidator(_validate_matcher), PlainSerializer(str, return_type=str)
]


# --------------------------------------------------------------------------- durations

_DURATION_RE = re.compile(
    r"^(?:(?P<y>\d+)y)?(?:(?P<w>\d+)w)?(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?"
    r"(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?$"
)
_UNIT_SECONDS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}


def parse_duration(value: str | int | float | timedelta) -> timedelta:
    """Prometheus-style durations: ``30s``, ``5m``, ``4h``, ``1h30m``, ``250ms``, ``1d``.

    A bare number is seconds.
    """
    if isinstance(value, timedelta):
        result = value
    elif isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    elif isinstance(value, int | float):
        result = timedelta(seconds=value)
    elif isinstance(value, str):
        text = value.strip()
        m = _DURATION_RE.match(text)
        if not text or m is None or not any(m.groupdict().values()):
            raise ValueError(
                f"invalid duration {value!r}: use e.g. 30s, 5m, 4h, 1h30m, 250ms, 1d"
            )
        seconds = sum(int(m[u]) * s for u, s in _UNIT_SECONDS.items() if m[u])
        result = timedelta(seconds=seconds, milliseconds=int(m["ms"] or 0))
    else:
        raise ValueError(f"invalid duration {value!r}")
    if result < timedelta(0):
        raise ValueError(f"duration must not be negative: {value!r}")
    return result


def format_duration(value: timedelta) -> str:
    ms = round(value.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    parts = []
    for unit, secs in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, ms = divmod(ms, secs * 1000)
        if n:
            parts.append(f"{n}{unit}")
    if ms:
        parts.append(f"{ms}ms")
    return "".join(parts)


Duration = Annotated[
    timedelta,
    PlainValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str),
]


# --------------------------------------------------------------------------- receivers


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SlackConfig(_Strict):
    webhook_url: str | None = Field(
        default=None, description="Incoming webhook; settings' slack_webhook_url when unset."
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError(f"webhook_url must be an http(s) URL, got {v!r}")
        return v


class EmailConfig(_Strict):
    to: list[str] = Field(
        default_factory=list, description="Recipients; settings' email_to when empty."
    )

    @field_validator("to", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("to")
    @classmethod
    def _addresses(cls, v: list[str]) -> list[str]:
        for address in v:
            if "@" not in address or any(c in address for c in "\r\n,;"):
                raise ValueError(f"not an email address: {address!r}")
        return v


class ConsoleConfig(_Strict):
    pass


class ReceiverConfig(_Strict):
    name: str = Field(min_length=1)
    # absent integrations are left out of dumps: ``slack: null`` would read back as ``{}``
    slack: SlackConfig | None = Field(default=None, exclude_if=lambda v: v is None)
    email: EmailConfig | None = Field(default=None, exclude_if=lambda v: v is None)
    console: ConsoleConfig | None = Field(default=None, exclude_if=lambda v: v is None)

    @field_validator("slack", "email", "console", mode="before")
    @classmethod
    def _null_is_empty(cls, v: Any) -> Any:
        # ``slack:`` with nothing after it parses as None; treat it like ``slack: {}``.
        return {} if v is None else v

    @model_validator(mode="after")
    def _at_least_one(self) -> ReceiverConfig:
        if not self.kinds:
            raise ValueError(
                f"receiver {self.name!r} has no integration: give it slack, email or console"
            )
        return self

    @property
    def kinds(self) -> list[str]:
        return [k for k in ("slack", "email", "console") if getattr(self, k) is not None]


# --------------------------------------------------------------------------- routes


class Route(_Strict):
    """A node of the routing tree; unset fields inherit from the parent."""

    receiver: str | None = None
    matchers: list[MatcherField] = Field(default_factory=list)
    continue_: bool = Field(default=False, alias="continue")
    routes: list[Route] = Field(default_factory=list)
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None

    @field_validator("group_by")
    @classmethod
    def _group_labels(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        if GROUP_BY_ALL in v and len(v) > 1:
            raise ValueError("group_by '...' (all labels) cannot be combined with other labels")
        for label in v:
            if label != GROUP_BY_ALL and not re.fullmatch(_LABEL_NAME, label):
                raise ValueError(f"invalid label name in group_by: {label!r}")
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate labels in group_by: {v}")
        return v

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _positive(cls, v: timedelta | None) -> timedelta | None:
        if v is not None and v <= timedelta(0):
            raise ValueError("must be greater than zero")
        return v

    def walk(self, loc: tuple[str | int, ...] = ("route",)):
        """Yield ``(loc, node)`` depth-first; ``loc`` is the node's path in the YAML."""
        yield loc, self
        for i, child in enumerate(self.routes):
            yield from child.walk((*loc, "routes", i))


class RoutingConfig(_Strict):
    receivers: list[ReceiverConfig] = Field(min_length=1)
    route: Route

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> RoutingConfig:
        if info.context and info.context.get("defer_reference_checks"):
            return self
        problems = reference_problems(self)
        if problems:
            raise ValueError("; ".join(f"{_loc_str(loc)}: {msg}" for loc, msg in problems))
        return self

    def receiver(self, name: str) -> ReceiverConfig:
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def receiver_names(self) -> list[str]:
        return [r.name for r in self.receivers]


Route.model_rebuild()


def reference_problems(config: RoutingConfig) -> list[tuple[tuple[str | int, ...], str]]:
    """Cross-field checks: unique receiver names, known references, a well-formed root."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    seen: set[str] = set()
    for i, r in enumerate(config.receivers):
        if r.name in seen:
            problems.append((("receivers", i, "name"), f"duplicate receiver name {r.name!r}"))
        seen.add(r.name)
    root = config.route
    if root.receiver is None:
        problems.append((("route",), "the root route must name a receiver (the default)"))
    if root.matchers:
        problems.append(
            (("route", "matchers"), "the root route must not have matchers: it matches everything")
        )
    if root.continue_:
        problems.append((("route", "continue"), "the root route cannot have 'continue: true'"))
    known = ", ".join(sorted(seen)) or "none"
    for loc, node in root.walk():
        if node.receiver is not None and node.receiver not in seen:
            problems.append(
                (
                    (*loc, "receiver"),
                    f"unknown receiver {node.receiver!r} (defined: {known})",
                )
            )
    return problems


# --------------------------------------------------------------------------- loading


def _loc_str(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top>"


def _line_index(node: yaml.Node | None) -> dict[tuple[str | int, ...], int]:
    """Map each YAML path to its 1-based line, from the composer's node marks."""
    index: dict[tuple[str | int, ...], int] = {}

    def visit(n: yaml.Node, path: tuple[str | int, ...]) -> None:
        index.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            for key, value in n.value:
                if isinstance(key, yaml.ScalarNode):
                    # the key's line is the most useful place to point at
                    index[(*path, key.value)] = key.start_mark.line + 1
                    visit(value, (*path, key.value))
        elif isinstance(n, yaml.SequenceNode):
            for i, item in enumerate(n.value):
                visit(item, (*path, i))

    if node is not None:
        visit(node, ())
    return index


def _line_for(index: dict[tuple[str | int, ...], int], loc: tuple[str | int, ...]) -> int | None:
    for cut in range(len(loc), -1, -1):
        if loc[:cut] in index:
            return index[loc[:cut]]
    return None


def _describe(index, loc, msg: str) -> str:
    line = _line_for(index, loc) if index else None
    where = f"line {line}: " if line else ""
    return f"{where}{_loc_str(loc)}: {msg}"


def load_routing(source: str | Path) -> RoutingConfig:
    """Load and validate a routing config from YAML text or a file path.

    A ``Path``, or a one-line string naming an existing ``.yaml``/``.yml`` file, is read
    from disk; any other string is the YAML itself. Raises ``RoutingConfigError``.
    """
    if isinstance(source, Path) or (
        "\n" not in source
        and source.strip().endswith((".yaml", ".yml"))
        and Path(source.strip()).is_file()
    ):
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RoutingConfigError(str(path), [f"cannot read: {exc}"]) from exc
        origin = str(path)
    else:
        text, origin = source, "<string>"

    try:
        data = yaml.safe_load(text)
        root_node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise RoutingConfigError(origin, [f"{where}YAML syntax error: {problem}"]) from exc
    if not isinstance(data, dict):
        raise RoutingConfigError(
            origin, ["the document must be a mapping with 'receivers' and 'route'"]
        )

    index = _line_index(root_node)
    try:
        config = RoutingConfig.model_validate(data, context={"defer_reference_checks": True})
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown field {loc[-1]!r}"
            problems.append(_describe(index, loc, msg))
        raise RoutingConfigError(origin, problems) from None
    problems = [_describe(index, loc, msg) for loc, msg in reference_problems(config)]
    if problems:
        raise RoutingConfigError(origin, problems)
    return config


def default_routing_path() -> Path:
    return Path(str(resources.files(__package__).joinpath("default.yaml")))


def load_default_routing() -> RoutingConfig:
    """The built-in routing (``default.yaml`` beside this module)."""
    return load_routing(default_routing_path())


def load_configured_routing(routing_file: Path | None) -> RoutingConfig:
    """``NotifierSettings.routing_file`` when set, else the built-in default routing."""
    return load_routing(Path(routing_file)) if routing_file else load_default_routing()
