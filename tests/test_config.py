"""Settings: the default config.toml, layering, and one exact message per problem kind."""

from __future__ import annotations

import textwrap
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from ivr.config import (
    ConfigError,
    QueueSettings,
    Settings,
    default_config_path,
    load_settings,
)
from ivr.hours import STOCKHOLM
from queues import AgentConfig, QueueConfig, QueueEngine

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, **kwargs: object) -> Settings:
    kwargs.setdefault("env", {})
    return load_settings(write(tmp_path, text), **kwargs)  # type: ignore[arg-type]


def problems(tmp_path: Path, text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load(tmp_path, text, **kwargs)
    assert str(e.value) == "\n".join(e.value.problems)
    return e.value.problems


# --------------------------------------------------------------------------- the default file


def test_default_config_loads_with_six_queues() -> None:
    s = load_settings(REPO / "config.toml", env={})
    assert s.source == "config.toml"
    assert list(s.queues) == ["barn-utbildning", "bygga-bo-miljo", "vatten-avfall", "omsorg",
                              "felanmalan", "vaxeln"]
    assert s.queues["bygga-bo-miljo"].display == {"sv": "Bygga, bo och miljö",
                                                  "en": "Building, housing and environment"}
    assert "skolskjuts" in s.queues["barn-utbildning"].categories
    assert all("ovrigt" in q.categories for q in s.queues.values())
    assert s.store.path == REPO / "data" / "ivr.db"
    assert s.flows_dir == REPO / "callflows" and s.recordings_dir == REPO / "recordings"
    assert s.privacy.hash_key is None and s.privacy.raw_number_days == 30
    assert not s.asterisk.enabled and s.twilio.auth_token is None
    slot = s.announcements["driftstorning"]
    assert not slot.enabled and slot.until is None and set(slot.text) == {"sv", "en"}


def test_default_config_hours() -> None:
    s = load_settings(REPO / "config.toml", env={})
    office, vaxel = s.hours["office"], s.hours["vaxel"]
    assert office.status(datetime(2026, 3, 10, 16, 29)) == "open"  # Tuesday
    assert office.status(datetime(2026, 3, 13, 15, 30)) == "closed"  # Friday
    assert vaxel.status(datetime(2026, 3, 13, 15, 30)) == "open"
    for day in (date(2026, 6, 19), date(2026, 12, 24), date(2026, 12, 31), date(2026, 6, 6)):
        assert office.status(datetime.combine(day, datetime.min.time())) == "holiday"
        assert vaxel.status(datetime.combine(day, datetime.min.time())) == "holiday"
    assert office.status(datetime(2026, 4, 30, 14, 30)) == "closed"  # valborgsmässoafton
    assert office.status(datetime(2026, 4, 30, 13, 30)) == "open"


def test_defaults_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, env={})
    assert s.source == "<defaults>" and s.base_dir == tmp_path
    assert s.store.path == tmp_path / "data" / "ivr.db"
    assert not s.hours and not s.queues and not s.announcements
    assert (s.server.host, s.server.port, s.asterisk.port) == ("127.0.0.1", 8080, 5038)
    assert s.twilio.voice_sv == "Polly.Astrid"


def test_default_config_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert default_config_path() is None
    write(tmp_path, "")
    assert default_config_path() == tmp_path / "config.toml"


# --------------------------------------------------------------------------- layering


def test_relative_paths_resolve_against_the_config_directory(tmp_path: Path) -> None:
    path = write(tmp_path, """
        [store]
        path = "db/calls.db"
        [paths]
        flows = "/srv/flows"
        recordings = "../audio"
    """, name="etc/config.toml")
    s = load_settings(path, env={})
    assert s.base_dir == tmp_path / "etc"
    assert s.store.path == tmp_path / "etc" / "db" / "calls.db"
    assert s.flows_dir == Path("/srv/flows")
    assert s.recordings_dir == tmp_path / "etc" / ".." / "audio"


def test_hash_key_from_injected_env(tmp_path: Path) -> None:
    s = load(tmp_path, "", env={"IVR_HASH_KEY": "hemlig-nyckel-å"})
    assert s.privacy.hash_key == "hemlig-nyckel-å".encode()


def test_hash_key_env_name_is_configurable(tmp_path: Path) -> None:
    text = '[privacy]\nhash_key_env = "BOLLEBYGD_KEY"\n'
    s = load(tmp_path, text, env={"IVR_HASH_KEY": "wrong", "BOLLEBYGD_KEY": "right"})
    assert s.privacy.hash_key == b"right"
    assert load(tmp_path, text, env={"BOLLEBYGD_KEY": ""}).privacy.hash_key is None


def test_env_is_injected_not_read_from_os_environ(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IVR_HASH_KEY", "from-process")
    assert load(tmp_path, "", env={}).privacy.hash_key is None


def test_transport_secrets_from_env(tmp_path: Path) -> None:
    env = {"TWILIO_ACCOUNT_SID": "AC123", "TWILIO_AUTH_TOKEN": "tok", "PBX_PW": "pw"}
    s = load(tmp_path, '[asterisk]\nsecret_env = "PBX_PW"\n', env=env)
    assert (s.twilio.account_sid, s.twilio.auth_token, s.asterisk.secret) == ("AC123", "tok", "pw")
    assert "tok" not in repr(s) and "pw" not in repr(s.asterisk)


def test_secrets_in_the_file_are_rejected(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        [privacy]
        hash_key_env = "KEY"
        hash_key = "abc"
        [twilio]
        auth_token = "secret"
        [asterisk]
        secret = "pw"
    """) == [
        "config.toml: privacy.hash_key: secrets belong in the environment (KEY)",
        "config.toml: twilio.auth_token: secrets belong in the environment (TWILIO_AUTH_TOKEN)",
        "config.toml: asterisk.secret: secrets belong in the environment (IVR_AMI_SECRET)",
    ]


def test_overrides_win_over_the_file(tmp_path: Path) -> None:
    text = '[store]\npath = "file.db"\n[server]\nport = 8081\n'
    s = load(tmp_path, text, overrides={"store.path": "flag.db", "server.port": 9090,
                                        "asterisk.enabled": True})
    assert s.store.path == tmp_path / "flag.db"
    assert s.server.port == 9090 and s.asterisk.enabled


def test_overrides_accept_command_line_strings(tmp_path: Path) -> None:
    s = load(tmp_path, "", overrides={"server.port": "9090", "asterisk.enabled": "true",
                                      "asterisk.username": "1234"})
    assert (s.server.port, s.asterisk.enabled, s.asterisk.username) == (9090, True, "1234")


def test_override_problems_name_the_overrides(tmp_path: Path) -> None:
    assert problems(tmp_path, "", overrides={"store.pat": "x.db", "server.port": "80x",
                                             "twilio.auth_token": "t"}) == [
        '<overrides>: store.pat: unknown key (did you mean "path"?)',
        '<overrides>: server.port: expected an integer from 1 to 65535, got "80x"',
        "<overrides>: twilio.auth_token: secrets belong in the environment (TWILIO_AUTH_TOKEN)",
    ]


# --------------------------------------------------------------------------- problems


def test_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    assert problems(tmp_path, '[store]\npath = "x.db"\n[hours\n') == [
        "config.toml: line 3, column 7: Expected ']' at the end of a table declaration",
    ]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^nope.toml: cannot read the file \("):
        load_settings(tmp_path / "nope.toml", env={})


def test_unknown_keys_and_sections_with_suggestions(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        [stor]
        [store]
        pat = "x.db"
        [hours.office]
        mondya = "08:00-16:00"
        [queues.vaxeln]
        display = { sv = "Växeln" }
        categorys = []
        zzz = 1
    """) == [
        'config.toml: stor: unknown section (did you mean "store"?)',
        'config.toml: store.pat: unknown key (did you mean "path"?)',
        'config.toml: hours.office.mondya: unknown key (did you mean "monday"?)',
        'config.toml: queues.vaxeln.categorys: unknown key (did you mean "categories"?)',
        "config.toml: queues.vaxeln.zzz: unknown key",
    ]


def test_type_errors(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        [privacy]
        raw_number_days = -1
        recording_days = "90"
        note_days = 1.5
        [server]
        host = 8080
        port = 70000
        [asterisk]
        enabled = "yes"
        [twilio]
        public_url = "ivr.bollebygd.se"
        [store]
        path = ""
    """) == [
        "config.toml: store.path: expected a non-empty path, got \"\"",
        "config.toml: privacy.raw_number_days: expected a non-negative integer, got -1",
        'config.toml: privacy.recording_days: expected a non-negative integer, got "90"',
        "config.toml: privacy.note_days: expected a non-negative integer, got 1.5",
        "config.toml: server.host: expected a non-empty string, got 8080",
        "config.toml: server.port: expected an integer from 1 to 65535, got 70000",
        'config.toml: twilio.public_url: expected a URL starting with "https://", '
        'got "ivr.bollebygd.se"',
        'config.toml: asterisk.enabled: expected true or false, got "yes"',
    ]


def test_section_must_be_a_table(tmp_path: Path) -> None:
    assert problems(tmp_path, 'store = "x.db"\nhours = 1\n') == [
        'config.toml: store: expected a table, got "x.db"',
        "config.toml: hours: expected a table, got 1",
    ]


def test_hours_problems_collected_together(tmp_path: Path) -> None:
    got = problems(tmp_path, """
        [hours.office]
        timezone = "Europe/Stokholm"
        monday = "8-16"
        tuesday = 8
        wednesday = "16:00-08:00"
        thursday = "08:00-12:00, 11:00-16:00"
        closed_dates = [2026-12-28, "2026-12-29", "2026-12-32", 2026-12-30T10:00:00]
        reduced = { 2026-13-01 = "08:00-13:00" }
        public_holidays = "ja"
        closed_eves = ["midsommarafton", "påskafton"]
        reduced_before_holidays = "08:00-14"
    """)
    assert got == [
        'config.toml: hours.office.timezone: expected an IANA time zone such as '
        '"Europe/Stockholm", got "Europe/Stokholm" (did you mean "Europe/Stockholm"?)',
        'config.toml: hours.office.monday: expected "HH:MM-HH:MM", got "8-16"',
        'config.toml: hours.office.tuesday: expected "HH:MM-HH:MM", got 8',
        'config.toml: hours.office.wednesday: expected "HH:MM-HH:MM" with the start before '
        'the end, got "16:00-08:00"',
        'config.toml: hours.office.thursday: expected intervals that do not overlap, '
        'got "08:00-12:00, 11:00-16:00"',
        'config.toml: hours.office.closed_dates[2]: expected a date (YYYY-MM-DD), '
        'got "2026-12-32"',
        "config.toml: hours.office.closed_dates[3]: expected a date (YYYY-MM-DD), "
        "got 2026-12-30T10:00:00",
        'config.toml: hours.office.reduced.2026-13-01: expected a date (YYYY-MM-DD), '
        'got "2026-13-01"',
        'config.toml: hours.office.public_holidays: expected true or false, got "ja"',
        'config.toml: hours.office.closed_eves: unknown eve "påskafton"; expected one of '
        '"allahelgonsafton", "julafton", "midsommarafton", "nyårsafton", '
        '"trettondagsafton", "valborgsmässoafton"',
        'config.toml: hours.office.reduced_before_holidays: expected "HH:MM-HH:MM", '
        'got "08:00-14"',
    ]


def test_hours_table_parsed(tmp_path: Path) -> None:
    s = load(tmp_path, """
        [hours.office]
        monday = "08:00-12:00, 13:00-16:30"
        saturday = "closed"
        closed_dates = [2026-12-28, "2026-12-29"]
        reduced = { 2026-03-10 = "10:00-12:00" }
        public_holidays = false
        closed_eves = ["Julafton"]
    """)
    office = s.hours["office"]
    assert office.timezone is STOCKHOLM
    assert office.closed_dates == {date(2026, 12, 28), date(2026, 12, 29)}
    assert office.status(datetime(2026, 3, 9, 12, 30)) == "closed"  # Monday lunch
    assert office.status(datetime(2026, 3, 9, 13, 0)) == "open"
    assert office.status(datetime(2026, 3, 10, 11, 0)) == "open"  # reduced Tuesday
    assert office.status(datetime(2026, 3, 17, 11, 0)) == "closed"  # ordinary Tuesday
    assert office.status(datetime(2027, 3, 29, 9, 0)) == "open"  # annandag påsk, no holidays
    assert office.status(datetime(2027, 12, 24, 9, 0)) == "holiday"
    assert office.status(datetime(2026, 12, 28, 9, 0)) == "holiday"


def test_reduced_date_that_is_closed_anyway(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        [hours.office]
        monday = "08:00-16:00"
        closed_dates = [2026-03-09]
        reduced = { 2026-06-06 = "10:00-12:00", 2026-03-09 = "10:00-12:00" }
    """) == [
        "config.toml: hours.office.reduced.2026-06-06: 2026-06-06 is closed all day "
        "(Nationaldagen), so these hours would never apply",
        "config.toml: hours.office.reduced.2026-03-09: 2026-03-09 is closed all day "
        "(Stängt), so these hours would never apply",
    ]


def test_queue_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        [queues.omsorg]
        categories = ["aldreomsorg", "ovrigt", "aldreomsorg"]
        [queues.vaxeln]
        display = "Växeln"
        categories = "ovrigt"
        [queues.skola]
        display = { sv = "" }
    """) == [
        'config.toml: queues.omsorg.display: missing; expected a table of language = name, '
        'e.g. { sv = "Växeln", en = "Switchboard" }',
        'config.toml: queues.omsorg.categories[2]: expected distinct categories, '
        'got "aldreomsorg" twice',
        'config.toml: queues.vaxeln.display: expected a table of language = name, '
        'e.g. { sv = "...", en = "..." }, got "Växeln"',
        'config.toml: queues.vaxeln.categories: expected an array of non-empty strings, '
        'got "ovrigt"',
        'config.toml: queues.skola.display.sv: expected a non-empty string, got ""',
    ]


def test_announcement_until(tmp_path: Path) -> None:
    s = load(tmp_path, """
        [announcements.local]
        enabled = true
        until = 2026-03-01T18:00:00
        text = { sv = "Vattenavstängning" }
        [announcements.offset]
        until = 2026-03-01T18:00:00Z
        audio = { sv = "driftstorning/sv.wav" }
    """)
    local, offset = s.announcements["local"], s.announcements["offset"]
    assert local.enabled and local.text == {"sv": "Vattenavstängning"}
    assert local.until == datetime(2026, 3, 1, 17, 0, tzinfo=UTC)  # 18:00 CET
    assert offset.until == datetime(2026, 3, 1, 18, 0, tzinfo=UTC)
    assert offset.until is not None and offset.until.tzinfo is STOCKHOLM
    assert not offset.enabled and offset.audio == {"sv": "driftstorning/sv.wav"}


def test_announcement_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        [announcements.driftstorning]
        enabled = 1
        until = 2026-03-01
        text = { sv = 5 }
    """) == [
        "config.toml: announcements.driftstorning.text.sv: expected a non-empty string, got 5",
        "config.toml: announcements.driftstorning.enabled: expected true or false, got 1",
        "config.toml: announcements.driftstorning.until: expected a date-time such as "
        "2026-03-01T18:00:00, got 2026-03-01",
    ]


def test_settings_are_frozen(tmp_path: Path) -> None:
    s = load(tmp_path, '[queues.vaxeln]\ndisplay = { sv = "Växeln" }\n')
    with pytest.raises(AttributeError):
        s.server = s.server  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.queues["ny"] = s.queues["vaxeln"]  # type: ignore[index]
    with pytest.raises(TypeError):
        s.queues["vaxeln"].display["en"] = "Switchboard"  # type: ignore[index]


# --------------------------------------------------------------------------- queue engine keys


def test_default_config_staffs_every_queue() -> None:
    s = load_settings(REPO / "config.toml", env={})
    assert len(s.agents) == 6
    for name, queue in s.queues.items():
        serving = [a for a in s.agents.values() if queue.needs in a.skills]
        assert len(serving) >= 2, name
        assert queue.announce_every_s == 60.0
    assert all("vaxeln" in a.skills for a in s.agents.values())
    assert sum(len(a.skills) >= 3 for a in s.agents.values()) >= 5
    assert s.queues["vaxeln"].strategy == "skills"
    assert {q.strategy for n, q in s.queues.items() if n != "vaxeln"} == {"longest-idle"}
    assert s.queues["barn-utbildning"].overflow == "message"
    assert s.queues["barn-utbildning"].max_wait_s == 600.0
    assert s.agents["anna"].endpoints == {"twilio": "client:anna", "asterisk": "PJSIP/1001"}
    assert (s.kpi.service_level_s, s.kpi.service_level_goal, s.kpi.short_abandon_s,
            s.kpi.abandons_in_service_level) == (60, 0.8, 5, True)
    assert s.privacy.repeat_window_days == 7


def test_queue_engine_defaults_match_the_engine() -> None:
    settings, engine = QueueSettings("q"), QueueConfig("q")
    shared = [f for f in QueueConfig.__dataclass_fields__ if hasattr(settings, f)]
    assert len(shared) == len(QueueConfig.__dataclass_fields__)
    assert all(getattr(settings, f) == getattr(engine, f) for f in shared)


def test_queue_engine_keys_parsed(tmp_path: Path) -> None:
    s = load(tmp_path, """
        [queues.vaxeln]
        display = { sv = "Växeln" }
        strategy = "skills"
        skill = "switch"
        fallback_after_s = 30
        ring_timeout_s = 15.5
        wrapup_s = 0
        max_wait_s = 300
        max_length = 10
        overflow = "queue:omsorg"
        when_no_agents = "reject"
        leave_when_empty = true
        announce_every_s = 0
        expected_handle_s = 180
        callback_retry_s = 600
        callback_max_attempts = 2
        pause_on_missed = false
        [queues.omsorg]
        display = { sv = "Omsorg" }
        [agents.anna]
        skills = { switch = 10, omsorg = 1 }
    """)
    q = s.queues["vaxeln"]
    assert (q.strategy, q.skill, q.needs, q.fallback_after_s, q.ring_timeout_s, q.wrapup_s) == (
        "skills", "switch", "switch", 30.0, 15.5, 0.0)
    assert (q.max_wait_s, q.max_length, q.overflow, q.when_no_agents, q.leave_when_empty) == (
        300.0, 10, "queue:omsorg", "reject", True)
    assert (q.announce_every_s, q.expected_handle_s, q.callback_retry_s,
            q.callback_max_attempts, q.pause_on_missed) == (0.0, 180.0, 600.0, 2, False)
    assert s.queues["omsorg"].needs == "omsorg" and s.queues["omsorg"].max_wait_s is None
    anna = s.agents["anna"]
    assert (anna.id, anna.name, dict(anna.skills), dict(anna.endpoints)) == (
        "anna", "anna", {"switch": 10, "omsorg": 1}, {})


def test_queue_engine_key_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        [queues.vaxeln]
        display = { sv = "Växeln" }
        strategy = "longest_idle"
        when_no_agents = "wait"
        ring_timeout_s = 0
        wrapup_s = -5
        max_wait_s = "5 min"
        max_length = 0
        callback_max_attempts = 1.5
        leave_when_empty = "yes"
        skill = ""
        overflow = "queue:omsorgen"
        [queues.omsorg]
        display = { sv = "Omsorg" }
        overflow = "queue:omsorg"
        announce_every_s = inf
    """) == [
        'config.toml: queues.vaxeln.strategy: expected one of "longest-idle", "round-robin", '
        '"skills", got "longest_idle" (did you mean "longest-idle"?)',
        'config.toml: queues.vaxeln.skill: expected a non-empty string, got ""',
        'config.toml: queues.vaxeln.when_no_agents: expected "join" or "reject", got "wait"',
        "config.toml: queues.vaxeln.max_length: expected a positive integer, got 0",
        "config.toml: queues.vaxeln.callback_max_attempts: expected a positive integer, got 1.5",
        'config.toml: queues.vaxeln.leave_when_empty: expected true or false, got "yes"',
        "config.toml: queues.vaxeln.ring_timeout_s: expected a positive number of seconds, got 0",
        'config.toml: queues.vaxeln.max_wait_s: expected a positive number of seconds, '
        'got "5 min"',
        "config.toml: queues.vaxeln.wrapup_s: expected a non-negative number of seconds, got -5",
        "config.toml: queues.omsorg.announce_every_s: expected a non-negative number of "
        "seconds, got inf",
        'config.toml: queues.vaxeln.overflow: expected "queue:NAME" naming another queue, '
        'got "queue:omsorgen" (did you mean "omsorg"?)',
        'config.toml: queues.omsorg.overflow: expected "queue:NAME" naming another queue, '
        'got "queue:omsorg"',
    ]


def test_agent_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        [queues.vaxeln]
        display = { sv = "Växeln" }
        [queues.barn-utbildning]
        display = { sv = "Barn och utbildning" }
        [agents.anna]
        name = "Anna Lindqvist"
        skills = { vaxel = 5, barn-utbildning = 11, vaxeln = "hög" }
        endpoints = { twillio = "client:anna", asterisk = "" }
        phone = "1001"
        [agents.bo]
        name = ""
    """) == [
        'config.toml: agents.anna.phone: unknown key',
        'config.toml: agents.anna.skills.vaxel: unknown skill: no queue needs it '
        '(did you mean "vaxeln"?)',
        "config.toml: agents.anna.skills.barn-utbildning: expected an integer from 1 to 10, "
        "got 11",
        'config.toml: agents.anna.skills.vaxeln: expected an integer from 1 to 10, got "hög"',
        'config.toml: agents.anna.endpoints.twillio: unknown key (did you mean "twilio"?)',
        'config.toml: agents.anna.endpoints.asterisk: expected an address such as '
        '"client:anna" or "PJSIP/1001", got ""',
        'config.toml: agents.bo.name: expected a non-empty string, got ""',
        'config.toml: agents.bo.skills: missing; expected a table of skill = level (1 to 10), '
        'e.g. { vaxeln = 5 }',
    ]


def test_kpi_section(tmp_path: Path) -> None:
    s = load(tmp_path, "[kpi]\nservice_level_s = 30\nservice_level_goal = 1\n")
    assert (s.kpi.service_level_s, s.kpi.service_level_goal, s.kpi.short_abandon_s) == (30, 1.0, 5)
    assert problems(tmp_path, """
        [kpi]
        service_level_s = 0
        service_level_goal = 80
        short_abandon_s = -1
        abandons_in_service_level = 1
        repeat_window_days = 7
    """) == [
        'config.toml: kpi.repeat_window_days: unknown key',
        "config.toml: kpi.service_level_s: expected a positive integer, got 0",
        "config.toml: kpi.service_level_goal: expected a number from 0 to 1, got 80",
        "config.toml: kpi.short_abandon_s: expected a non-negative integer, got -1",
        "config.toml: kpi.abandons_in_service_level: expected true or false, got 1",
    ]


def test_queue_settings_feed_the_queue_engine() -> None:
    s = load_settings(REPO / "config.toml", env={})
    queues = {n: QueueConfig.from_settings(q) for n, q in s.queues.items()}
    agents = {a: AgentConfig.from_settings(x) for a, x in s.agents.items()}
    assert queues["vaxeln"].categories == ("personsokning", "ovrigt")
    assert queues["felanmalan"].overflow_queue == "vaxeln"
    assert agents["maria"].skills["vaxeln"] == 9
    engine = QueueEngine(queues, agents)
    assert {engine.agent_state(a) for a in agents} == {"offline"}


def test_smtp_and_messages_sections(tmp_path: Path) -> None:
    default = load_settings(REPO / "config.toml", env={})
    assert not default.smtp.enabled and default.smtp.port == 587 and default.smtp.starttls
    assert default.messages.promise_hours == 24 and "ovrigt" in default.messages.categories
    s = load(tmp_path, """
        [smtp]
        host = "smtp.bollebygd.se"
        username = "kontaktcenter"
        from = "Kontaktcenter <kontaktcenter@bollebygd.se>"
        retry_min_s = 30
        [messages]
        categories = ["bygglov", "skola"]
        voicemail_target = "vaxeln"
        audio_url_base = "https://ivr.bollebygd.se"
    """, env={"IVR_SMTP_PASSWORD": "hemligt"})
    assert (s.smtp.host, s.smtp.from_address, s.smtp.retry_min_s, s.smtp.retry_max_s) == (
        "smtp.bollebygd.se", "Kontaktcenter <kontaktcenter@bollebygd.se>", 30.0, 3600.0)
    assert s.smtp.enabled and s.smtp.password == "hemligt" and "hemligt" not in repr(s)
    assert (s.messages.categories, s.messages.voicemail_target) == (("bygglov", "skola"), "vaxeln")


def test_smtp_and_messages_problems(tmp_path: Path) -> None:
    assert problems(tmp_path, """
        [smtp]
        host = "smtp.bollebygd.se"
        port = 0
        from = "kontaktcenter"
        password = "hemligt"
        retry_min_s = 600
        retry_max_s = 60
        [messages]
        categories = ["bygglov", "bygglov"]
        promise_hours = 0
        voice_target = "x"
    """) == [
        "config.toml: smtp.port: expected an integer from 1 to 65535, got 0",
        'config.toml: smtp.from: expected an e-mail address such as "kontaktcenter@bollebygd.se", '
        'got "kontaktcenter"',
        "config.toml: smtp.password: secrets belong in the environment (IVR_SMTP_PASSWORD)",
        'config.toml: messages.voice_target: unknown key (did you mean "voicemail_target"?)',
        "config.toml: messages.promise_hours: expected an integer from 1 to 720, got 0",
        'config.toml: messages.categories[1]: expected distinct values, got "bygglov" twice',
        "config.toml: smtp.retry_max_s: expected at least retry_min_s (600), got 60",
    ]
    assert problems(tmp_path, '[smtp]\nhost = "smtp.bollebygd.se"\n') == [
        'config.toml: smtp.from: missing; the sender of messages, e.g. "kontaktcenter@bollebygd.se"']


def test_the_event_log_writer_is_a_process_or_a_thread(tmp_path) -> None:
    assert load(tmp_path, "").store.writer == "process"  # ivr serve's default
    assert load(tmp_path, '[store]\nwriter = "thread"\n').store.writer == "thread"
    found = problems(tmp_path, '[store]\nwriter = "fork"\n')
    assert any("store.writer" in p and '"process" or "thread"' in p and "fork" in p for p in found)
