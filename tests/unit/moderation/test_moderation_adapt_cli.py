"""``steward model adapt`` on a CSV with the real frozen encoder: a versioned head bundle
that names its base and community, and clear refusals."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from services.moderation.model.encoder import ensure_encoder
from services.moderation.model.head_bundle import (
    head_path,
    read_head,
    write_head_bundle,
)
from services.moderation.model.heads import LinearHead
from services.moderation.model.labels import HEAD_LABELS
from services.moderation.model.lifecycle import app

HARMFUL = [
    "buy followers now at cheap-followers dot biz", "free crypto giveaway send 1 eth get 2 back",
    "click here to verify your account or it gets deleted", "check out my channel and subscribe pls",
    "win a free gift card, just enter your password here", "limited airdrop claim your tokens now",
    "dm me for cheap likes and views", "your wallet is locked, log in at this link to unlock",
    "sub4sub anyone? follow me back", "earn 500 dollars a day from home, message me",
]
HARMLESS = [
    "the meetup starts at six, see you there", "has anyone read the new release notes?",
    "thanks for the help with my pull request", "I think the second option is cleaner",
    "what time zone is the call in?", "great photo of the harbour this morning",
    "the docs explain how to configure the cache", "welcome to the community, glad you joined",
    "can someone review my draft before friday?", "lunch was excellent today",
]


@pytest.fixture
def cache(tmp_path, model_cache):
    encoder = ensure_encoder(model_cache)
    shutil.copytree(encoder, tmp_path / encoder.name)
    flat = LinearHead(np.zeros((384, len(HEAD_LABELS)), dtype=np.float32),
                      np.full(len(HEAD_LABELS), -2.0, dtype=np.float32))
    write_head_bundle(tmp_path, "steward-general", flat, train_size=0, data_hash="none", metrics={},
                      training={})
    return tmp_path


@pytest.fixture
def labelled(tmp_path):
    rows = ["text,label"] + [f'"{t}",spam' for t in HARMFUL] + [f'"{t}",ok' for t in HARMLESS]
    data = tmp_path / "acme.csv"
    data.write_text("\n".join(rows) + "\n")
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text('text: text\nlabels:\n  label:\n    spam: [spam]\n    ok: []\n')
    return data, mapping


def test_adapt_writes_the_next_version_of_the_community_bundle(cache, labelled):
    data, mapping = labelled
    args = ["adapt", "--community", "acme", "--data", str(data), "--mapping", str(mapping),
            "--cache", str(cache)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "model: acme@1" in result.output
    head, card = read_head(head_path(cache, "acme@1"))
    assert (card.base, card.community, card.train_size) == ("steward-general@1", "acme", 20)
    assert "spam" in card.metrics["cross_validation"]
    spam = HEAD_LABELS.index("spam")
    assert np.any(head.weight[:, spam] != 0)  # spam was learned; the flat base had none
    toxicity = HEAD_LABELS.index("toxicity")
    assert not np.any(head.weight[:, toxicity])  # no toxicity labels: the base is kept

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0 and "model: acme@2" in again.output
    assert head_path(cache, "acme@1")  # the first version is still there


def test_adapt_refuses_without_examples_or_without_enough_of_a_class(cache, tmp_path, labelled):
    result = CliRunner().invoke(app, ["adapt", "--community", "acme", "--cache", str(cache)])
    assert result.exit_code == 2 and "--from-feedback" in result.output

    _, mapping = labelled
    few = tmp_path / "few.csv"
    few.write_text("text,label\n" + "".join(f'"{t}",ok\n' for t in HARMLESS) + '"buy now",spam\n')
    result = CliRunner().invoke(app, ["adapt", "--community", "acme", "--data", str(few),
                                      "--mapping", str(mapping), "--cache", str(cache)])
    assert result.exit_code == 2 and "at least 5 harmful" in result.output


def test_adapt_needs_a_base(tmp_path, labelled):
    data, mapping = labelled
    result = CliRunner().invoke(app, ["adapt", "--community", "acme", "--data", str(data),
                                      "--mapping", str(mapping), "--cache", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "steward model general" in result.output
