"""``trigger_dev``'s address handling: as ``runserver`` takes it, refused early when busy."""

from __future__ import annotations

import re
import socket

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from trigger_celery.devserver import parse_addrport


def test_addresses_are_read_as_runserver_reads_them():
    assert parse_addrport("8001") == ("127.0.0.1", 8001, False)
    assert parse_addrport("0.0.0.0:8001") == ("0.0.0.0", 8001, False)
    assert parse_addrport("[::1]:8001") == ("::1", 8001, True)
    with pytest.raises(ValueError, match="'localhost:http'"):
        parse_addrport("localhost:http")


def test_a_busy_port_stops_the_command_before_anything_starts():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"cannot serve the dashboard on 127.0.0.1:{port}"):
            call_command("trigger_dev", f"127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"concurrency": -3}, "--concurrency -3: use a whole number of 1 or more"),
        ({"concurrency": 0}, "--concurrency 0: use a whole number of 1 or more"),
        ({"loglevel": "bogus"}, "--loglevel 'bogus': use one of DEBUG, INFO"),
    ],
)
def test_a_bad_option_stops_the_command_naming_it_before_anything_starts(options, said):
    # They were a traceback (max_workers, KeyError 'BOGUS') with the dashboard already up.
    with pytest.raises(CommandError, match=re.escape(said)):
        call_command("trigger_dev", "127.0.0.1:1", **options)
