"""The independent checks of the real-photo verdicts, by group, from the testers' records.

    .venv/bin/python scripts/summarize_independent_checks.py   # -> docs/measurements/independent-checks.txt

Each record (docs/measurements/independent-checks/check5.csv, check6.csv) is one tester's photos, chosen by the
tester from sources never used here, labelled after looking at them, and the API's answers as the tester got
them (file, group, label, each model's top-1, out_of_scope, uncertain, looks_like, reason). Check 5 ran on the first
version of the lines (before the fourth line and the tie-break: its failures led to them, so it is no longer
blind); check 6 on the served ones.
"""

from __future__ import annotations

import csv
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CHECKS = REPO / "docs" / "measurements" / "independent-checks"
OUT = REPO / "docs" / "measurements" / "independent-checks.txt"
RECORDS = {"check5": "first check, lines before the fourth line and the tie-break",
           "check6": "second check, the served lines"}


def share(part: int, whole: int) -> str:
    return f"{part}/{whole} ({100 * part / whole:.1f}%)" if whole else "-"


def summary(rows: list[dict[str, str]]) -> list[str]:
    lines = []
    for group in ("everyday", "mammal", "class"):
        mine = [r for r in rows if r["group"] == group]
        out = sum(r["out_of_scope"] == "True" for r in mine)
        unflagged = [r for r in mine if r["uncertain"] != "True"]
        line = f"  {group:9s} {len(mine):4d} photos: out of scope {share(out, len(mine))}, no flag " \
               f"{share(len(unflagged), len(mine))}"
        if group == "class":
            right = [r for r in mine if r["custom_cnn"] == r["label"] == r["mobilenetv2"]]
            right_unflagged = [r for r in unflagged if r["custom_cnn"] == r["label"] == r["mobilenetv2"]]
            line += (f"; both right {share(len(right), len(mine))}, right of the unflagged "
                     f"{share(len(right_unflagged), len(unflagged))}, right and unflagged "
                     f"{share(len(right_unflagged), len(mine))}")
        lines.append(line)
    return lines


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    text = []
    for name, what in RECORDS.items():
        with open(CHECKS / f"{name}.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        text += [f"{name} ({what}): {len(rows)} photos", *summary(rows)]
    OUT.write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
