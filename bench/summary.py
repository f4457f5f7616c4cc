"""Print every benchmark result in bench/results/ as Markdown (for the README and closing notes).

    python bench/summary.py
"""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    for path in sorted(RESULTS.glob("*.json")):
        data = json.loads(path.read_text())
        if "measurements" not in data:
            continue
        print(f"**{data['title']}** (`{path.name}`, {data['time']})\n")
        print("| measurement | value | ratio |")
        print("|---|---|---|")
        for m in data["measurements"]:
            ratio = f"{m['ratio']:.2f}x {m['baseline']}" if m.get("ratio") is not None else ""
            print(f"| {m['label']} | {m['value']:,.2f} {m['unit']} | {ratio} |")
        for check in data.get("checks", []):
            print(f"\n{'PASS' if check['ok'] else 'FAIL'}: {check['name']} — {check['detail']}")
        print()


if __name__ == "__main__":
    main()
