"""The nightly retrain job, registered with the platform's own scheduler.

- macOS: a launchd agent (``~/Library/LaunchAgents/<label>.plist``, StartCalendarInterval; launchd
  runs a missed job when the Mac wakes);
- Linux with a running systemd: a user service + timer (``OnCalendar``, ``Persistent=true`` so a
  run missed while asleep happens at the next boot or wake);
- otherwise: a crontab line, tagged so that ``remove`` takes exactly that line away.

The job is ``assistant retrain --if-new-feedback N`` in the project directory; the retrain itself
holds a lock, so a slow run and the next night's never overlap.
"""

from __future__ import annotations

import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from common.errors import AssistantError

LABEL = "com.assistant.retrain"
UNIT = "assistant-retrain"
CRON_TAG = "# assistant-retrain"
BACKENDS = ("auto", "launchd", "systemd", "cron")


class ScheduleError(AssistantError):
    """The scheduler could not be reached or refused the job."""


@dataclass
class Job:
    project: Path
    min_feedback: int = 10
    hour: int = 3
    minute: int = 0
    extra_args: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        return [sys.executable, "-m", "assistant", "retrain", "--if-new-feedback", str(self.min_feedback), *self.extra_args]

    def log_path(self) -> Path:
        return self.project / ".assistant" / "retrain.log"


def _systemd_user_running() -> bool:
    if not Path("/run/systemd/system").is_dir() or shutil.which("systemctl") is None:
        return False
    try:
        done = subprocess.run(["systemctl", "--user", "is-system-running"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.stdout.strip() in ("running", "degraded", "starting")


def choose_backend(requested: str = "auto") -> str:
    if requested not in BACKENDS:
        raise ScheduleError(f"unknown scheduler '{requested}'", f"choose from {', '.join(BACKENDS)}")
    if requested != "auto":
        return requested
    if sys.platform == "darwin":
        return "launchd"
    return "systemd" if _systemd_user_running() else "cron"


# ---- launchd ------------------------------------------------------------------------------------


def launchd_plist(job: Job) -> bytes:
    document = {
        "Label": LABEL,
        "ProgramArguments": job.argv(),
        "WorkingDirectory": str(job.project),
        "StartCalendarInterval": {"Hour": job.hour, "Minute": job.minute},
        "StandardOutPath": str(job.log_path()),
        "StandardErrorPath": str(job.log_path()),
        "EnvironmentVariables": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
        "ProcessType": "Background",
        "LowPriorityIO": True,
        "Nice": 10,
    }
    return plistlib.dumps(document, fmt=plistlib.FMT_XML)


def launchd_path() -> Path:
    return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"


# ---- systemd ------------------------------------------------------------------------------------


def systemd_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def systemd_units(job: Job) -> dict[str, str]:
    command = " ".join(shlex.quote(a) for a in job.argv())
    service = (
        "[Unit]\nDescription=Retrain the assistant's model from new feedback\n\n"
        "[Service]\nType=oneshot\n"
        f"WorkingDirectory={job.project}\n"
        "Environment=HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false\n"
        f"ExecStart={command}\n"
        "Nice=10\nIOSchedulingClass=idle\n"
    )
    timer = (
        "[Unit]\nDescription=Nightly assistant retrain\n\n"
        f"[Timer]\nOnCalendar=*-*-* {job.hour:02d}:{job.minute:02d}:00\n"
        "Persistent=true\nRandomizedDelaySec=600\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    return {f"{UNIT}.service": service, f"{UNIT}.timer": timer}


def _systemctl(*args: str) -> None:
    try:
        done = subprocess.run(["systemctl", "--user", *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ScheduleError(f"systemctl --user {' '.join(args)} failed ({exc})", "is systemd running for your user?") from exc
    if done.returncode != 0:
        raise ScheduleError(f"systemctl --user {' '.join(args)}: {done.stderr.strip()[:200]}", "check 'systemctl --user status'")


# ---- cron ---------------------------------------------------------------------------------------


def cron_line(job: Job) -> str:
    command = " ".join(shlex.quote(a) for a in job.argv())
    return (f"{job.minute} {job.hour} * * * cd {shlex.quote(str(job.project))} && HF_HUB_OFFLINE=1 {command} "
            f">> {shlex.quote(str(job.log_path()))} 2>&1 {CRON_TAG}")


def _crontab_read() -> list[str]:
    if shutil.which("crontab") is None:
        raise ScheduleError("crontab is not installed", "install cron (e.g. 'apt-get install cron'), or use systemd")
    done = subprocess.run(["crontab", "-l"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        if "no crontab" in done.stderr.lower():
            return []
        raise ScheduleError(f"crontab -l failed: {done.stderr.strip()[:200]}", "check that cron works for your user")
    return done.stdout.splitlines()


def _crontab_write(lines: list[str]) -> None:
    text = "\n".join(lines) + ("\n" if lines else "")
    done = subprocess.run(["crontab", "-"], input=text, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise ScheduleError(f"crontab refused the table: {done.stderr.strip()[:200]}", "check the cron installation")


# ---- install / remove ---------------------------------------------------------------------------


def install(job: Job, backend: str = "auto", activate: bool = True) -> dict:
    """Register the nightly job; returns what was written where. Installing twice replaces the job."""
    backend = choose_backend(backend)
    job.log_path().parent.mkdir(parents=True, exist_ok=True)
    if backend == "launchd":
        path = launchd_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        from common.atomic import atomic_write_bytes

        atomic_write_bytes(path, launchd_plist(job))
        if activate:
            subprocess.run(["launchctl", "unload", str(path)], capture_output=True)
            done = subprocess.run(["launchctl", "load", "-w", str(path)], capture_output=True, text=True)
            if done.returncode != 0:
                raise ScheduleError(f"launchctl load failed: {done.stderr.strip()[:200]}", f"the plist is at {path}")
        return {"backend": backend, "paths": [str(path)]}
    if backend == "systemd":
        from common.atomic import atomic_write_text

        directory = systemd_dir()
        directory.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, text in systemd_units(job).items():
            atomic_write_text(directory / name, text)
            paths.append(str(directory / name))
        if activate:
            _systemctl("daemon-reload")
            _systemctl("enable", "--now", f"{UNIT}.timer")
        return {"backend": backend, "paths": paths}
    lines = [line for line in _crontab_read() if not line.rstrip().endswith(CRON_TAG)]
    lines.append(cron_line(job))
    _crontab_write(lines)
    return {"backend": "cron", "paths": ["crontab"], "line": lines[-1]}


def remove(backend: str = "auto", activate: bool = True) -> dict:
    """Take the nightly job away; reports whether there was one."""
    backend = choose_backend(backend)
    if backend == "launchd":
        path = launchd_path()
        existed = path.exists()
        if existed:
            if activate:
                subprocess.run(["launchctl", "unload", "-w", str(path)], capture_output=True)
            path.unlink()
        return {"backend": backend, "removed": existed, "paths": [str(path)]}
    if backend == "systemd":
        directory = systemd_dir()
        names = [f"{UNIT}.timer", f"{UNIT}.service"]
        existed = any((directory / n).exists() for n in names)
        if existed and activate:
            _systemctl("disable", "--now", f"{UNIT}.timer")
        for n in names:
            (directory / n).unlink(missing_ok=True)
        if existed and activate:
            _systemctl("daemon-reload")
        return {"backend": backend, "removed": existed, "paths": [str(directory / n) for n in names]}
    lines = _crontab_read()
    kept = [line for line in lines if not line.rstrip().endswith(CRON_TAG)]
    if len(kept) != len(lines):
        _crontab_write(kept)
    return {"backend": "cron", "removed": len(kept) != len(lines), "paths": ["crontab"]}
