"""Structured JSON logs: call fields on every line, secrets masked wherever they appear."""

from __future__ import annotations

import json
import logging

from policyhub.observability import logs

API_KEY = "phk_0123456789ab_" + "A" * 43
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"


def test_mask_hides_secret_keys_and_values():
    masked = logs.mask(
        {
            "token": "anything",
            "api_key": "x",
            "nested": {"Authorization": "Bearer y"},
            "note": f"sent {API_KEY} and {JWT}",
            "list": [JWT],
            "safe": "hello",
        }
    )
    assert masked == {
        "token": "***",
        "api_key": "***",
        "nested": {"Authorization": "***"},
        "note": "sent *** and ***",
        "list": ["***"],
        "safe": "hello",
    }


def test_json_formatter_carries_call_fields_and_masks():
    logs.call_fields.set({})
    logs.bind(trace_id="t" * 32, domain_id="d1", caller="USER:alice", method="/x.Y/z")
    record = logging.LogRecord("policyhub.audit", logging.INFO, __file__, 1, "got %s", (API_KEY,), None)
    record.audit = {"after": {"key_hash": "abc", "name": "n"}}
    line = json.loads(logs.JsonFormatter().format(record))
    assert line["trace_id"] == "t" * 32 and line["domain_id"] == "d1" and line["caller"] == "USER:alice"
    assert line["message"] == "got ***" and line["audit"] == {"after": {"key_hash": "***", "name": "n"}}
    assert line["level"] == "INFO" and line["logger"] == "policyhub.audit" and line["ts"].endswith("+00:00")


def test_text_formatter_carries_call_fields_and_masks():
    logs.call_fields.set({})
    logs.bind(trace_id="t" * 32, domain_id="d1", caller="USER:alice", method="/x.Y/z")
    record = logging.LogRecord("policyhub.audit", logging.INFO, __file__, 1, "got %s", (JWT,), None)
    record.audit = {"after": {"key_hash": "abc", "name": "n"}}
    line = logs.TextFormatter().format(record)
    prefix, _, rest = line.partition(" INFO policyhub.audit ")
    assert prefix and rest == (
        f"[trace_id={'t' * 32} domain_id=d1 caller=USER:alice method=/x.Y/z]: got *** "
        'audit={"after": {"key_hash": "***", "name": "n"}}'
    )


def test_text_formatter_outside_a_call_has_no_brackets():
    logs.call_fields.set({})
    record = logging.LogRecord("policyhub", logging.WARNING, __file__, 1, "starting", (), None)
    assert logs.TextFormatter().format(record).endswith(" WARNING policyhub: starting")
