#!/usr/bin/env python3
"""The seed's entry point, kept for its users: same as ``assistant quantize``.

    python3 scripts/quantize_model.py --checkpoint models/code_model_best.pth --quantization int8
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assistant.cli import main

if __name__ == "__main__":
    raise SystemExit(main(["quantize", *sys.argv[1:]]))
