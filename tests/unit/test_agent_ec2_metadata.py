"""How the agent calls IMDS: AWS_METADATA_SERVICE_NUM_ATTEMPTS attempts at once when IMDS is out of reach, and
an HTTP answer (404: not published, 401: token refused) taken as the answer, not retried (no I/O: ``_open`` is
replaced)."""

from __future__ import annotations

import email.message
import urllib.error
import urllib.request

import pytest

from agent import ec2_metadata


def _script(monkeypatch: pytest.MonkeyPatch, answers: list[bytes | OSError]) -> list[str]:
    calls: list[str] = []

    def open_(self: ec2_metadata._Imds, request: urllib.request.Request) -> bytes:
        calls.append(request.full_url)
        answer = answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    monkeypatch.setattr(ec2_metadata._Imds, "_open", open_)
    return calls


def test_an_unreachable_imds_is_tried_as_often_as_the_sdk_setting_says(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", "3")
    calls = _script(monkeypatch, [urllib.error.URLError("timed out"), TimeoutError(), b"token",
                                  *[urllib.error.URLError("refused")] * 3])
    imds = ec2_metadata._Imds("http://imds.test")
    assert imds.token == "token" and len(calls) == 3
    with pytest.raises(urllib.error.URLError, match="refused"):
        imds.get("/latest/dynamic/instance-identity/document")
    assert len(calls) == 6


def test_one_attempt_by_default_and_an_http_answer_is_never_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_METADATA_SERVICE_NUM_ATTEMPTS", raising=False)
    not_found = urllib.error.HTTPError("http://imds.test/x", 404, "Not Found", email.message.Message(), None)
    calls = _script(monkeypatch, [b"token", urllib.error.URLError("timed out"), b"never asked"])
    imds = ec2_metadata._Imds("http://imds.test")
    assert imds.attempts == 1
    with pytest.raises(urllib.error.URLError):
        imds.get("/latest/meta-data/tags/instance")
    assert len(calls) == 2
    imds.attempts = 3
    calls = _script(monkeypatch, [not_found, b"never asked"])
    with pytest.raises(urllib.error.HTTPError):
        imds.get("/latest/meta-data/tags/instance")
    assert len(calls) == 1
