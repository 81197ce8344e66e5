"""Preparing the sandbox image: pull it, or build one offline, and layer a project's requirements.

``assistant sandbox build`` calls ``prepare``:
1. the configured image is already here: done;
2. else ``docker pull`` it (a registry is reachable);
3. else, with no registry, build a Debian root filesystem with ``debootstrap`` from the apt
   mirror (python3, pytest, pip) and ``docker import`` it as ``OFFLINE_IMAGE``.
``--requirements FILE`` then installs the file's packages on top (pip in a build container that
may use the network; the sandbox itself never does) and commits a per-project image.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox import SandboxError
from sandbox.limits import OFFLINE_IMAGE

SUITE = "bookworm"
PACKAGES = ("python3", "python3-pytest", "python3-pip", "ca-certificates")
RECIPE_LABEL = "assistant.sandbox.recipe"
BASE_LABEL = "assistant.sandbox.base"  # on a project image: the image its requirements were layered on
REQUIREMENTS_LABEL = "assistant.sandbox.requirements"
PROJECT_REPOSITORY = "assistant-sandbox-project"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
HOST_CA = "/etc/ssl/certs/ca-certificates.crt"
Log = Callable[[str], None]


def recipe_id(suite: str = SUITE, packages: tuple[str, ...] = PACKAGES) -> str:
    """Changes when what the offline image contains would change (so a cached image is rebuilt)."""
    return hashlib.sha256(f"{suite}|{','.join(packages)}|v1".encode()).hexdigest()[:12]


def image_labels(client: Any, name: str) -> dict[str, str] | None:
    """The image's labels ({} if none), or None when the image is not here."""
    import docker

    try:
        attrs = client.api.inspect_image(name)
    except docker.errors.ImageNotFound:
        return None
    return (attrs.get("Config") or {}).get("Labels") or {}


def debian_mirror() -> str:
    """The Debian mirror apt uses here (the one the machine can reach), else deb.debian.org."""
    candidates = sorted(glob.glob("/etc/apt/sources.list.d/*.sources")) + ["/etc/apt/sources.list"]
    for path in candidates:
        try:
            text = Path(path).read_text()
        except OSError:
            continue
        for uri in re.findall(r"(?:URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(\S+)", text, flags=re.MULTILINE):
            if "debian" in uri and "security" not in uri and uri.startswith("http"):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def pull(client: Any, name: str, log: Log) -> None:
    """``docker pull``; SandboxError (one line) when no registry answers."""
    repository, _, tag = name.rpartition(":") if ":" in name.split("/")[-1] else (name, "", "latest")
    log(f"pulling {name} ...")
    try:
        client.api.pull(repository, tag=tag or "latest")
    except Exception as exc:
        reason = str(getattr(exc, "explanation", "") or exc).splitlines()[0][:160]
        raise SandboxError(f"cannot pull {name}: {reason}", "no registry reachable? build offline") from exc


def build_offline(
    client: Any,
    tag: str = OFFLINE_IMAGE,
    *,
    mirror: str | None = None,
    suite: str = SUITE,
    packages: tuple[str, ...] = PACKAGES,
    log: Log = print,
) -> str:
    """Build ``tag`` without a registry: debootstrap a minimal Debian, then ``docker import`` it."""
    if shutil.which("debootstrap") is None:
        raise SandboxError("debootstrap is not installed (needed to build the image offline)", "apt-get install debootstrap")
    if os.geteuid() != 0:
        raise SandboxError("building the image offline needs root (debootstrap)", "run `sudo assistant sandbox build`")
    mirror = mirror or debian_mirror()
    workdir = Path(tempfile.mkdtemp(prefix="assistant-rootfs-"))
    rootfs = workdir / "rootfs"
    try:
        log(f"debootstrap {suite} from {mirror} (python3, pytest, pip) ...")
        done = subprocess.run(
            ["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, str(rootfs), mirror],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise SandboxError(f"debootstrap failed: {tail[0][:200]}", f"is the mirror {mirror} reachable?")
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for entry in glob.glob(str(rootfs / junk / "*")):
                if os.path.isfile(entry):
                    os.unlink(entry)
        log(f"docker import as {tag} ...")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
        repository, _, version = tag.rpartition(":")
        try:
            client.api.import_image_from_stream(
                tar.stdout,
                repository=repository,
                tag=version,
                changes=[
                    "ENV LANG=C.UTF-8",
                    "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    'CMD ["python3"]',
                    f"LABEL {RECIPE_LABEL}={recipe_id(suite, packages)}",
                ],
            )
        finally:
            tar.stdout.close()  # type: ignore[union-attr]
            tar.wait()
        if image_labels(client, tag) is None:
            raise SandboxError(f"docker import did not produce {tag}")
        return tag
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def ensure_offline_image(client: Any, tag: str = OFFLINE_IMAGE, log: Log = print) -> str:
    """The offline image, built once and reused while its recipe is unchanged (tests, CI)."""
    labels = image_labels(client, tag)
    if labels is not None and labels.get(RECIPE_LABEL) == recipe_id():
        return tag
    return build_offline(client, tag, log=log)


def requirements_tag(base: str, requirements: Path) -> str:
    digest = hashlib.sha256(base.encode() + b"\0" + requirements.read_bytes()).hexdigest()[:12]
    return f"{PROJECT_REPOSITORY}:{digest}"


def layer_requirements(client: Any, base: str, requirements: Path, *, tag: str | None = None, log: Log = print) -> str:
    """Install ``requirements`` into ``base`` with pip and commit the result as a new image."""
    import docker

    requirements = requirements.resolve()
    if not requirements.is_file():
        raise SandboxError(f"requirements file {requirements} does not exist")
    tag = tag or requirements_tag(base, requirements)
    if image_labels(client, tag) is not None:
        log(f"{tag} is already built")
        return tag
    environment = {"PIP_BREAK_SYSTEM_PACKAGES": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_CACHE_DIR": "1"}
    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        # The requirements file's folder (for `-r other.txt` and `-c constraints.txt` inside it).
        for path in sorted(requirements.parent.iterdir()):
            if path.is_file() and path.suffix in (".txt", ".in") and path.stat().st_size < (1 << 20):
                tar.add(path, arcname=f"assistant-build/{path.name}")
        if os.path.exists(HOST_CA):  # the host's trust store (a proxy's CA, say), for the download only
            tar.add(HOST_CA, arcname="assistant-build/host-ca.crt")
            environment["PIP_CERT"] = "/tmp/assistant-build/host-ca.crt"
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "PIP_INDEX_URL"):
        if os.environ.get(key):
            environment[key] = os.environ[key]
    script = (f"python3 -m pip install -r /tmp/assistant-build/{shlex.quote(requirements.name)}; "
              "status=$?; rm -rf /tmp/assistant-build; exit $status")  # fmt: skip
    log(f"installing {requirements.name} into {base} ...")
    api = client.api
    try:
        container = api.create_container(base, ["sh", "-c", script], user="0:0", environment=environment,
                                         labels={"assistant.sandbox.build": "1"})["Id"]  # fmt: skip
    except docker.errors.ImageNotFound as exc:
        raise SandboxError(f"base image {base} is not here", "run `assistant sandbox build` first") from exc
    try:
        api.put_archive(container, "/tmp", payload.getvalue())
        api.start(container)
        status = api.wait(container)
        if status.get("StatusCode") != 0:
            logs = api.logs(container).decode("utf-8", "replace").strip().splitlines()
            last = next((line for line in reversed(logs) if line.strip()), "no output")
            raise SandboxError(f"pip could not install {requirements.name}: {last[:200]}", "check the file and the network")
        repository, _, version = tag.rpartition(":")
        api.commit(container, repository=repository, tag=version,
                   changes=['CMD ["python3"]', f"LABEL {REQUIREMENTS_LABEL}={requirements.name}",
                            f"LABEL {BASE_LABEL}={base}"])  # fmt: skip
    finally:
        api.remove_container(container, force=True)
    return tag


def prepare(
    client: Any,
    image: str,
    *,
    offline: bool = False,
    requirements: Path | None = None,
    mirror: str | None = None,
    log: Log = print,
) -> str:
    """Make a usable sandbox image; return its name (which may differ from ``image``)."""
    if image.startswith(PROJECT_REPOSITORY + ":"):
        # A project image from an earlier --requirements build: start again from its base.
        labels = image_labels(client, image) or {}
        if requirements is None and labels:
            log(f"{image} is here")
            return image
        from sandbox.limits import DEFAULT_IMAGE

        image = labels.get(BASE_LABEL) or DEFAULT_IMAGE
    name = image
    if image_labels(client, image) is not None:
        log(f"{image} is here")
    else:
        pulled = False
        if not offline:
            try:
                pull(client, image, log)
                pulled = True
            except SandboxError as exc:
                log(f"{exc}; building {OFFLINE_IMAGE} offline instead")
        if not pulled:
            if (image_labels(client, OFFLINE_IMAGE) or {}).get(RECIPE_LABEL) == recipe_id():
                log(f"{OFFLINE_IMAGE} is here")
            else:
                build_offline(client, OFFLINE_IMAGE, mirror=mirror, log=log)
            name = OFFLINE_IMAGE
    if requirements is not None:
        name = layer_requirements(client, name, requirements, log=log)
    return name
