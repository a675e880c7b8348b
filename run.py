#!/usr/bin/env python3
"""Edge runtime for an EV charging site.

    python run.py [--single-process] [--cloud-outage S]
                                           the embedded demo site (simulated peers on loopback)
    python run.py --config FILE [--single-process]
                                           a real site
    python run.py status [--json] [--watch] [--config FILE]
    python run.py explain CHARGE_POINT [--at TIME] [--window S] [--json] [--config FILE]
    python run.py audit [--since TIME] [--until TIME] [--charge-point ID] [--kind KIND]
                        [--limit N] [--json] [--config FILE]

Without --config, the status, explain and audit commands look at the demo site.
See README.md for the configuration reference and deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from config.fields import ConfigError
from config.schema import SiteConfig, load_site

EX_CONFIG = 78  # a bad site file: systemd must not restart-loop on it (RestartPreventExitStatus)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run.py", description="Edge runtime for an EV charging site.")
    p.add_argument("--config", type=Path, help="site configuration (TOML); default: the demo site")
    p.add_argument(
        "--single-process",
        action="store_true",
        help="run every node's actor tree in this process, without Thespian",
    )
    p.add_argument(
        "--cloud-outage",
        type=float,
        default=0.0,
        metavar="S",
        help="demo only: the simulated cloud goes away for S seconds, 30 s after the start",
    )
    sub = p.add_subparsers(dest="command")
    status = sub.add_parser("status", help="show the supervision tree and the site")
    status.add_argument("--config", type=Path, dest="sub_config")
    status.add_argument("--json", action="store_true", help="the stable JSON document")
    status.add_argument("--watch", action="store_true", help="a live view, refreshed every second")
    from cli import audit

    audit.add_explain_arguments(sub.add_parser("explain", help=audit.EXPLAIN_HELP))
    audit.add_audit_arguments(sub.add_parser("audit", help=audit.AUDIT_HELP))
    return p


def _site_file(path: Path | None) -> Path | None:
    if path is not None:
        return path
    from cli.demo import demo_site_file

    generated = demo_site_file()  # the demo's own file, with the ports it chose
    return generated if generated.exists() else None


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s launcher %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _to_stdout(command: Callable[[], int]) -> int:
    """A command whose reader leaves early (``run.py audit | head``) ends as one killed by
    SIGPIPE would, without a traceback (the recipe of Python's signal module documentation)."""
    try:
        code = command()
        sys.stdout.flush()  # inside: what is left would fail at exit, outside any handler
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    return code


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config_path = getattr(args, "sub_config", None) or args.config
    if args.command is None and config_path is None:
        from cli import demo

        _setup_logging("INFO")
        try:
            return demo.run(single_process=args.single_process, cloud_outage_s=args.cloud_outage)
        except ConfigError as exc:
            print(f"configuration error: {exc}", file=sys.stderr)
            return EX_CONFIG
    site_file = _site_file(config_path)
    if site_file is None:
        print(
            "no site: give --config FILE, or start the demo first (python run.py)", file=sys.stderr
        )
        return 2
    try:
        config: SiteConfig = load_site(site_file)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.command == "status":
        from cli import status

        return _to_stdout(lambda: status.main(config, as_json=args.json, watch=args.watch))
    if args.command in ("explain", "audit"):
        from cli import audit

        return _to_stdout(lambda: audit.run(config, args))
    _setup_logging(config.runtime.log_level)
    if args.single_process or config.runtime.mode == "single-process":
        from supervisors.single import run_single

        return asyncio.run(run_single(config))
    from supervisors.launcher import NodeLauncher

    return NodeLauncher(config).run()


if __name__ == "__main__":
    sys.exit(main())
