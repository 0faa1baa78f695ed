"""The model card's validation table for the streaming recipes: every `NAME-sSEED.cal.json`
that experiments/streaming_eval.sh wrote, as mean ± sd over seeds, for the calibrated rule
and for the rule each model started from, with the calibration's cost.

    python experiments/streaming_table.py runs/stream runs/stream2
"""

import argparse
import json
import re
from collections import defaultdict
from pathlib import Path

import numpy as np

from speechlstm.stream_eval import Limits

COLUMNS = ("correct_pct", "missed_pct", "wrong_pct", "speech_false_alarms_per_hour", "false_alarms_per_hour",
           "median_delay_ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=Path)
    args = ap.parse_args()
    runs: dict[str, dict[int, dict]] = defaultdict(dict)
    for d in args.dirs:
        for f in sorted(d.glob("*-s[0-9].cal.json")):
            m = re.fullmatch(r"(.+)-s(\d)\.cal\.json", f.name)
            if not f.stat().st_size:  # its calibration is still running
                continue
            runs[m.group(1)][int(m.group(2))] = json.loads(f.read_text())
    limits = Limits()
    print("| recipe | rule | seeds | correct % | missed % | wrong % | false alarms/h, read speech "
          "| false alarms/h, between commands | median delay ms | cost |")
    print("|---|---|---|" + "---:|" * (len(COLUMNS) + 1))
    for name, seeds in runs.items():
        for rule, pick in (("calibrated", lambda j: j["validation"]), ("default rule", lambda j: j["before"]["validation"])):
            rows = [pick(j) for _, j in sorted(seeds.items())]
            cells = [np.array([r[c] or 0.0 for r in rows], dtype=float) for c in COLUMNS]
            cells.append(np.array([limits.cost(r) for r in rows]))
            text = " | ".join(f"{v.mean():.1f} ± {v.std(ddof=1) if len(v) > 1 else 0:.1f}" for v in cells)
            print(f"| {name} | {rule} | {', '.join(map(str, sorted(seeds)))} | {text} |")
        best = min(seeds, key=lambda s: limits.cost(seeds[s]["validation"]))
        print(f"<!-- {name}: lowest calibrated cost at seed {best} -->")


if __name__ == "__main__":
    main()
