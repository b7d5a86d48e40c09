"""The ``[transfers]`` section of config.toml: read, checked, and turned into the machine's policy."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.config import ConfigError, load_settings
from ivr.transfers import TransferError, TransferPolicy

ROOT = Path(__file__).resolve().parent.parent


def load(tmp_path: Path, text: str):
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return load_settings(path, env={})


def test_the_shipped_config_gives_the_documented_policy():
    policy = load_settings(ROOT / "config.toml", env={}).transfers.policy()
    assert policy == TransferPolicy()  # the file states the defaults
    assert load_settings(None, env={}).transfers.policy() == TransferPolicy()


def test_a_transfers_section_sets_the_policy(tmp_path):
    s = load(tmp_path, """
        [transfers]
        ring_timeout_s = 40
        no_answer = "message"
        allowed_prefixes = ["+46", "+47"]
        blocked_prefixes = ["+46900"]
        misroute_window_s = 90.5
    """)
    policy = s.transfers.policy()
    assert (policy.ring_timeout_s, policy.no_answer, policy.misroute_window_s) == (40.0, "message", 90.5)
    assert policy.check_number("+4722334455") == "+4722334455"  # Norway allowed now
    with pytest.raises(TransferError, match="outside the allowed prefixes"):
        policy.check_number("+4580808080")
    assert policy.check_number("+46939123456") == "+46939123456"  # no longer blocked


def test_bad_transfer_settings_are_named_each_with_where(tmp_path):
    with pytest.raises(ConfigError) as e:
        load(tmp_path, """
            [transfers]
            ring_timeout_s = 2
            no_answer = "voicemail"
            allowed_prefixes = ["46", "+"]
            blocked_prefixes = "+46900"
            misroute = 60
        """)
    assert e.value.problems == [
        "config.toml: transfers.misroute: unknown key (did you mean \"misroute_window_s\"?)",
        "config.toml: transfers.ring_timeout_s: expected a number from 5 to 600, got 2",
        'config.toml: transfers.no_answer: expected "agent" or "message", got "voicemail"',
        'config.toml: transfers.blocked_prefixes: expected an array of non-empty strings, got "+46900"',
        'config.toml: transfers.allowed_prefixes[0]: expected a number prefix such as "+46", got "46"',
    ]


def test_the_server_runs_transfers_with_the_configured_policy(tmp_path):
    from ivr.server import Runtime

    settings = load_settings(ROOT / "config.toml", env={}, overrides={"transfers.ring_timeout_s": 40})
    runtime = Runtime(settings, sink=None, timers=False)
    assert runtime.center.transfers.policy.ring_timeout_s == 40
