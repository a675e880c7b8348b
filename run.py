#!/usr/bin/env python3
"""Edge runtime for an EV charging site.

    python run.py                          the embedded demo site (simulated peers on loopback)
    python run.py --config FILE            a real site
    python run.py status [--json] [--watch] [--config FILE]
    python run.py explain CHARGE_POINT [--at TIME] [--window S] [--json] [--config FILE]
    python run.py audit [--since TIME] [--until TIME] [--charge-point ID] [--kind KIND]
                        [--limit N] [--json] [--config FILE]

See README.md for the configuration reference and deployment.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from config.fields import ConfigError
from config.schema import SiteConfig, load_site

REPO = Path(__file__).resolve().parent
DEMO_CONFIG = REPO / "config" / "demo-site.toml"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run.py", description="Edge runtime for an EV charging site.")
    p.add_argument("--config", type=Path, help="site configuration (TOML); default: the demo site")
    p.add_argument(
        "--single-process",
        action="store_true",
        help="run every node's actor tree in this process, without Thespian",
    )
    sub = p.add_subparsers(dest="command")
    status = sub.add_parser("status", help="show the supervision tree and the site")
    status.add_argument("--config", type=Path, dest="sub_config")
    status.add_argument("--json", action="store_true", help="the stable JSON document")
    status.add_argument("--watch", action="store_true", help="refresh every second")
    from cli import audit

    audit.add_explain_arguments(sub.add_parser("explain", help=audit.EXPLAIN_HELP))
    audit.add_audit_arguments(sub.add_parser("audit", help=audit.AUDIT_HELP))
    return p


def _load(path: Path | None) -> SiteConfig:
    return load_site(path or DEMO_CONFIG)


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s launcher %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        config = _load(getattr(args, "sub_config", None) or args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG: systemd should not restart-loop on a bad file
    if args.command == "status":
        from cli import status

        return status.main(config, as_json=args.json, watch=args.watch)
    if args.command in ("explain", "audit"):
        from cli import audit

        return audit.run(config, args)
    _setup_logging(config.runtime.log_level)
    if args.single_process or config.runtime.mode == "single-process":
        from supervisors.single import run_single

        return asyncio.run(run_single(config))
    from supervisors.launcher import NodeLauncher

    return NodeLauncher(config).run()


if __name__ == "__main__":
    sys.exit(main())
