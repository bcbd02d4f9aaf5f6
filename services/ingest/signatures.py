"""Webhook signature checks: plain functions, no I/O, constant-time comparisons."""

import hashlib
import hmac


class SignatureError(Exception):
    """The request is not provably from the platform; the message says why (sent as 401)."""


def fresh_timestamp(timestamp: str | None, now: float, tolerance_s: int) -> int:
    """The sender's Unix timestamp, refused outside the replay window."""
    if not timestamp:
        raise SignatureError("missing request timestamp header")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise SignatureError("request timestamp is not an integer") from None
    if abs(now - sent_at) > tolerance_s:
        raise SignatureError(f"request timestamp is outside the {tolerance_s}s window")
    return sent_at


def hmac_sha256_hex(secret: str, message: bytes) -> str:
    """Hex HMAC-SHA256; compare results with :func:`same`, never with ``==``."""
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def same(expected: str, presented: str | None) -> bool:
    """Constant-time string comparison; a missing value never matches."""
    return presented is not None and hmac.compare_digest(expected.encode(), presented.encode())


def require_secret(secret: str) -> None:
    if not secret:
        # Refuse rather than accept unsigned traffic when the operator forgot a secret.
        raise SignatureError("no signing secret is configured for this source")


def verify_slack(
    secret: str, *, timestamp: str | None, body: bytes, signature: str | None, now: float,
    tolerance_s: int = 300,
) -> None:
    """Slack's v0 scheme: ``v0=`` + HMAC-SHA256 of ``v0:{timestamp}:{body}``."""
    require_secret(secret)
    fresh_timestamp(timestamp, now, tolerance_s)
    if not signature:
        raise SignatureError("missing X-Slack-Signature header")
    expected = "v0=" + hmac_sha256_hex(secret, b"v0:" + timestamp.encode() + b":" + body)
    if not same(expected, signature):
        raise SignatureError("X-Slack-Signature does not match the body")


def sign_slack(secret: str, timestamp: int, body: bytes) -> str:
    return "v0=" + hmac_sha256_hex(secret, f"v0:{timestamp}:".encode() + body)


def verify_steward(
    secret: str, *, timestamp: str | None, body: bytes, signature: str | None, now: float,
    tolerance_s: int = 300,
) -> None:
    """The generic source's scheme: ``sha256=`` + HMAC-SHA256 of ``{timestamp}.{body}``.

    Binding the timestamp into the MAC is what makes the replay window meaningful.
    """
    require_secret(secret)
    fresh_timestamp(timestamp, now, tolerance_s)
    if not signature:
        raise SignatureError("missing X-Steward-Signature header")
    expected = "sha256=" + hmac_sha256_hex(secret, timestamp.encode() + b"." + body)
    if not same(expected, signature):
        raise SignatureError("X-Steward-Signature does not match the body")


def sign_steward(secret: str, timestamp: int, body: bytes) -> str:
    return "sha256=" + hmac_sha256_hex(secret, f"{timestamp}.".encode() + body)


def sign_body(secret: str, body: bytes) -> str:
    """``sha256=`` + HMAC-SHA256 of the raw body: the scheme of GitHub and Discourse."""
    return "sha256=" + hmac_sha256_hex(secret, body)


def verify_body(secret: str, *, body: bytes, signature: str | None, header: str) -> None:
    """Check a :func:`sign_body` signature sent in ``header`` (no timestamp to bound replays)."""
    require_secret(secret)
    if not signature:
        raise SignatureError(f"missing {header} header")
    if not same(sign_body(secret, body), signature):
        raise SignatureError(f"{header} does not match the body")
