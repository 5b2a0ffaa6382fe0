"""The peer benchmark's comparison holds (bench/activitywatch_peer.py): the same realistic week, given to the real
aw-server 0.12.0 from PyPI as its watchers would have recorded it and to Productimon as its collector records it,
gives every app the same time in both, for the week and for a day cut anywhere."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from testbed.activitywatch import AwServer, post_json, time_per_app_of
from testbed.realistic import Person, activitywatch_export, person_intervals, store
from tests.conftest import lone_warehouse
from warehouse.queries import time_per_app

pytestmark = pytest.mark.e2e

MIDNIGHT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
HOST = "peer-laptop"
PERSON = Person("peer", 21, ("laptop",))


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    frame = person_intervals(PERSON, 7, MIDNIGHT)
    export = activitywatch_export(frame, HOST)
    with AwServer(tmp_path_factory.mktemp("aw")) as server, lone_warehouse(tmp_path_factory.mktemp("wh")) as client:
        post_json(f"{server.url}/api/0/import", export)
        store(client, frame)
        yield server, client


@pytest.mark.parametrize(
    "period",
    [
        (MIDNIGHT - timedelta(days=7), MIDNIGHT),
        (
            MIDNIGHT - timedelta(days=4, hours=15, minutes=7, seconds=3),
            MIDNIGHT - timedelta(days=3, hours=9, minutes=2),
        ),
    ],
    ids=["the week", "a day cut anywhere"],
)
def test_activitywatch_and_productimon_give_every_app_the_same_time(both, period):
    server, client = both
    theirs = time_per_app_of(server, HOST, *period)
    answer = time_per_app(client, PERSON.user_id, *period)
    ours = dict(zip(answer["app"], answer["seconds"], strict=True))
    assert sum(ours.values()) > 3 * 3600  # a working day's worth at least: there is something to compare
    assert set(theirs) == set(ours)
    assert {app: round(s, 1) for app, s in theirs.items()} == {app: round(s, 1) for app, s in ours.items()}


def test_a_week_with_an_app_left_out_of_the_export_is_told_apart(both, tmp_path):
    """The comparison can fail: an export that loses an app's events gives ActivityWatch another answer."""
    server, client = both
    frame = person_intervals(PERSON, 7, MIDNIGHT)
    export = activitywatch_export(frame[frame["app"] != "Code"], "peer-other")
    post_json(f"{server.url}/api/0/import", export)
    period = (MIDNIGHT - timedelta(days=7), MIDNIGHT)
    theirs = time_per_app_of(server, "peer-other", *period)
    ours = time_per_app(client, PERSON.user_id, *period)
    assert "Code" in set(ours["app"]) and "Code" not in theirs
