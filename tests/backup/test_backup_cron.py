"""The backup job's scheduler as its container runs it: GNU mcron (Debian bookworm's 1.0.8, the package the
job image installs), unprivileged, started by the stack's command on the table the stack renders, with the
job script and the table delivered read-only (mode 0444, owned by root), as both runtimes deliver files."""

from __future__ import annotations

import json
import os
import pwd
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from platform_infra.components.backup.jobs import JOB_SCRIPT, render_crontab, scheduler_command
from platform_infra.components.backup.model import BackupConfig
from platform_infra.infra.cli import REPO_ROOT
from platform_infra.infra.mockrun import load_project
from platform_infra.infra.settings import parse_settings
from tests.conftest import require_tool

# The job container's user is the postgres image's `postgres`; mcron runs each job in that account's home
# directory, so the test's user must have one: the host's postgres account (postgresql-15 creates it).
OS_USER = "postgres"
# The job container's environment as far as mcron is concerned (components/backup/jobs.py backup_job_specs).
ENV = {"GUILE_AUTO_COMPILE": "0", "HOME": "/tmp", "TZ": "UTC", "TEXTFILE_DIR": "/var/lib/node-exporter/textfile"}
# A job runs at the next minute's start: the bound covers a whole minute plus mcron's start.
JOB_BOUND_SECONDS = 75


@pytest.fixture
def account() -> pwd.struct_passwd:
    require_tool("mcron", "mcron")
    require_tool("setpriv", "util-linux")
    try:
        entry = pwd.getpwnam(OS_USER)
    except KeyError:
        require_tool("initdb", "postgresql-15")  # the package that creates the account
        raise
    assert Path(entry.pw_dir).is_dir(), f"{OS_USER}'s home {entry.pw_dir} is missing: mcron changes into it"
    return entry


@pytest.fixture
def workdir(account) -> Iterator[Path]:
    """A directory the job's user can read (pytest's workdir is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="backup-cron-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def delivered(path: Path, content: str) -> Path:
    """A file as the runtimes deliver a non-secret one: owned by root, mode 0444."""
    path.write_text(content)
    path.chmod(0o444)
    return path


def as_job_user(*command: str) -> list[str]:
    return ["setpriv", f"--reuid={OS_USER}", f"--regid={OS_USER}", "--init-groups", *command]


def test_mcron_reads_the_prod_table_and_schedules_every_class(workdir):
    """`--schedule` makes mcron print its next jobs and exit: the table parses as Vixie syntax and each class
    runs its script through `sh` at the checklist's times."""
    project = load_project(REPO_ROOT, "prod")
    backups = parse_settings(json.loads(project.config["platform:settings"]), "Pulumi.prod.yaml").backups
    crontab = delivered(workdir / "backup.vixie", render_crontab(backups))
    with crontab.open() as table:
        result = subprocess.run(as_job_user("mcron", "-i", "vixie", "--schedule=30", "-"), stdin=table,
                                capture_output=True, text=True, env={"PATH": os.environ["PATH"], **ENV},
                                timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    entries = [block.split("\n", 1) for block in result.stdout.strip().split("\n\n")]
    schedule = [(datetime.strptime(when, "%a %b %d %H:%M:%S %Y %z"), what) for when, what in entries]
    next_hour = (datetime.now(UTC) + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    runs = {what.split()[2]: [when for when, w in schedule if w == what] for _, what in schedule}
    assert {what for _, what in schedule} >= {f"sh {JOB_SCRIPT} {name} >&3 2>&4" for name in ("incr", "full", "config")}
    assert runs["incr"][:2] == [next_hour, next_hour + timedelta(hours=1)]
    assert all((when.hour, when.minute) == (1, 30) for when in runs["full"])
    assert all((when.hour, when.minute) == (4, 0) for when in runs["config"])


def test_the_scheduler_runs_a_job_whose_output_reaches_the_container_log(workdir):
    """The stack's scheduler command on a table with the incremental every minute: the read-only script
    runs as the job's user, its stdout and stderr reach mcron's own (the container's log), and no mail
    command is started. A stand-in script records the run; the real one is run by test_backup_postgres."""
    script = delivered(workdir / "platform-backup", 'echo "ran $1 as $(id -un) with TEXTFILE_DIR=$TEXTFILE_DIR"\n'
                                                     'echo "warning from $1" >&2\n')
    config = BackupConfig(bucket="cron-test-backups", incr={"schedule": "* * * * *", "max_age": "2h"})
    crontab = delivered(workdir / "backup.vixie", render_crontab(config, str(script)))
    # Anything mcron would mail: `sendmail`, or (Debian's build, config.scm `config-sendmail ""`) a command
    # named after the recipient, the job's user. Stand-ins that record being started.
    stubs, mailed = workdir / "bin", workdir / "mail" / "started"
    stubs.mkdir()
    mailed.parent.mkdir()
    shutil.chown(mailed.parent, OS_USER)
    for name in ("sendmail", OS_USER):
        (stubs / name).write_text(f'#!/bin/sh\necho "{name} $*" >> {mailed}\ncat >> {mailed}\n')
        (stubs / name).chmod(0o755)
    scheduler = subprocess.Popen(as_job_user(*scheduler_command(str(crontab))), stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                 env={"PATH": f"{stubs}:/usr/bin:/bin", **ENV})
    output = {"stdout": b"", "stderr": b""}
    expected = {"stdout": b"ran incr as postgres with TEXTFILE_DIR=/var/lib/node-exporter/textfile\n",
                "stderr": b"warning from incr\n"}
    try:
        with selectors.DefaultSelector() as streams:
            streams.register(scheduler.stdout, selectors.EVENT_READ, "stdout")
            streams.register(scheduler.stderr, selectors.EVENT_READ, "stderr")
            deadline = time.monotonic() + JOB_BOUND_SECONDS
            while any(want not in output[name] for name, want in expected.items()):
                assert scheduler.poll() is None, f"mcron exited {scheduler.returncode}: {output}"
                assert time.monotonic() < deadline, f"no job ran within {JOB_BOUND_SECONDS}s: {output}"
                for key, _ in streams.select(timeout=1):
                    output[key.data] += os.read(key.fileobj.fileno(), 65536)
        time.sleep(2)  # mcron reads the job's captured output once the job ends; a mail would start now
        assert scheduler.poll() is None, f"mcron exited {scheduler.returncode}"
    finally:
        os.killpg(scheduler.pid, signal.SIGKILL)
        scheduler.wait(timeout=10)
    assert not mailed.exists(), mailed.read_text()
