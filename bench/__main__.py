"""``python -m bench`` (``make bench``): omnirelay vs a minimal Python relay, LiteLLM, Portkey, claude-code-router and
nginx on one mock upstream.

python -m bench                      # the full run (~25 min on 2 cores), writes bench/RESULTS.md
python -m bench --quick              # seconds: tiny load, same tables
python -m bench --profile            # py-spy profile of omnirelay's hot path (bench/.work/profile/)
"""

from __future__ import annotations

import argparse
import importlib.util
import signal
import sys
from pathlib import Path

from bench.install import RUN, log
from bench.report import command_line, render
from bench.runner import Settings, load_raw, run_benchmark, save_raw

DEFAULT_OUT = Path(__file__).resolve().parent / "RESULTS.md"


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="tiny load (1 s runs, c=1,8, one rate): a check, not numbers")
    p.add_argument("--duration", type=float, help="seconds measured per run (default 8; quick 1)")
    p.add_argument("--warmup", type=float, help="seconds of warm-up before each run (default 2; quick 0.3)")
    p.add_argument("--concurrency", type=_ints, help="closed-loop levels (default 1,32,256)")
    p.add_argument("--rates", type=_floats, help="open-loop req/s, non-streaming (default 100,1000)")
    p.add_argument("--stream-rates", type=_floats, help="open-loop streams/s (default 20,200)")
    p.add_argument("--chunks", type=int, default=50, help="content chunks per streamed reply (default 50)")
    p.add_argument("--workers", type=int, default=1, help="worker processes for every server (default 1)")
    p.add_argument(
        "--targets",
        type=_names,
        default=["omnirelay", "pyrelay", "litellm", "portkey", "ccr", "nginx"],
        help="omnirelay,pyrelay,litellm,portkey,ccr,nginx (pyrelay: bench/pyrelay.py, the minimal Python relay; "
        "portkey: @portkey-ai/gateway; ccr: claude-code-router, Anthropic-in only)",
    )
    p.add_argument(
        "--scenarios",
        type=_names,
        default=["openai", "stream", "anthropic", "responses"],
        help="openai,stream,anthropic,responses",
    )
    p.add_argument(
        "--state",
        choices=["auto", "on", "off"],
        default="auto",
        help="omnirelay key store, rate limits and SQLite usage log (auto: on when omnirelay.state exists)",
    )
    p.add_argument(
        "--metrics",
        choices=["on", "off"],
        default="on",
        help="omnirelay's GET /metrics and the per-request counting behind it (metrics.enabled)",
    )
    p.add_argument("--no-install", action="store_true", help="never apt-get/pip install; skip what is missing")
    p.add_argument("--python-load", action="store_true", help="use the Python client instead of wrk everywhere")
    p.add_argument(
        "--workers-check",
        choices=["auto", "on", "off"],
        default="auto",
        help="after the scenarios, omnirelay and pyrelay with 2 workers at c=32 (auto: on unless --quick)",
    )
    p.add_argument("--soak", type=float, default=0.0, help="after the run, soak omnirelay for this many seconds")
    p.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="where to write the markdown (default bench/RESULTS.md)"
    )
    p.add_argument("--profile", action="store_true", help="profile omnirelay under load with py-spy instead")
    p.add_argument("--render", action="store_true", help="only re-render --out from the last run's raw results")
    return p


def settings_from(args: argparse.Namespace) -> Settings:
    quick = args.quick
    has_state = importlib.util.find_spec("omnirelay.state") is not None
    state = has_state if args.state == "auto" else args.state == "on"
    return Settings(
        duration=args.duration if args.duration is not None else (1.0 if quick else 8.0),
        warmup=args.warmup if args.warmup is not None else (0.3 if quick else 2.0),
        concurrency=args.concurrency or ([1, 8] if quick else [1, 32, 256]),
        rates=args.rates if args.rates is not None else ([50.0] if quick else [100.0, 1000.0]),
        stream_rates=args.stream_rates if args.stream_rates is not None else ([20.0] if quick else [20.0, 200.0]),
        chunks=args.chunks,
        workers=args.workers,
        targets=args.targets,
        scenarios=args.scenarios,
        state=state,
        metrics=args.metrics == "on",
        install=not args.no_install,
        use_wrk=not args.python_load,
        workers_check=(not quick and args.workers == 1) if args.workers_check == "auto" else args.workers_check == "on",
    )


def _exit_on_term(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds through the runner's finally: every server it started is stopped


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_term)
    args = parser().parse_args(argv)
    settings = settings_from(args)
    if args.profile:
        from bench.profile import run_profile

        run_profile(settings)
        return 0
    if args.render:
        results, command = load_raw(RUN / "results.json")
    else:
        command = command_line()
        results = run_benchmark(settings, soak_seconds=args.soak)
        save_raw(results, RUN / "results.json", command)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, command))
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
