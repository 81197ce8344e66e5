"""Helpers for the index tests: a small sample project, and what a fresh index of a project holds."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from index import IndexSettings, open_index

SAMPLE = {
    "pkg/__init__.py": '"""A tiny package."""\n',
    "pkg/shapes.py": '''"""Geometry helpers."""

import math


class Circle:
    """A circle with a radius."""

    def __init__(self, radius):
        self.radius = radius

    def area(self):
        return math.pi * self.radius ** 2


def rectangle_area(width, height):
    """Area of a rectangle."""
    return width * height
''',
    "pkg/net/http_client.py": '''import socket


def fetch_url(url, timeout=10):
    """Download a page over HTTP and return its body."""
    host = url.split("/")[2]
    sock = socket.create_connection((host, 80), timeout)
    sock.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
    return sock.recv(65536)


def parse_headers(raw):
    """Split raw HTTP header lines into a dict."""
    headers = {}
    for line in raw.split("\\r\\n"):
        if ":" in line:
            key, value = line.split(":", 1)
            headers[key.strip().lower()] = value.strip()
    return headers
''',
    "pkg/net/__init__.py": "",
    "web/app.js": '''// A small web app.
function renderTodoList(items) {
  return items.map((item) => `<li>${item.title}</li>`).join("");
}

class TodoStore {
  constructor() { this.items = []; }
  add(title) { this.items.push({ title }); }
}

module.exports = { renderTodoList, TodoStore };
''',
    "scripts/deploy.sh": '''#!/bin/bash
deploy_release() {
  rsync -a build/ server:/srv/app/
}
deploy_release
''',
    "README.md": "# Sample\n\nA sample project for the index tests.\n\n## Usage\n\nRun it.\n",
}


def write_project(root: Path, files: dict[str, str] = SAMPLE) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def fresh_id_hashes(project: Path, settings: IndexSettings, scratch: Path) -> set[tuple[str, str]]:
    """The (id, hash) set a brand-new full index of the project's current files has."""
    copy = scratch / f"fresh-{len(list(scratch.glob('fresh-*')))}"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".assistant"), symlinks=True)
    idx = open_index(copy, dataclasses.replace(settings))
    idx.update()
    return idx.store.id_hashes()
