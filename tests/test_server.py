"""`ivr serve`'s application: health, metrics, the timer loop on an injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from ivr.config import load_settings
from ivr.server import METRICS, Runtime, is_loopback, make_app
from ivr.store import EventLog

from .conftest import ROOT, ManualClock

T0 = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)


@pytest.fixture
def runtime(tmp_path):
    settings = load_settings(ROOT / "config.toml", env={})
    log = EventLog.open(tmp_path / "ivr.db", hash_key=b"server-test-key-0123456")
    return Runtime(settings, sink=log, clock=ManualClock(T0), timers=False)


async def test_healthz_reports_version_and_store(aiohttp_client, runtime) -> None:
    client = await aiohttp_client(make_app(runtime))
    resp = await client.get("/healthz")
    body = await resp.json()
    assert resp.status == 200
    assert body["status"] == "ok" and body["store"]["ok"] is True
    assert body["store"]["path"].endswith("ivr.db") and body["version"]


async def test_metrics_show_queues_agents_and_request_latency(aiohttp_client, runtime) -> None:
    client = await aiohttp_client(make_app(runtime))
    runtime.center.agent(T0, "anna", "login")
    await client.get("/healthz")
    text = await (await client.get("/metrics")).text()
    assert 'ivr_callers_waiting{queue="vaxeln"} 0.0' in text
    assert 'ivr_agents{state="available"} 1.0' in text
    assert "ivr_calls_in_progress 0.0" in text
    assert 'ivr_webhook_seconds_count{route="/healthz"} 1.0' in text


async def test_shutdown_flushes_the_log_and_ends_live_calls(aiohttp_client, runtime) -> None:
    client = await aiohttp_client(make_app(runtime))
    runtime.center.start_call(T0, "live-1", "+46701234567", None, "sim")
    assert "live-1" in runtime.center.sessions
    await client.close()  # runs on_cleanup: shutdown, then the log is flushed and closed
    reopened = EventLog.open(runtime.sink.db_path, hash_key=b"server-test-key-0123456")
    row = reopened.call("live-1")
    kinds = [e["kind"] for e in reopened.events("live-1")]
    reopened.close()
    assert row is not None and row["status"] == "ended"
    assert kinds[-1] == "call_ended"


async def test_the_timer_loop_ticks_when_the_queue_deadline_comes(aiohttp_client, tmp_path) -> None:
    settings = load_settings(ROOT / "config.toml", env={})
    log = EventLog.open(tmp_path / "t.db", hash_key=b"server-test-key-0123456")
    clock = ManualClock(T0)
    runtime = Runtime(settings, sink=log, clock=clock, timers=True)
    client = await aiohttp_client(make_app(runtime))
    runtime.center.agent(T0, "anna", "login")
    runtime.center.tick(T0)
    runtime.queues.join(T0, "c1", "vaxeln")  # offered to anna at once; rings 20 s
    assert runtime.queues.agent_state("anna") == "offered"
    clock.value = runtime.center.next_deadline()
    runtime.poke()
    for _ in range(5):  # let the loop run; no real time passes
        await asyncio.sleep(0)
    assert runtime.queues.agent_state("anna") == "paused"  # rang out: paused as "missed"
    await client.close()


async def test_a_failing_tick_does_not_stop_the_timers(aiohttp_client, tmp_path, caplog) -> None:
    settings = load_settings(ROOT / "config.toml", env={})
    log = EventLog.open(tmp_path / "t.db", hash_key=b"server-test-key-0123456")
    clock = ManualClock(T0)
    runtime = Runtime(settings, sink=log, clock=clock, timers=True)
    client = await aiohttp_client(make_app(runtime))
    ticks: list[object] = []
    real_tick = runtime.center.tick

    def tick(now):
        ticks.append(now)
        if len(ticks) == 1:
            raise RuntimeError("a broken timer")
        real_tick(now)

    runtime.center.tick = tick
    runtime.tick_retry_s = 0.0  # no real time in tests: the retry comes on the next pass
    runtime.center.agent(T0, "anna", "login")
    real_tick(T0)
    runtime.queues.join(T0, "c1", "vaxeln")  # offered to anna at once; rings 20 s
    clock.value = runtime.center.next_deadline()
    runtime.poke()
    for _ in range(5):
        await asyncio.sleep(0)
    assert len(ticks) == 2 and "tick failed" in caplog.text  # logged, and tried again
    assert runtime.queues.agent_state("anna") == "paused"  # the ring-out was handled
    await client.close()


def test_loopback_detection() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")


async def test_the_webhook_latency_histogram_is_cumulative_per_route(aiohttp_client, runtime) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    client = await aiohttp_client(make_app(runtime))
    metrics = client.app[METRICS]
    for seconds in (0.0005, 0.001, 0.003, 0.2, 7.0):  # 0.001 is in the 1 ms bucket (le="0.001")
        metrics.observe("/twilio/voice", seconds)
    metrics.observe("/twilio/status", 0.02)
    text = await (await client.get("/metrics")).text()
    samples = {(s.name, s.labels.get("route"), s.labels.get("le")): s.value
               for family in text_string_to_metric_families(text) for s in family.samples
               if s.name.startswith("ivr_webhook_seconds")}
    voice = {le: samples[("ivr_webhook_seconds_bucket", "/twilio/voice", le)]
             for le in ("0.001", "0.0025", "0.005", "0.25", "1.0", "+Inf")}
    assert voice == {"0.001": 2, "0.0025": 2, "0.005": 3, "0.25": 4, "1.0": 4, "+Inf": 5}
    assert samples[("ivr_webhook_seconds_count", "/twilio/voice", None)] == 5
    assert abs(samples[("ivr_webhook_seconds_sum", "/twilio/voice", None)] - 7.2045) < 1e-9
    assert samples[("ivr_webhook_seconds_bucket", "/twilio/status", "0.025")] == 1
    assert samples[("ivr_webhook_seconds_bucket", "/twilio/status", "0.01")] == 0
