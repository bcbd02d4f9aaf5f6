import pytest

from services.ingest.signatures import (
    SignatureError,
    sign_slack,
    sign_steward,
    verify_slack,
    verify_steward,
)

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BODY = b'{"type":"event_callback","event_id":"Ev1"}'
NOW = 1_700_000_000


def test_slack_signature_round_trip():
    signature = sign_slack(SECRET, NOW, BODY)
    verify_slack(SECRET, timestamp=str(NOW), body=BODY, signature=signature, now=NOW + 10)


def test_slack_known_vector():
    # Slack's documented example request (api.slack.com "Verifying requests from Slack").
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    timestamp = "1531420618"
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    verify_slack(secret, timestamp=timestamp, body=body, signature=signature, now=1531420618)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"body": BODY + b" "}, "does not match"),
        ({"timestamp": str(NOW - 301)}, "outside the 300s window"),
        ({"timestamp": "yesterday"}, "not an integer"),
        ({"timestamp": None}, "missing request timestamp"),
        ({"signature": None}, "missing X-Slack-Signature"),
        ({"signature": "v0=" + "0" * 64}, "does not match"),
    ],
)
def test_slack_rejects_with_reason(change, reason):
    request = {"timestamp": str(NOW), "body": BODY, "signature": sign_slack(SECRET, NOW, BODY)}
    request.update(change)
    with pytest.raises(SignatureError, match=reason):
        verify_slack(SECRET, now=NOW, **request)


def test_empty_secret_refuses_everything():
    with pytest.raises(SignatureError, match="no signing secret"):
        verify_slack("", timestamp=str(NOW), body=BODY, signature=sign_slack("", NOW, BODY), now=NOW)


def test_generic_signature_binds_timestamp():
    signature = sign_steward(SECRET, NOW, BODY)
    verify_steward(SECRET, timestamp=str(NOW), body=BODY, signature=signature, now=NOW)
    # The same MAC presented with another timestamp is a replay attempt.
    with pytest.raises(SignatureError, match="does not match"):
        verify_steward(SECRET, timestamp=str(NOW + 1), body=BODY, signature=signature, now=NOW)
