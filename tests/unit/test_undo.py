import logging

import pytest

from policyhub.service.undo import Undo


def test_nothing_runs_when_the_block_succeeds():
    done = []
    with Undo() as undo:
        undo.push(done.append, "a")
    assert done == []


def test_compensations_run_newest_first_and_the_error_propagates():
    done = []
    with pytest.raises(KeyError):
        with Undo() as undo:
            undo.push(done.append, "first")
            undo.push(done.append, "second")
            raise KeyError("step 3")
    assert done == ["second", "first"]


def test_a_failing_compensation_is_logged_and_the_others_still_run(caplog):
    done = []

    def broken():
        raise RuntimeError("compensation failed")

    with caplog.at_level(logging.ERROR, logger="policyhub.service.undo"), pytest.raises(KeyError):
        with Undo() as undo:
            undo.push(done.append, "first")
            undo.push(broken)
            raise KeyError("step 3")
    assert done == ["first"]
    assert "compensation" in caplog.text and "broken" in caplog.text
