"""Topic records to warehouse rows: sites only, identity from the stamp, bad input set aside with a reason."""

import uuid

from hypothesis import given
from hypothesis import strategies as st

from schemas.codec import decode_interval, encode_stamped_batch
from schemas.privacy_rules import AccountPrivacy, PrivacyRule, private_fields
from stream_jobs.rows import decode_intervals, private_interval, private_intervals

NOW = 1_780_000_000_000


def an_interval(**changes) -> dict:
    return {
        "event_id": str(uuid.uuid4()),
        "device_seq": 1,
        "start": NOW - 10_000,
        "end": NOW - 5_000,
        "app": "Firefox",
        "title": None,
        "url": "https://user:pw@www.example.com/path?q=secret#frag",
        "keystrokes": 1,
        "clicks": 2,
        "idle": False,
    } | changes


def record(*intervals) -> bytes:
    return encode_stamped_batch({"user_id": "u1", "device_id": "d1", "received_at": NOW, "intervals": list(intervals)})


def test_a_record_becomes_intervals_with_the_site_only_and_the_stamped_identity():
    intervals, rejected = decode_intervals([record(an_interval(), an_interval(url=None))])
    assert rejected == []
    assert [(i["user_id"], i["device_id"], i["site"], i["title"]) for i in intervals] == [
        ("u1", "d1", "example.com", ""),
        ("u1", "d1", "", ""),
    ]
    assert all("url" not in i for i in intervals)


def test_an_unreadable_record_is_set_aside_whole_and_the_rest_goes_on():
    intervals, rejected = decode_intervals([b"\xc3\x01garbage!", record(an_interval())])
    assert len(intervals) == 1
    assert rejected[0][0] == b"\xc3\x01garbage!" and "undecodable" in rejected[0][1]


def test_an_interval_breaking_the_gateways_rules_is_set_aside_alone():
    bad = an_interval(end=NOW - 20_000)
    intervals, rejected = decode_intervals([record(an_interval(), bad)])
    assert len(intervals) == 1
    assert [r.reason for r in rejected] == [f"invalid interval (device_seq {bad['device_seq']}): end is before start"]
    assert decode_interval(rejected[0][0])["event_id"] == bad["event_id"]


def test_a_title_holding_an_address_loses_its_query_on_the_server_too():
    # Clients are not trusted: a collector that did not scrub titles still cannot store a query string. The
    # worker stores only what `private_interval` leaves of what it decoded.
    title = "example.com/search?q=secret&token=abc#frag - Chromium"
    intervals, _ = decode_intervals([record(an_interval(title=title, app="chromium"))])
    kept = private_interval(intervals[0], AccountPrivacy())
    assert kept["title"] == "example.com" and kept["site"] == "example.com"


def test_the_worker_applies_the_accounts_rules_and_mode_again():
    title = "mysql -u root -pS3cret - Konsole"
    intervals, _ = decode_intervals([record(an_interval(title=title, app="konsole", url=None))])
    assert private_interval(intervals[0], AccountPrivacy())["title"] == "mysql"
    assert private_interval(intervals[0], AccountPrivacy("full"))["title"] == title
    assert private_interval(intervals[0], AccountPrivacy("off"))["title"] == ""
    hidden = AccountPrivacy("full", (PrivacyRule("app", "konsole", "drop_details"),))
    assert {k: private_interval(intervals[0], hidden)[k] for k in ("app", "title", "site")} == {
        "app": "(private)",
        "title": "",
        "site": "",
    }


ACCOUNTS = {
    "scrubbed": AccountPrivacy(),
    "full": AccountPrivacy("full"),
    "ruled": AccountPrivacy(
        "scrubbed", (PrivacyRule("app", "Bank*", "drop_details"), PrivacyRule("title", "salary", "hide_title"))
    ),
}
WINDOWS = [("Firefox", "mail — alice@example.com — Inbox", "example.com"), ("Code", "notes.py — project", None),
           ("BankApp", "balance", None), ("Code", "salary review.ods", None), ("xterm", "ssh root@10.0.0.1", None),
           ("Firefox", "mail — alice@example.com — Inbox", None), ("Code", None, None)]  # fmt: skip


@given(st.lists(st.tuples(st.sampled_from(sorted(ACCOUNTS)), st.sampled_from(WINDOWS)), max_size=40))
def test_keeping_a_batch_s_choices_once_per_distinct_window_gives_what_each_interval_alone_would(picked):
    """The worker works out each distinct (user, app, title, site) of a batch once; every interval still gets exactly
    what private_fields gives it under its own account, whoever else in the batch had the same window."""
    intervals = [
        an_interval(user_id=user, app=app, title=title, site=site, device_seq=n)
        for n, (user, (app, title, site)) in enumerate(picked)
    ]
    kept = private_intervals(intervals, ACCOUNTS)
    for interval, got in zip(intervals, kept, strict=True):
        app, title, site = private_fields(
            interval["app"], interval["title"], interval["site"], ACCOUNTS[interval["user_id"]]
        )
        assert (got["app"], got["title"], got["site"]) == (app or "", title or "", site or "")
        assert {k: v for k, v in got.items() if k not in ("app", "title", "site")} == {
            k: v for k, v in interval.items() if k not in ("app", "title", "site")
        }
