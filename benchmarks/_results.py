"""The one way benchmarks save results: JSON under benchmarks/results/ (scripts import this from their folder)."""

import json
from pathlib import Path


def write_result(path, result: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(f"wrote {path}")
    return path
