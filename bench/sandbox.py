"""Sandbox overhead: container start, and per-call cost of `python3 -c pass` in each backend.

    .venv/bin/python bench/sandbox.py [--calls 50] [--image NAME]

Rows (all measured in the same run, so the ratios hold on a noisy shared machine):
  host subprocess      `python3 -c pass` straight on the host: the floor every backend pays
  docker warm exec     Sandbox.run in the session's warm container (our Docker backend)
  docker run --rm      a fresh container per call: the naive design the warm container avoids
  bwrap per call       Sandbox.run with bubblewrap (a new namespace set per call)
plus the container start (create + start of the hardened session container).
Targets from the issue: docker warm exec p50 <= 120 ms, bwrap p50 <= 60 ms.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sandbox.bwrap_backend import BwrapSandbox
from sandbox.docker_backend import DockerSandbox, connect
from sandbox.image import ensure_offline_image
from sandbox.limits import SandboxSettings


def timed(fn, calls: int) -> list[float]:
    samples = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--image", help="docker image (default: the offline image, built if missing)")
    args = parser.parse_args()

    client = connect(SandboxSettings(), timeout=600)
    image = args.image or ensure_offline_image(client)
    settings = SandboxSettings(image=image)
    project = Path(tempfile.mkdtemp(prefix="bench-sandbox-"))
    project.chmod(0o755)
    (project / "main.py").write_text("print('hi')\n")
    rows: list[tuple[str, list[float]]] = []

    def check(result):
        assert result.exit_code == 0, result.stderr

    host_python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else "python3"  # what bwrap runs
    rows.append(("host subprocess", timed(lambda: subprocess.run([host_python, "-c", "pass"], check=True), args.calls)))

    starts = []
    for _ in range(args.starts):
        box = DockerSandbox(settings, project)
        begin = time.perf_counter()
        box.start()
        starts.append((time.perf_counter() - begin) * 1000)
        box.close()
    rows.append(("docker container start", starts))

    with DockerSandbox(settings, project) as box:
        check(box.run("python3 -c pass"))
        rows.append(("docker warm exec", timed(lambda: check(box.run("python3 -c pass")), args.calls)))

    def docker_run_rm():
        subprocess.run(["docker", "run", "--rm", "--network", "none", image, "python3", "-c", "pass"], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip

    rows.append(("docker run --rm per call", timed(docker_run_rm, max(5, args.calls // 5))))

    with BwrapSandbox(settings, project) as box:
        check(box.run("python3 -c pass"))
        rows.append(("bwrap per call", timed(lambda: check(box.run("python3 -c pass")), args.calls)))

    floor = statistics.median(rows[0][1])
    print(f"# sandbox overhead: {platform.node()} {platform.machine()}, {time.strftime('%Y-%m-%d')}, image {image}")
    print(f"| {'what':26} | {'n':>3} | {'p50 ms':>8} | {'p95 ms':>8} | {'p50 / host':>10} |")
    print(f"|{'-' * 28}|{'-' * 5}|{'-' * 10}|{'-' * 10}|{'-' * 12}|")
    for name, samples in rows:
        p50 = statistics.median(samples)
        print(f"| {name:26} | {len(samples):>3} | {p50:8.1f} | {percentile(samples, 0.95):8.1f} | {p50 / floor:9.1f}x |")
    warm = statistics.median(dict(rows)["docker warm exec"])
    bwrap = statistics.median(dict(rows)["bwrap per call"])
    naive = statistics.median(dict(rows)["docker run --rm per call"])
    print(f"\ndocker warm exec p50 {warm:.0f} ms (target <= 120): {'met' if warm <= 120 else 'MISSED'}; "
          f"{naive / warm:.1f}x faster than a container per call")  # fmt: skip
    print(f"bwrap p50 {bwrap:.0f} ms (target <= 60): {'met' if bwrap <= 60 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
