"""'assistant schedule install/remove': a real crontab where systemd does not run, systemd user
units checked by systemd-analyze, and a launchd plist validated by plistlib."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
import sys

import pytest

from assistant.cli import main
from assistant.schedule import CRON_TAG, Job, install, launchd_plist, remove, systemd_units
from tests.ci import unavailable


@pytest.fixture
def saved_crontab():
    """Keep whatever crontab the machine has and put it back afterwards."""
    if shutil.which("crontab") is None:
        unavailable("crontab is not installed")
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    previous = done.stdout if done.returncode == 0 else None
    yield
    if previous is None:
        subprocess.run(["crontab", "-r"], capture_output=True)
    else:
        subprocess.run(["crontab", "-"], input=previous, text=True, check=True)


def _crontab() -> list[str]:
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    return done.stdout.splitlines() if done.returncode == 0 else []


@pytest.mark.skipif(sys.platform == "darwin", reason="Linux schedulers")
def test_install_and_remove_the_nightly_job_with_cron(saved_crontab, tmp_path, monkeypatch, capsys):
    subprocess.run(["crontab", "-"], input="17 5 * * * echo someone-elses-job\n", text=True, check=True)
    monkeypatch.chdir(tmp_path)
    cron = ["--scheduler", "cron"]  # named, so the test runs on a machine whose 'auto' is systemd too
    assert main(["schedule", "install", "--min-feedback", "7", "--at", "02:30", *cron]) == 0
    assert main(["schedule", "install", "--min-feedback", "7", "--at", "02:30", *cron]) == 0  # idempotent
    lines = _crontab()
    ours = [line for line in lines if line.endswith(CRON_TAG)]
    assert len(ours) == 1 and "someone-elses-job" in "\n".join(lines)
    assert ours[0].startswith("30 2 * * * cd ") and "retrain --if-new-feedback 7" in ours[0] and str(tmp_path) in ours[0]
    assert main(["schedule", "remove", *cron]) == 0
    assert "removed the nightly retrain (cron)" in capsys.readouterr().out
    assert _crontab() == ["17 5 * * * echo someone-elses-job"]
    assert main(["schedule", "remove", *cron]) == 0
    assert "no nightly retrain was installed" in capsys.readouterr().out


def test_systemd_user_timer_units_are_valid_and_removed(tmp_path, monkeypatch):
    job = Job(project=tmp_path, min_feedback=4, hour=1, minute=5)
    result = install(job, "systemd", activate=False)  # no systemd runs here: write and check the units only
    paths = result["paths"]
    assert [p.rsplit("/", 1)[1] for p in paths] == ["assistant-retrain.service", "assistant-retrain.timer"]
    units = systemd_units(job)
    assert "OnCalendar=*-*-* 01:05:00" in units["assistant-retrain.timer"] and "Persistent=true" in units["assistant-retrain.timer"]
    assert "--if-new-feedback 4" in units["assistant-retrain.service"]
    if shutil.which("systemd-analyze"):  # systemd's own unit checker (works without a running systemd)
        done = subprocess.run(["systemd-analyze", "--man=no", "verify", *paths], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    assert remove("systemd", activate=False)["removed"]
    assert not any(__import__("pathlib").Path(p).exists() for p in paths)


def test_launchd_plist_is_valid(tmp_path):
    job = Job(project=tmp_path, min_feedback=12, hour=3, minute=0)
    document = plistlib.loads(launchd_plist(job))
    assert document["Label"] == "com.assistant.retrain"
    assert document["ProgramArguments"][-3:] == ["retrain", "--if-new-feedback", "12"]
    assert document["StartCalendarInterval"] == {"Hour": 3, "Minute": 0}
    assert document["WorkingDirectory"] == str(tmp_path)
    if shutil.which("plutil"):  # macOS: the system's own validator too
        path = tmp_path / "job.plist"
        path.write_bytes(launchd_plist(job))
        assert subprocess.run(["plutil", "-lint", str(path)]).returncode == 0


def test_bad_time_is_one_clear_line(capsys):
    assert main(["schedule", "install", "--at", "25:00"]) == 2
    assert "--at 25:00 is not a time of day" in capsys.readouterr().err
