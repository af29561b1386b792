"""`infra backup restore` without the engine: the plan (the backup set pgBackRest picks for a target, the WAL
range, the size to fetch, the services stopped and in which order), bad input as one line and exit 2 before
anything is stopped, and the order of stop, restore and start, also when a signal arrives, against a recording
stand-in for the engine. The restore itself runs on the live stack (tests/live/test_live_docker.py,
test_live_swarm.py)."""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime, timedelta

import pytest

from platform_infra.infra.cli import REPO_ROOT, main
from platform_infra.infra.daytwo import restore
from platform_infra.infra.daytwo.stackfile import stack_settings
from platform_infra.infra.mockrun import ProgramInputError

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def _epoch(minutes: float) -> int:
    return int((T0 + timedelta(minutes=minutes)).timestamp())


def _backup(label: str, kind: str, start: float, stop: float, wal: tuple[str, str], stored: int, refs=None) -> dict:
    """One backup as `pgbackrest info --output=json` (2.45) gives it."""
    return {"label": label, "type": kind, "timestamp": {"start": _epoch(start), "stop": _epoch(stop)},
            "archive": {"start": wal[0], "stop": wal[1]}, "database": {"id": 1, "repo-key": 1},
            "info": {"size": stored * 4, "delta": stored * 4, "repository": {"size": stored, "delta": stored}},
            "reference": refs, "backrest": {"format": 5, "version": "2.45"}, "error": False,
            "lsn": {"start": "0/0", "stop": "0/0"}, "prior": None}


INFO = [{
    "name": "platform", "status": {"code": 0, "message": "ok"}, "cipher": "none",
    "db": [{"id": 1, "repo-key": 1, "system-id": 7400000000000000000, "version": "15"}],
    "archive": [{"database": {"id": 1, "repo-key": 1}, "id": "15-1",
                 "min": "0000000100000000000000F0", "max": "000000010000000100000003"}],
    "backup": [
        _backup("20261206-100000F", "full", 0, 1, ("0000000100000000000000F0", "0000000100000000000000F0"), 4_000_000),
        _backup("20261206-100000F_20261206-101000I", "incr", 10, 11,
                ("0000000100000000000000FC", "0000000100000000000000FC"), 300_000, ["20261206-100000F"]),
        _backup("20261206-100000F_20261206-102000I", "incr", 20, 21,
                ("000000010000000100000001", "000000010000000100000001"), 200_000, ["20261206-100000F"]),
    ],
}]
NOW = T0 + timedelta(minutes=30)
POSTGRES = restore.Stopped("p-postgres", "postgres")
WRITERS = [restore.Stopped("p-api-gateway-1", "api-gateway"), restore.Stopped("p-worker-1", "worker")]


def test_latest_restores_the_newest_set_and_the_whole_archive_after_it():
    plan = restore.make_plan(INFO, None, NOW, "platform", POSTGRES, WRITERS)
    assert plan["target"] == "latest"
    assert plan["backup"]["label"] == "20261206-100000F_20261206-102000I"
    assert plan["backup"]["references"] == ["20261206-100000F"] and plan["backup"]["stored_bytes"] == 200_000
    # 1/01 .. 1/03: three segments of 16 MiB at most.
    assert plan["wal"] == {"archive_id": "15-1", "from": "000000010000000100000001",
                           "through": "000000010000000100000003", "segments_at_most": 3,
                           "bytes_at_most": 3 * 16 * 1024 * 1024}
    assert plan["fetch_bytes_at_most"] == 200_000 + 3 * 16 * 1024 * 1024


def test_a_time_restores_the_newest_set_that_ended_before_it_as_pgbackrest_picks_it():
    between = restore.make_plan(INFO, T0 + timedelta(minutes=15), NOW, "platform", POSTGRES, WRITERS)
    assert between["backup"]["label"] == "20261206-100000F_20261206-101000I"
    # 0/FC .. 1/03 across the log file's end: FC, FD, FE, FF, 1/00, 1/01, 1/02, 1/03.
    assert (between["wal"]["from"], between["wal"]["segments_at_most"]) == ("0000000100000000000000FC", 8)
    # pgBackRest wants the stop time strictly before the target, in whole seconds: a target within the
    # second a backup ended picks the one before it.
    at_the_stop = T0 + timedelta(minutes=11, microseconds=500_000)
    assert restore.make_plan(INFO, at_the_stop, NOW, "platform", POSTGRES, WRITERS)["backup"]["label"] \
        == "20261206-100000F"
    just_after = T0 + timedelta(minutes=11, seconds=1)
    assert restore.make_plan(INFO, just_after, NOW, "platform", POSTGRES, WRITERS)["backup"]["label"] \
        == "20261206-100000F_20261206-101000I"


def test_the_plan_stops_the_writers_then_postgres():
    plan = restore.make_plan(INFO, None, NOW, "platform", POSTGRES, WRITERS)
    assert [s["name"] for s in plan["stop"]] == ["p-api-gateway-1", "p-worker-1", "p-postgres"]
    text = restore.plan_text("prod", {"stack": "prod", **plan})
    assert "backup set 20261206-100000F_20261206-102000I (incr on 20261206-100000F)" in text
    assert "WAL 000000010000000100000001 .. 000000010000000100000003" in text and "p-postgres" in text


def test_the_writers_are_every_application_the_backup_job_and_the_exporter_the_autoscaler_first():
    settings = stack_settings(REPO_ROOT, "prod")
    writers = restore.writer_services(settings)
    assert writers == ("autoscaler", "api-gateway", "orchestrator", "worker", "log-aggregator", "query-service",
                       "postgres-backup", "postgres-exporter")
    # Every Spring service has a PostgreSQL pool (components/apps.py): each one is a writer.
    assert {name.replace("_", "-") for name, _ in settings.apps} <= set(writers)


@pytest.mark.parametrize(("target", "needle"), [
    (NOW + timedelta(seconds=1), "in the future; allowed after the oldest backup's end (2026-12-06T10:01:00+00:00)"),
    (T0 + timedelta(seconds=59), "before the oldest backup's end (2026-12-06T10:01:00+00:00); allowed after it"),
])
def test_a_target_out_of_reach_is_bad_input(target, needle):
    with pytest.raises(ProgramInputError, match="^--to ") as raised:
        restore.make_plan(INFO, target, NOW, "platform", POSTGRES, WRITERS)
    assert needle in str(raised.value)


def test_no_backup_at_all_is_bad_input():
    with pytest.raises(ProgramInputError, match="--latest: no PostgreSQL backup of stanza platform"):
        restore.make_plan([{**INFO[0], "backup": []}], None, NOW, "platform", POSTGRES, WRITERS)


@pytest.mark.parametrize(("text", "parsed"), [
    ("2026-12-03 10:00:00+00", datetime(2026, 12, 3, 10, tzinfo=UTC)),
    ("2026-12-03T11:00:00+01:00", datetime(2026, 12, 3, 10, tzinfo=UTC)),
    ("2026-12-03T10:00:00.250Z", datetime(2026, 12, 3, 10, 0, 0, 250_000, tzinfo=UTC)),
])
def test_a_time_with_its_offset_is_read_and_given_to_pgbackrest_in_its_form(text, parsed):
    assert restore.parse_target(text) == parsed
    assert restore.pgbackrest_target(parsed).startswith("2026-12-03 10:00:00")
    assert restore.pgbackrest_target(parsed).endswith("+00:00")


def one_line_exit_2(capsys, argv: list[str], *needles: str) -> None:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert all(n in err[0] for n in needles), err


@pytest.mark.parametrize(("flags", "needles"), [
    (["--to", "2026-12-03 10:00:00"], ("infra: error: --to 2026-12-03 10:00:00: allowed a time with its UTC offset",)),
    (["--to", "yesterday"], ("--to yesterday: allowed a time with its UTC offset",)),
    (["--to", "2999-01-01 00:00:00+00"], ("--to 2999-01-01T00:00:00+00:00: in the future; allowed up to now",)),
    (["--to", "2026-12-03 10:00:00+00", "--latest"], ("infra: error: --to/--latest: allowed exactly one: --to TIME",)),
    ([], ("infra: error: --to/--latest: allowed exactly one",)),
    (["--latest", "--timeout", "0"], ("--timeout: 0: allowed 1 to 1800",)),
])
def test_bad_flags_are_one_line_before_anything_is_read(capsys, flags, needles):
    one_line_exit_2(capsys, ["backup", "restore", "--stack", "prod", "--yes-in-prod", *flags], *needles)


def test_prod_is_refused_without_yes_in_prod_but_for_the_plan(capsys):
    one_line_exit_2(capsys, ["backup", "restore", "--stack", "prod", "--latest"], "--yes-in-prod", "prod")
    one_line_exit_2(capsys, ["backup", "restore", "--stack", "prod", "--latest", "--plan",
                             "--docker-host", "tcp://127.0.0.1:1"], "--docker-host: no Docker engine answers at "
                    "tcp://127.0.0.1:1")


def test_a_stack_without_backups_is_refused(capsys):
    one_line_exit_2(capsys, ["backup", "restore", "--stack", "dev", "--latest"], "--stack dev: the stack declares "
                    "no backups")


def test_an_unreachable_store_is_named_before_anything_is_stopped(capsys, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    one_line_exit_2(capsys, ["backup", "restore", "--stack", "prod", "--latest", "--yes-in-prod",
                             "--docker-host", "tcp://127.0.0.1:1"],
                    "infra: error: store unreachable: evidence store s3://orchestration-prod-backups/evidence/prod/",
                    "http://127.0.0.1:1")


# --- stop, restore, start: the order, and signals -------------------------------------------------------------


class RecordingRuntime:
    """A stand-in for restore.Runtime that records what the restore asks of the engine; `on` sends this process
    a signal when the named call happens (as an operator's Ctrl-C would arrive)."""

    def __init__(self, on: str | None = None, restore_exit: int = 0, polls_to_end: int = 2):
        self.calls: list[str] = []
        self.running: set[str] = {POSTGRES.name, *(w.name for w in WRITERS)}
        self.on, self.restore_exit, self.polls_to_end = on, restore_exit, polls_to_end
        self.one_off = None

    def _note(self, call: str) -> None:
        self.calls.append(call)
        if self.on == call:
            self.on = None
            os.kill(os.getpid(), signal.SIGTERM)

    def stop(self, target):
        self.running.discard(target.name)
        self._note(f"stop {target.name}")

    def stopped(self, target):
        return target.name not in self.running

    def start(self, target):
        self.running.add(target.name)
        self._note(f"start {target.name}")

    def healthy(self, target):
        return target.name in self.running

    def run_one_off(self, postgres, args):
        assert postgres.name not in self.running, "the restore runs only once PostgreSQL is stopped"
        self.one_off = self.polls_to_end
        self._note("restore")

    def exists(self):
        return self.one_off is not None

    def one_off_ended(self):
        self.one_off -= 1
        self._note("poll")
        return (self.restore_exit, "") if self.one_off <= 0 else None

    def one_off_logs(self, stdout=True, stderr=True):
        return "INFO: restore command end: completed successfully"

    def remove_one_off(self):
        self.one_off = None
        self._note("remove")


@pytest.fixture(autouse=True)
def quick_polls(monkeypatch):
    monkeypatch.setattr("platform_infra.infra.daytwo.drills.POLL_SECONDS", 0.01)


def _without_polls(calls: list[str]) -> list[str]:
    return [c for c in calls if c != "poll"]


def test_the_writers_stop_first_and_start_last():
    runtime = RecordingRuntime()
    result = restore.run_restore(runtime, POSTGRES, WRITERS, ["restore"], 60, lambda line: None)
    calls = _without_polls(runtime.calls)
    assert sorted(calls[:2]) == ["stop p-api-gateway-1", "stop p-worker-1"]  # side by side, then PostgreSQL
    assert calls[2:] == ["stop p-postgres", "restore", "remove", "start p-postgres", "start p-api-gateway-1",
                         "start p-worker-1"]
    assert result["ok"] and result["restore_exit"] == 0 and result["interrupted"] is None


def test_a_signal_while_stopping_starts_what_was_stopped_and_restores_nothing():
    runtime = RecordingRuntime(on="stop p-api-gateway-1")
    result = restore.run_restore(runtime, POSTGRES, WRITERS, ["restore"], 60, lambda line: None)
    calls = _without_polls(runtime.calls)
    # The writers stop side by side: whichever had begun stopping is started again; PostgreSQL is never stopped.
    assert "stop p-postgres" not in calls and "restore" not in calls
    for i, call in enumerate(calls):
        if call.startswith("stop "):
            assert f"start {call.removeprefix('stop ')}" in calls[i + 1:], calls
    assert result["interrupted"] == "SIGTERM" and not result["ok"]
    assert runtime.running == {POSTGRES.name, *(w.name for w in WRITERS)}


def test_a_signal_during_the_restore_lets_it_finish_then_starts_everything():
    runtime = RecordingRuntime(on="poll", polls_to_end=3)
    result = restore.run_restore(runtime, POSTGRES, WRITERS, ["restore"], 60, lambda line: None)
    assert _without_polls(runtime.calls)[2:] == ["stop p-postgres", "restore", "remove", "start p-postgres",
                                                 "start p-api-gateway-1", "start p-worker-1"]
    assert runtime.calls.count("poll") == 3  # it went on waiting for pgBackRest after the signal
    assert result["interrupted"] == "SIGTERM" and result["restore_exit"] == 0 and not result["ok"]


def test_a_failed_restore_still_starts_everything_and_says_so():
    runtime = RecordingRuntime(restore_exit=1)
    result = restore.run_restore(runtime, POSTGRES, WRITERS, ["restore"], 60, lambda line: None)
    assert runtime.running == {POSTGRES.name, *(w.name for w in WRITERS)}
    assert result["restore_error"].startswith("pgbackrest restore exited 1") and not result["ok"]
