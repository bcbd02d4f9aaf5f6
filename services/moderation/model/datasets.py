"""Load labeled CSV / JSONL files into :class:`~.seed.SeedExample` rows.

A *mapping* (a YAML file or a dict) says which column holds the text and how the source's
labels become Steward categories and sentiment::

    text: tweet
    labels:
      # a categorical column: each source value maps to a list of categories
      class:
        "0": [identity_attack, toxicity]
        "1": [toxicity]
        "2": []
        # "*": []            optional catch-all for values not listed
      # a score column: categories apply when the score is >= threshold
      toxic:
        column: toxicity
        threshold: 0.5
        categories: [toxicity]
    sentiment:              # optional; every row is neutral without it
      column: mood
      values: {"0": negative, "1": neutral, "2": positive}   # optional when the column
      default: neutral                                      # already holds the names

Every error names the file, the row (1-based data row; line number for JSONL) and the
column. Each row is its own ``group`` (``"<file name>:<row>"``), so the group split in
:func:`~.seed.split` can hold out rows; ``handwritten`` is True (rows are real messages).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.moderation import CATEGORIES, Sentiment
from services.moderation.model.seed import SeedExample

CATCH_ALL = "*"


class DatasetError(ValueError):
    """A bad mapping or a bad data row; the message says where."""


@dataclass(frozen=True)
class ValueRule:
    column: str
    values: dict[str, frozenset[str]]

    def apply(self, row: Mapping[str, Any], where: str) -> frozenset[str]:
        raw = _cell(row, self.column, where)
        key = _key(raw)
        if key in self.values:
            return self.values[key]
        if CATCH_ALL in self.values:
            return self.values[CATCH_ALL]
        raise DatasetError(f"{where}: column {self.column!r} has unmapped value {raw!r} "
                           f"(mapped: {sorted(self.values)})")


@dataclass(frozen=True)
class ThresholdRule:
    column: str
    threshold: float
    categories: frozenset[str]

    def apply(self, row: Mapping[str, Any], where: str) -> frozenset[str]:
        raw = _cell(row, self.column, where)
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise DatasetError(f"{where}: column {self.column!r} is not a number: {raw!r}") from None
        return self.categories if value >= self.threshold else frozenset()


@dataclass(frozen=True)
class SentimentRule:
    column: str | None
    values: dict[str, Sentiment] | None
    default: Sentiment

    def apply(self, row: Mapping[str, Any], where: str) -> Sentiment:
        if self.column is None:
            return self.default
        raw = row.get(self.column)
        if raw is None or raw == "":
            return self.default
        key = _key(raw)
        if self.values is not None:
            if key in self.values:
                return self.values[key]
            raise DatasetError(f"{where}: column {self.column!r} has unmapped sentiment {raw!r}")
        try:
            return Sentiment(key.lower())
        except ValueError:
            raise DatasetError(f"{where}: column {self.column!r} has unknown sentiment {raw!r} "
                               f"(expected one of {[s.value for s in Sentiment]})") from None


@dataclass(frozen=True)
class LabelMapping:
    text: str
    rules: tuple[ValueRule | ThresholdRule, ...]
    sentiment: SentimentRule


def _key(raw: Any) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw).strip()


def _cell(row: Mapping[str, Any], column: str, where: str) -> Any:
    if column not in row:
        raise DatasetError(f"{where}: missing column {column!r} (have: {sorted(row)})")
    value = row[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DatasetError(f"{where}: column {column!r} is empty")
    return value


def _categories(raw: Any, where: str) -> frozenset[str]:
    if raw is None:
        return frozenset()
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(c, str) for c in raw):
        raise DatasetError(f"{where}: expected a list of categories, got {raw!r}")
    unknown = sorted(set(raw) - set(CATEGORIES))
    if unknown:
        raise DatasetError(f"{where}: unknown categories {unknown} (known: {list(CATEGORIES)})")
    return frozenset(raw)


def _sentiment(raw: Any, where: str) -> Sentiment:
    try:
        return Sentiment(str(raw))
    except ValueError:
        raise DatasetError(f"{where}: unknown sentiment {raw!r} "
                           f"(expected one of {[s.value for s in Sentiment]})") from None


def parse_mapping(spec: Mapping[str, Any] | str | Path, *, source: str = "mapping") -> LabelMapping:
    """Validate a mapping given as a dict or a path to a YAML (or JSON) file."""
    if isinstance(spec, (str, Path)):
        import yaml

        path = Path(spec)
        source = str(path)
        try:
            spec = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise DatasetError(f"{source}: cannot read mapping: {exc}") from None
        except yaml.YAMLError as exc:
            raise DatasetError(f"{source}: invalid YAML: {exc}") from None
    if not isinstance(spec, Mapping):
        raise DatasetError(f"{source}: mapping must be a dict, got {type(spec).__name__}")
    unknown = sorted(set(spec) - {"text", "labels", "sentiment"})
    if unknown:
        raise DatasetError(f"{source}: unknown keys {unknown} (allowed: text, labels, sentiment)")
    text = spec.get("text")
    if not isinstance(text, str) or not text:
        raise DatasetError(f"{source}: 'text' must name the text column")
    labels = spec.get("labels") or {}
    if not isinstance(labels, Mapping):
        raise DatasetError(f"{source}: 'labels' must be a dict")
    rules: list[ValueRule | ThresholdRule] = []
    for name, rule in labels.items():
        where = f"{source}: labels.{name}"
        if not isinstance(rule, Mapping):
            raise DatasetError(f"{where}: expected a dict")
        if "threshold" in rule or "categories" in rule:
            extra = sorted(set(rule) - {"column", "threshold", "categories"})
            if extra:
                raise DatasetError(f"{where}: unknown keys {extra}")
            try:
                threshold = float(rule.get("threshold", 0.5))
            except (TypeError, ValueError):
                raise DatasetError(f"{where}: threshold must be a number") from None
            rules.append(ThresholdRule(str(rule.get("column", name)), threshold,
                                       _categories(rule.get("categories"), where)))
        else:
            values = {_key(k): _categories(v, f"{where}.{k}") for k, v in rule.items()}
            if not values:
                raise DatasetError(f"{where}: no values mapped")
            rules.append(ValueRule(str(name), values))
    sent = spec.get("sentiment")
    if sent is None:
        sentiment = SentimentRule(None, None, Sentiment.neutral)
    elif isinstance(sent, str):
        sentiment = SentimentRule(sent, None, Sentiment.neutral)
    elif isinstance(sent, Mapping):
        where = f"{source}: sentiment"
        extra = sorted(set(sent) - {"column", "values", "default"})
        if extra:
            raise DatasetError(f"{where}: unknown keys {extra}")
        values = sent.get("values")
        if values is not None and not isinstance(values, Mapping):
            raise DatasetError(f"{where}.values: expected a dict")
        sentiment = SentimentRule(
            sent.get("column"),
            {_key(k): _sentiment(v, f"{where}.values.{k}") for k, v in values.items()}
            if values is not None else None,
            _sentiment(sent.get("default", "neutral"), f"{where}.default"),
        )
    else:
        raise DatasetError(f"{source}: 'sentiment' must be a column name or a dict")
    return LabelMapping(text, tuple(rules), sentiment)


def _rows(path: Path) -> Iterator[tuple[str, int, Mapping[str, Any]]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{where}: invalid JSON: {exc.msg}") from None
                if not isinstance(row, dict):
                    raise DatasetError(f"{where}: expected a JSON object per line")
                yield where, lineno, row
    elif suffix in (".csv", ".tsv"):
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            if not reader.fieldnames:
                raise DatasetError(f"{path}: no header row")
            for n, row in enumerate(reader, 1):
                where = f"{path}: row {n}"
                if None in row:
                    raise DatasetError(f"{where}: more cells than header columns")
                yield where, n, row
    else:
        raise DatasetError(f"{path}: unsupported file type {suffix!r} (use .csv, .tsv or .jsonl)")


def load_examples(path: str | Path, mapping: LabelMapping | Mapping[str, Any] | str | Path
                  ) -> list[SeedExample]:
    """Rows of one labeled file as examples, in file order."""
    path = Path(path)
    if not isinstance(mapping, LabelMapping):
        mapping = parse_mapping(mapping)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    out = []
    for where, rowid, row in _rows(path):
        text = _cell(row, mapping.text, where)
        if not isinstance(text, str):
            raise DatasetError(f"{where}: column {mapping.text!r} is not text: {text!r}")
        labels: frozenset[str] = frozenset()
        for rule in mapping.rules:
            labels |= rule.apply(row, where)
        sentiment = mapping.sentiment.apply(row, where)
        out.append(SeedExample(text.strip(), labels, sentiment, f"{path.name}:{rowid}", True))
    if not out:
        raise DatasetError(f"{path}: no rows")
    return out


def load_datasets(paths: Sequence[str | Path],
                  mapping: LabelMapping | Mapping[str, Any] | str | Path) -> list[SeedExample]:
    """All rows of several files, with one mapping."""
    if not isinstance(mapping, LabelMapping):
        mapping = parse_mapping(mapping)
    out: list[SeedExample] = []
    for path in paths:
        out.extend(load_examples(path, mapping))
    return out
