"""Benchmarks write their figures into the card (``bundle.json``) of the bundle they measured."""

import json
from pathlib import Path

from services.moderation.model.train import CARD_FILE


def stamp_card(folder: Path, key: str, figures: dict) -> None:
    """Set ``metrics[key]`` of the card in ``folder``; the rest of the card is kept."""
    card = json.loads((folder / CARD_FILE).read_text(encoding="utf-8"))
    card["metrics"][key] = figures
    (folder / CARD_FILE).write_text(json.dumps(card, indent=2), encoding="utf-8")
