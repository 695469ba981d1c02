import argparse

import pytest

from cner_train.cli import add_dataclass_args, dataclass_from_args
from cner_train.publish import PublishConfig


def parse(argv):
    p = argparse.ArgumentParser()
    add_dataclass_args(p, PublishConfig)
    return dataclass_from_args(PublishConfig, p.parse_args(argv))


def test_bundle_is_positional_or_a_flag(monkeypatch):
    monkeypatch.setenv("KAFKA_BROKERS", "127.0.0.1:9092")
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7")
    assert parse(["models/default"]).bundle == "models/default"
    assert parse(["--bundle", "models/default", "--live", "true"]).live is True


def test_missing_required_option_says_which():
    with pytest.raises(SystemExit, match="--bundle"):
        parse([])
