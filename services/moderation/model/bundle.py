"""Where the default bundle lives, and building it once.

A bundle folder is complete when its ``bundle.json`` is present and names the expected
version; the card is written last and the folder only appears under its final name by an
atomic rename, so a killed build leaves at most a hidden temp folder that the next build
removes, never a half bundle under the real name.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from pydantic import ValidationError

from services.moderation.model.train import (
    BUNDLE_NAME,
    CARD_FILE,
    BundleCard,
    Progress,
    build_bundle,
    bundle_version,
)

# Without these the folder cannot be loaded even if a card is there (e.g. files deleted).
_REQUIRED = ("config.json", "model.safetensors", "tokenizer.json", CARD_FILE)
_TMP_PREFIX = f".{BUNDLE_NAME}-build-"
ONNX_REQUIRED = ("config.json", "model.int8.onnx", "tokenizer.json", CARD_FILE)


def default_bundle_dir(cache: Path) -> Path:
    return Path(cache) / f"{BUNDLE_NAME}-{bundle_version()}"


def read_card(path: Path) -> BundleCard:
    return BundleCard.model_validate_json((Path(path) / CARD_FILE).read_text(encoding="utf-8"))


def is_complete(path: Path, version: str | None = None, required: tuple[str, ...] = _REQUIRED) -> bool:
    path = Path(path)
    if not all((path / name).is_file() for name in required):
        return False
    try:
        card = read_card(path)
    except (ValidationError, ValueError, OSError):
        return False
    return version is None or card.version == version


@contextmanager
def _build_lock(cache: Path):
    # Two services starting together on one host must not both train (or race the rename).
    with open(cache / f".{BUNDLE_NAME}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def build_once(cache: Path, target: Path, complete: Callable[[Path], bool],
                build: Callable[[Path], object]) -> Path:
    """Build into a hidden temp folder and rename it into place, under a lock, unless a
    complete ``target`` is there already (perhaps built by another process meanwhile)."""
    if complete(target):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with _build_lock(cache):
        if complete(target):
            return target
        for stale in cache.glob(f"{_TMP_PREFIX}*"):  # left by a killed build
            shutil.rmtree(stale, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=cache))
        try:
            build(tmp)
            if target.exists():  # an incomplete folder under the real name
                shutil.rmtree(target)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def ensure_default_bundle(cache: Path, progress: Progress | None = None) -> Path:
    """Return the cached default bundle, building it first if it is missing or incomplete."""
    cache = Path(cache)
    version = bundle_version()
    return build_once(cache, default_bundle_dir(cache), lambda path: is_complete(path, version),
                       lambda tmp: build_bundle(tmp, progress=progress))


def export_recipe(path: Path) -> str | None:
    """The export recipe named in an ONNX export's card (None before recipes were named)."""
    try:
        card = json.loads((Path(path) / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return (card.get("onnx") or {}).get("recipe")


def ensure_serving_bundle(cache: Path, progress: Progress | None = None) -> Path:
    """The default bundle exported to ONNX with int8 weights: what the service loads."""
    from services.moderation.model.onnx_export import RECIPE, export_onnx

    cache = Path(cache)
    source = ensure_default_bundle(cache, progress)
    target = source.with_name(source.name + "-onnx")
    version = bundle_version()
    return build_once(
        cache, target,
        lambda path: is_complete(path, version, ONNX_REQUIRED) and export_recipe(path) == RECIPE,
        lambda tmp: export_onnx(source, tmp, quantize=True),
    )


def load_classifier(path: Path, *, threads: int | None = None, scheme: str | None = None):
    """ONNX Runtime on the int8 (or fp32) export when the folder has one, torch otherwise.

    With ``scheme``, the folder is any Hugging Face text-classification model whose labels
    that crosswalk scheme maps onto Steward's categories."""
    path = Path(path)
    if scheme:
        from services.moderation.model.external import ExternalClassifier

        return ExternalClassifier.load(path, scheme, threads=threads)
    if (path / "model.int8.onnx").is_file() or (path / "model.onnx").is_file():
        from services.moderation.model.onnx_runner import OnnxClassifier

        return OnnxClassifier.load(path, int8=(path / "model.int8.onnx").is_file(), threads=threads or 2)
    from services.moderation.model.classifier import Classifier

    return Classifier.load(path, threads=threads)
