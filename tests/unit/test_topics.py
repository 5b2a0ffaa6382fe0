"""Topic specs per broker mode, and the environment knobs of `productimon-topics`."""

from __future__ import annotations

import pytest

from infra.topics import DAY_MS, TopicSpec, topic_specs
from infra.topics_cli import intervals_retention_days, replication_factor
from plumbing.cli import UserFacingError
from plumbing.settings import Settings


def _settings(**values: object) -> Settings:
    return Settings(data_dir="/tmp/productimon-test-topics", **values)


def test_kafka_mode_intervals_age_out_after_seven_days_by_default():
    specs = topic_specs(_settings(broker_mode="kafka", topic_partitions=24))
    assert specs["activity.intervals"] == TopicSpec(24, {"retention.ms": str(7 * DAY_MS)})


def test_kafka_mode_retention_of_intervals_follows_the_argument():
    specs = topic_specs(_settings(broker_mode="kafka"), intervals_retention_days=2)
    assert specs["activity.intervals"].configs == {"retention.ms": str(2 * 86_400_000)}


def test_kafka_mode_deadletter_is_one_partition_kept_thirty_days():
    specs = topic_specs(_settings(broker_mode="kafka"))
    assert specs["activity.deadletter"] == TopicSpec(1, {"retention.ms": str(30 * DAY_MS)})


def test_kafka_mode_identity_events_are_compacted_on_one_partition():
    specs = topic_specs(_settings(broker_mode="kafka"))
    assert specs["identity.events"] == TopicSpec(1, {"cleanup.policy": "compact"})


def test_embedded_mode_passes_no_topic_configs():
    specs = topic_specs(_settings(broker_mode="embedded", topic_partitions=12))
    assert {name: spec.partitions for name, spec in specs.items()} == {
        "activity.intervals": 12,
        "activity.deadletter": 1,
        "identity.events": 1,
    }
    assert all(spec.configs == {} for spec in specs.values())


def test_topic_names_follow_the_settings():
    specs = topic_specs(_settings(broker_mode="kafka", intervals_topic="a", deadletter_topic="b", identity_topic="c"))
    assert set(specs) == {"a", "b", "c"}


def test_retention_days_default_to_seven(monkeypatch):
    monkeypatch.delenv("PRODUCTIMON_INTERVALS_RETENTION_DAYS", raising=False)
    assert intervals_retention_days() == 7


def test_retention_days_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("PRODUCTIMON_INTERVALS_RETENTION_DAYS", "3")
    assert intervals_retention_days() == 3


@pytest.mark.parametrize("bad", ["0", "-1", "366", "seven", "1.5"])
def test_a_bad_retention_is_one_line_naming_the_variable(monkeypatch, bad):
    monkeypatch.setenv("PRODUCTIMON_INTERVALS_RETENTION_DAYS", bad)
    with pytest.raises(UserFacingError, match=r"^PRODUCTIMON_INTERVALS_RETENTION_DAYS: ") as info:
        intervals_retention_days()
    assert "\n" not in str(info.value)


def test_replication_factor_defaults_to_one_broker(monkeypatch):
    monkeypatch.delenv("PRODUCTIMON_TOPIC_REPLICATION_FACTOR", raising=False)
    assert replication_factor() == 1
