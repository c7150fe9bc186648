"""The file-system transport of the embedded default is waited on in short slices."""

from __future__ import annotations

import pytest
from kombu.transport import filesystem

from trigger_celery import default_broker
from trigger_celery.default_broker import DRAIN_SECONDS, EmbeddedTransport


@pytest.mark.parametrize(
    ("asked", "waited"),
    [(2.0, DRAIN_SECONDS), (DRAIN_SECONDS / 2, DRAIN_SECONDS / 2), (None, None)],
)
def test_a_wait_for_a_message_is_cut_short(monkeypatch, asked, waited):
    seen = []
    monkeypatch.setattr(
        filesystem.Transport, "drain_events", lambda self, conn, timeout=None: seen.append(timeout)
    )
    transport = EmbeddedTransport.__new__(EmbeddedTransport)
    transport.drain_events(object(), timeout=asked)
    assert seen == [waited]


class _Conf:
    def __init__(self, url: str | None, transport: str | None = None) -> None:
        self.broker_url = url
        self.broker_transport = transport


class _App:
    def __init__(self, conf: _Conf) -> None:
        self.conf = conf


@pytest.mark.parametrize(
    ("url", "transport", "expected"),
    [
        ("filesystem://", None, "trigger_celery.default_broker:EmbeddedTransport"),
        ("filesystem://", "my.own:Transport", "my.own:Transport"),  # named: left alone
        ("redis://localhost/0", None, None),
        (None, None, None),
    ],
)
def test_only_the_file_system_transport_is_replaced(monkeypatch, url, transport, expected):
    conf = _Conf(url, transport)
    monkeypatch.setattr(default_broker, "current_app", _App(conf))
    default_broker.wait_in_short_slices()
    assert conf.broker_transport == expected
