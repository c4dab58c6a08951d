"""Redaction's cost per text and its accuracy on the secret corpus (tests/secret_corpus.py).

    python -m benchmarks.redaction            # prints the figures, writes benchmarks/results/redaction.json
    python -m benchmarks.redaction --quick    # smoke run (CI)

Reports, for ``Redactor.redact_text``: planted secrets missed (must be 0), ordinary lines changed (false
positives), and the best-of-rounds µs per line over the ordinary lines (what nearly every log value costs) and over
the planted ones; also the cost with the shape pass left out, to show what it adds.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from django_observe import redaction, secret_shapes  # noqa: E402
from tests import secret_corpus  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def per_line(fn, lines: list[str], repeats: int) -> float:
    """The µs per line of ``fn`` over ``lines``, best of ``repeats`` rounds (this machine is shared: the best
    round is the one least disturbed)."""
    rounds = []
    for _ in range(repeats):
        started = time.perf_counter()
        for line in lines:
            fn(line)
        rounds.append((time.perf_counter() - started) / len(lines) * 1e6)
    return min(rounds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    repeats = 3 if args.quick else 25
    redactor = redaction.Redactor([secret_corpus.SECRET_ROUTE])
    planted = secret_corpus.planted()
    ordinary = secret_corpus.ordinary()
    misses = [p for p in planted if p.needle in redactor.redact_text(p.text)]
    false_positives = [line for line in ordinary if redactor.redact_text(line) != line]
    ordinary_us = per_line(redactor.redact_text, ordinary, repeats)
    planted_us = per_line(redactor.redact_text, [p.text for p in planted], repeats)
    shapes_only_us = per_line(
        lambda t: secret_shapes.redact_shapes(t, redactor.is_secret_key, redactor.routes), ordinary, repeats
    )
    result = {
        "planted": len(planted),
        "shapes": len({p.shape for p in planted}),
        "missed": len(misses),
        "ordinary": len(ordinary),
        "false_positives": len(false_positives),
        "us_per_ordinary_line": round(ordinary_us, 2),
        "us_per_planted_line": round(planted_us, 2),
        "us_per_ordinary_line_shape_pass": round(shapes_only_us, 2),
    }
    print(json.dumps(result, indent=2))
    for p in misses:
        print("MISSED", p.shape, repr(p.text[:120]))
    for line in false_positives:
        print("FALSE POSITIVE", repr(line[:120]))
    if not args.quick:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "redaction.json").write_text(json.dumps(result, indent=2) + "\n")
    if misses:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
