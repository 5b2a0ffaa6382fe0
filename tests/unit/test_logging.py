"""PRODUCTIMON_LOG_FORMAT=json: one JSON object per log record, with the record's extra fields."""

from __future__ import annotations

import io
import json
import logging
import logging.config
from collections.abc import Callable

from plumbing.cli import JsonFormatter, json_logging_config


def records_logged(formatter: logging.Formatter, log: Callable[[logging.Logger], None]) -> list[dict]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("productimon.test")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        log(logger)
    finally:
        logger.removeHandler(handler)
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_each_record_is_one_json_object_with_the_fields():
    def log(logger):
        logger.info("batch %s stored", 7, extra={"partition": 3, "topic": "activity.intervals"})
        logger.warning("a line\nwith a newline")

    first, second = records_logged(JsonFormatter("productimon-worker"), log)
    assert first["level"] == "INFO"
    assert first["logger"] == "productimon.test"
    assert first["process"] == "productimon-worker"
    assert first["message"] == "batch 7 stored"
    assert first["partition"] == 3 and first["topic"] == "activity.intervals"
    assert first["time"][:2] == "20" and "T" in first["time"]
    assert second["message"] == "a line\nwith a newline"
    assert "partition" not in second


def test_exceptions_stay_inside_the_object():
    def log(logger):
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("failed")

    (record,) = records_logged(JsonFormatter("productimon-gateway"), log)
    assert record["message"] == "failed"
    assert "ValueError: boom" in record["exception"]


def test_plain_format_needs_no_logging_config(monkeypatch):
    monkeypatch.delenv("PRODUCTIMON_LOG_FORMAT", raising=False)
    assert json_logging_config("productimon-worker") is None


def test_json_logging_config_is_a_valid_dict_config(monkeypatch):
    monkeypatch.setenv("PRODUCTIMON_LOG_FORMAT", "json")
    config = json_logging_config("productimon-worker")
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    try:
        logging.config.dictConfig(config)
        (handler,) = root.handlers
        assert isinstance(handler.formatter, JsonFormatter)
        assert handler.formatter.process_name == "productimon-worker"
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
