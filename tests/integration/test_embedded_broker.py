"""The embedded default's file-system broker under several processes, as a project's
processes share it (real processes, real files; no broker server)."""

from __future__ import annotations

from typing import Any

from trigger_celery.default_broker import EmbeddedTransport


def _produce(options: dict, tag: str, count: int) -> None:
    from kombu import Connection

    with (
        Connection("filesystem://", transport=EmbeddedTransport, transport_options=options) as conn,
        conn.SimpleQueue("q") as queue,
    ):
        for i in range(count):
            queue.put({"m": f"{tag}-{i}", "pad": "x" * 20_000})


def _consume(options: dict, expected: int, out: Any) -> None:
    import time
    from queue import Empty

    from kombu import Connection

    got, torn = [], 0
    deadline = time.monotonic() + 90  # a bound for a broken channel, not a measure
    with (
        Connection("filesystem://", transport=EmbeddedTransport, transport_options=options) as conn,
        conn.SimpleQueue("q") as queue,
    ):
        while time.monotonic() < deadline and not out.done.is_set():
            try:
                message = queue.get(timeout=0.05)
            except Empty:
                continue
            except Exception:  # a torn message
                torn += 1
                continue
            got.append(message.payload["m"])
            message.ack()
            with out.lock:
                out.count.value += 1
                if out.count.value >= expected:
                    out.done.set()
    out.results.put((got, torn))


def test_messages_from_several_processes_reach_several_consumers_whole_and_once(tmp_path):
    """Two producer and two consumer processes on one folder, as the processes of a
    project share it: every message is read whole (kombu's own channel let a consumer
    read a file before it was written: JSONDecodeError ended the worker) and once."""
    import multiprocessing
    from types import SimpleNamespace

    context = multiprocessing.get_context("fork")
    options = {
        "data_folder_in": str(tmp_path),
        "data_folder_out": str(tmp_path),
        "control_folder": str(tmp_path / "control"),
    }
    count = 1500
    out = SimpleNamespace(
        lock=context.Lock(), count=context.Value("i", 0), done=context.Event(),
        results=context.Queue(),
    )  # fmt: skip
    producers = [context.Process(target=_produce, args=(options, t, count)) for t in "ab"]
    consumers = [context.Process(target=_consume, args=(options, 2 * count, out)) for _ in "12"]
    for process in producers + consumers:
        process.start()
    results = [out.results.get(timeout=120) for _ in consumers]
    for process in producers + consumers:
        process.join(30)
    got = [m for messages, _ in results for m in messages]
    assert sum(torn for _, torn in results) == 0
    assert sorted(got) == sorted(f"{t}-{i}" for t in "ab" for i in range(count))
    messages = [p for p in tmp_path.rglob("*") if p.is_file() and "control" not in p.parts]
    assert messages == []  # nothing left behind
