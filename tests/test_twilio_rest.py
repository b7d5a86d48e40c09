"""REST redirects: offers reach a waiting caller, failures are retried and never lose the caller."""

from __future__ import annotations

import logging

import aiohttp
import pytest
from twilio.base.exceptions import TwilioRestException

from ivr.transports.twilio_rest import retryable

from .twilio_driver import ACCOUNT_SID, FakeRest, SyncFakeRest, query, rig


async def waiting_caller(r, queue_key: str = "1"):
    call = r.twilio.call()
    await call.start()
    await call.press(queue_key)
    assert call.state == "enqueue"
    return call


def offer_to_anna(r) -> None:
    r.center.agent(r.clock.advance(20), "anna", "login")
    r.runtime.poke()


async def test_an_offer_redirects_the_waiting_caller_through_the_rest_api(aiohttp_client, tmp_path) -> None:
    r = await rig(aiohttp_client, tmp_path)
    call = await waiting_caller(r)
    offer_to_anna(r)
    await r.settle()
    [req] = r.rest.requests
    assert req["method"] == "POST"
    assert req["url"] == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT_SID}/Calls/{call.sid}.json"
    assert req["data"]["Method"] == "POST" and "/twilio/resume?" in req["data"]["Url"]
    await call.follow_rest()
    assert call.dialled() == ("Client", "anna")


async def test_a_failed_redirect_is_retried_with_backoff_and_logged(aiohttp_client, tmp_path, caplog) -> None:
    r = await rig(aiohttp_client, tmp_path, rest=FakeRest([500, 429]))
    call = await waiting_caller(r)
    with caplog.at_level(logging.WARNING, logger="ivr.transports.twilio_rest"):
        offer_to_anna(r)
        await r.settle()
    assert [q["outcome"] for q in r.rest.requests] == [500, 429, 200]
    assert r.sleeps == [0.5, 1.0]
    assert "HTTP 500" in caplog.text and "retrying" in caplog.text
    assert r.runtime.queues.agent_state("anna") == "offered"  # the caller is still ringing her
    await call.follow_rest()
    assert call.dialled() == ("Client", "anna")


async def test_a_redirect_that_always_fails_leaves_the_caller_queued(aiohttp_client, tmp_path,
                                                                     caplog) -> None:
    r = await rig(aiohttp_client, tmp_path, rest=FakeRest([503] * 20))
    call = await waiting_caller(r)
    with caplog.at_level(logging.WARNING, logger="ivr.transports.twilio_rest"):
        offer_to_anna(r)
        await r.settle()
    retries = r.runtime.settings.twilio.rest_retries
    assert len(r.rest.requests) == retries + 1 and r.sleeps == [0.5, 1.0, 2.0, 4.0][:retries]
    assert "gave up" in caplog.text
    assert call.sid in r.center.sessions and call.state == "enqueue"
    # the next round of waiting collects what the REST API could not deliver
    await call.wait_round()
    assert call.state == "dial" and call.dialled() == ("Client", "anna")


async def test_the_engine_keeps_the_caller_when_the_offer_never_reaches_them(aiohttp_client,
                                                                             tmp_path) -> None:
    r = await rig(aiohttp_client, tmp_path, rest=FakeRest([500] * 100))
    call = await waiting_caller(r)
    offer_to_anna(r)
    await r.settle()
    r.advance(21)  # rang out in the engine: anna paused, the caller waiting again
    await r.settle()
    snap = r.runtime.queues.snapshot(r.clock.now())
    assert snap["queues"]["barn-utbildning"]["waiting"] == 1
    assert r.runtime.queues.position(call.sid) == 1
    await call.wait_round()
    assert call.state == "enqueue"  # nothing to collect: Twilio has them where the engine does


async def test_remaining_attempts_are_skipped_once_the_wait_round_delivered(aiohttp_client, tmp_path) -> None:
    r = await rig(aiohttp_client, tmp_path, rest=FakeRest([500] * 10))
    call = await waiting_caller(r)
    r.on_sleep.append(call.wait_round)  # during the first backoff Twilio asks the waitUrl
    offer_to_anna(r)
    await r.settle()
    assert len(r.rest.requests) == 1
    assert call.state == "dial"


async def test_a_refusal_other_than_busy_is_not_retried(aiohttp_client, tmp_path, caplog) -> None:
    r = await rig(aiohttp_client, tmp_path, rest=FakeRest([404]))
    await waiting_caller(r)
    with caplog.at_level(logging.ERROR, logger="ivr.transports.twilio_rest"):
        offer_to_anna(r)
        await r.settle()
    assert len(r.rest.requests) == 1 and r.sleeps == []
    assert "HTTP 404" in caplog.text


async def test_network_errors_are_retried_and_a_blocking_client_runs_in_a_thread(aiohttp_client,
                                                                                 tmp_path) -> None:
    rest = SyncFakeRest([ConnectionResetError("peer reset"), aiohttp.ServerDisconnectedError()])
    r = await rig(aiohttp_client, tmp_path, rest=rest)
    call = await waiting_caller(r)
    offer_to_anna(r)
    await r.settle()
    assert [type(q["outcome"]) for q in rest.requests] == [ConnectionResetError,
                                                           aiohttp.ServerDisconnectedError, int]
    await call.follow_rest()
    assert call.dialled() == ("Client", "anna")


async def test_a_cancelled_offer_and_a_new_one_make_one_redirect_each(aiohttp_client, tmp_path) -> None:
    r = await rig(aiohttp_client, tmp_path)
    call = await waiting_caller(r)
    offer_to_anna(r)
    await r.settle()
    await call.follow_rest()
    r.center.agent(r.clock.advance(2), "johan", "login")
    r.center.agent(r.clock.advance(2), "anna", "decline")  # from the desk: johan is offered
    await r.settle()
    assert await call.follow_rest() == 1
    assert call.dialled() == ("Client", "johan")
    assert query(call.verb.attrib["action"])["agent"] == "johan"


@pytest.mark.parametrize(("exc", "again"), [
    (TwilioRestException(500, "u"), True), (TwilioRestException(429, "u"), True),
    (TwilioRestException(404, "u"), False), (TwilioRestException(400, "u"), False),
    (TimeoutError(), True), (OSError("unreachable"), True), (aiohttp.ClientPayloadError(), True),
    (ValueError("bug"), False),
])
def test_what_is_worth_retrying(exc: BaseException, again: bool) -> None:
    assert retryable(exc) is again
