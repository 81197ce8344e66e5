"""`assistant sandbox ...`: status, build, run, tool, undo.

    assistant sandbox status [--json]              backend, isolation, image, limits
    assistant sandbox build [--requirements FILE]  pull the image, or build one offline
    assistant sandbox run 'CMD'                    run a bash command in the sandbox
    assistant sandbox tool NAME '{"arg": ...}'     call one of the model's tools by hand
    assistant sandbox undo [--list] [ID]           undo an approved write_file/apply_patch
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("sandbox", help="where model-run code executes: status, build, run, undo")
    parser.add_argument("--project", default=".", metavar="DIR", help="the project folder (default: .)")
    sub = parser.add_subparsers(dest="sandbox_command", metavar="ACTION", parser_class=type(parser))
    sub.required = True

    status = sub.add_parser("status", help="show the backend, its isolation level, the image and the limits")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.set_defaults(handler=_status)

    build = sub.add_parser("build", help="prepare the sandbox image (pull, or build offline without a registry)")
    build.add_argument("--requirements", metavar="FILE", help="also install this pip requirements file into the image")
    build.add_argument("--offline", action="store_true", help="do not try a registry; build with debootstrap")
    build.add_argument("--mirror", metavar="URL", help="Debian mirror for the offline build (default: apt's)")
    build.add_argument("--no-docs", action="store_true", help="skip building the search_docs index")
    build.set_defaults(handler=_build)

    run = sub.add_parser("run", help="run a bash command in the sandbox (exit status is the command's)")
    run.add_argument("cmd", metavar="COMMAND", help="a bash command line")
    run.add_argument("--timeout", type=float, help="seconds (capped by sandbox.timeout_s)")
    run.set_defaults(handler=_run)

    tool = sub.add_parser("tool", help="call one of the model's tools and print its JSON result")
    tool.add_argument("name", help="tool name, or 'list' for all tools and their schemas")
    tool.add_argument("arguments", nargs="?", default="{}", help="JSON object of arguments")
    tool.set_defaults(handler=_tool)

    undo = sub.add_parser("undo", help="undo the assistant's last approved change to the project")
    undo.add_argument("id", nargs="?", help="a change set id (default: the latest)")
    undo.add_argument("--list", action="store_true", help="list change sets instead")
    undo.add_argument("--force", action="store_true", help="restore even if the files changed since")
    undo.set_defaults(handler=_undo)


# -- helpers -------------------------------------------------------------------------------------
def _project(args: argparse.Namespace) -> Path:
    from common.errors import UsageError

    project = Path(args.project).expanduser()
    if not project.is_dir():
        raise UsageError(f"project folder {args.project} does not exist", "pass --project DIR")
    return project.resolve()


def load_sandbox_settings(project: Path):
    from assistant.settings import load_settings, section
    from sandbox.limits import SandboxSettings

    return section(load_settings(project), "sandbox", SandboxSettings)


def _confirm_on_tty(code: str, language: str) -> bool:
    """Unsandboxed runs need a yes per call; without a terminal the answer is no."""
    if not sys.stdin.isatty():
        return False
    print(f"No sandbox is available. Run this {language} directly on your machine?\n{code}", file=sys.stderr)
    return input("run it? [y/N] ").strip().lower() in ("y", "yes")


def _approve_on_tty(request) -> bool:
    if not sys.stdin.isatty():
        print("assistant: not approved (no terminal to ask)", file=sys.stderr)
        return False
    print(request.diff, file=sys.stderr)
    return input(f"{request.summary}: apply? [y/N] ").strip().lower() in ("y", "yes")


# -- handlers ------------------------------------------------------------------------------------
def _status(args: argparse.Namespace) -> int:
    from sandbox.factory import probe

    project = _project(args)
    settings = load_sandbox_settings(project)
    found = probe(settings)
    report: dict = {"backend": found.chosen, "requested": settings.backend, "project": str(project)}
    image_state = None
    leftovers: list[str] = []
    if found.chosen == "docker":
        from sandbox.docker_backend import connect, find_leftovers
        from sandbox.image import image_labels

        client = connect(settings)
        labels = image_labels(client, settings.image)
        image_state = "present" if labels is not None else "missing: run `assistant sandbox build`"
        leftovers = [c["Id"][:12] for c in find_leftovers(client)]
        client.close()
        report.update(isolation="container", engine=found.docker, image=settings.image, image_state=image_state)
    elif found.chosen == "bwrap":
        report.update(isolation="namespaces", docker=found.docker_error)
    else:
        report.update(isolation="none", docker=found.docker_error, bwrap=found.bwrap_error,
                      warning="code would run unsandboxed: every call needs your confirmation")  # fmt: skip
    report["limits"] = settings.describe_limits()
    report["leftover_containers"] = leftovers
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"backend    {found.chosen}" + (f" (Docker Engine {found.docker})" if found.chosen == "docker" else ""))
    print(f"isolation  {report['isolation']}")
    if found.chosen == "docker":
        print(f"image      {settings.image} ({image_state})")
    if found.chosen != "docker" and found.docker_error:
        print(f"docker     unavailable: {found.docker_error}")
    if found.chosen == "none":
        print(f"bwrap      unavailable: {found.bwrap_error}")
        print("warning    no sandbox: every code run needs your confirmation")
    print("limits     " + " · ".join(f"{k} {v}" for k, v in settings.describe_limits().items()))
    if leftovers:
        print(f"leftovers  {len(leftovers)} container(s) from crashed sessions (removed at the next start)")
    return 0


def _build(args: argparse.Namespace) -> int:
    from assistant.settings import set_project_setting
    from common.errors import UsageError
    from sandbox.docker_backend import connect
    from sandbox.image import prepare

    project = _project(args)
    settings = load_sandbox_settings(project)
    requirements = None
    if args.requirements:
        requirements = Path(args.requirements).expanduser()
        if not requirements.is_file():
            raise UsageError(f"requirements file {args.requirements} does not exist")
    client = connect(settings, timeout=900)
    name = prepare(client, settings.image, offline=args.offline, requirements=requirements, mirror=args.mirror,
                   log=lambda line: print(line, file=sys.stderr))  # fmt: skip
    if name != settings.image:
        path = set_project_setting(project, "sandbox.image", name)
        print(f"sandbox.image = {name!r} written to {path}", file=sys.stderr)
    if not args.no_docs:
        from sandbox.tools.docs_index import open_index

        index = open_index(project, rebuild=False)
        print(f"search_docs index ready ({len(index.entries)} entries)", file=sys.stderr)
    print(name)
    return 0


def _run(args: argparse.Namespace) -> int:
    from sandbox.factory import open_sandbox

    project = _project(args)
    settings = load_sandbox_settings(project)
    with open_sandbox(settings, project, confirm=_confirm_on_tty) as sandbox:
        result = sandbox.run(args.cmd, "bash", timeout=args.timeout)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    if result.refused:
        return 1
    if result.timed_out:
        print(f"assistant: killed at the {result.duration_s:.1f} s timeout", file=sys.stderr)
    elif result.oom_killed:
        print("assistant: killed: out of memory", file=sys.stderr)
    return result.exit_code if result.exit_code is not None else 1


def _tool(args: argparse.Namespace) -> int:
    from sandbox.factory import open_sandbox
    from sandbox.tools import TOOLS, ToolContext, call_tool

    if args.name == "list":
        print(json.dumps([dict(t.schema(), kind=t.kind.value) for t in TOOLS.values()], indent=2))
        return 0
    project = _project(args)
    settings = load_sandbox_settings(project)
    ctx = ToolContext(
        project=project,
        sandbox_factory=lambda: open_sandbox(settings, project, confirm=_confirm_on_tty),
        approve=_approve_on_tty,
    )
    try:
        result = call_tool(args.name, args.arguments, ctx)
    finally:
        if ctx.sandbox is not None:
            ctx.sandbox.close()
    print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    return 0 if result.ok else 1


def _undo(args: argparse.Namespace) -> int:
    from sandbox.tools.backup import list_backups, undo

    project = _project(args)
    if args.list:
        for manifest in list_backups(project):
            state = "undone" if manifest.get("undone") else "active"
            print(f"{manifest['id']}  {state:6}  {manifest['summary']}")
        return 0
    manifest = undo(project, args.id, force=args.force)
    print(f"undid {manifest['id']}: {manifest['summary']} ({', '.join(manifest['restored'])})")
    return 0
