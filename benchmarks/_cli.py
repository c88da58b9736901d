"""The command line every benchmark in this directory shares (``benchmarks/README.md``).

    python benchmarks/NAME.py [--quick] [--threads N] [options of NAME]

Each benchmark runs a method and its obvious baseline in the same process on the same inputs
(alternating them where it times repeated steps) and reports their ratios, which carry over between
machines and machine loads far better than the absolute times printed beside them. The last line of
stdout is one JSON object with at least :data:`COMMON_KEYS`.

Run as scripts (``python benchmarks/NAME.py``), the benchmarks import this module as ``_cli``: the
script's directory is the first entry of ``sys.path``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping, Sequence
from typing import Any

import torch

COMMON_KEYS = ("benchmark", "quick", "threads", "baseline", "ratios")
"""Keys of every benchmark's JSON summary; ``ratios`` maps a name to a number (see each script)."""


def argument_parser(doc: str, *, threads: int | None = None) -> argparse.ArgumentParser:
    """An ``ArgumentParser`` with the shared options; ``doc`` (the script's docstring) is its help.

    Args:
        threads: the script's default for ``--threads`` (None: torch's default).
    """
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a small run (seconds to about a minute on 2 CPU cores), as "
        "`make bench` and tests/test_benchmarks.py run it; noisy ratios",
    )
    threads_default = "torch's default" if threads is None else threads
    parser.add_argument(
        "--threads",
        type=int,
        default=threads,
        help=f"torch intra-op threads (default: {threads_default})",
    )
    return parser


def parse_args(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """Parse ``argv`` and apply the shared options (``--threads``)."""
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    return args


def report(
    name: str,
    args: argparse.Namespace,
    *,
    baseline: str,
    ratios: Mapping[str, float],
    **fields: Any,
) -> dict[str, Any]:
    """Print the JSON summary as the last line of stdout and return it.

    Args:
        name: the benchmark (its script's stem).
        args: the parsed arguments (``--quick`` is recorded).
        baseline: what the ratios compare against, in words.
        ratios: the headline comparisons, rounded to 4 digits.
        fields: everything else measured or configured (raw times, sizes, per-case rows).
    """
    result = {
        "benchmark": name,
        "quick": bool(args.quick),
        "threads": torch.get_num_threads(),
        "baseline": baseline,
        "ratios": {k: round(float(v), 4) for k, v in ratios.items()},
        **fields,
    }
    print(json.dumps(result), flush=True)
    return result
