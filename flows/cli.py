"""The `towerflow` command: one subcommand per function, each registered in `build_parser`.

This module imports neither TensorFlow nor Prefect; a command that needs them imports them inside
its own function, so `towerflow validate` stays fast. Exit codes: 0 success, 1 failure,
2 invalid config or usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from trainer.validation import ValidationReport, validate_config

EXIT_OK = 0
EXIT_INVALID = 2


def validate_command(args: argparse.Namespace) -> int:
    """`towerflow validate CONFIG`: report findings; exit 0 when valid (warnings allowed), 2 otherwise."""
    report = validate_config(args.config, args.overrides)
    if args.json:
        print(report.model_dump_json(indent=2))
    elif report.spec is None:
        for finding in report.findings:
            where = f"{finding.field}: " if finding.field else ""
            print(f"{report.source}: {where}{finding.message}", file=sys.stderr)
    else:
        print(render_report(report))
    return EXIT_OK if report.ok else EXIT_INVALID


def render_report(report: ValidationReport) -> str:
    """Findings grouped by severity, one line each (field path, message, code), suggestions indented."""
    errors, warnings = report.errors, report.warnings
    verdict = "valid" if report.ok else "INVALID"
    lines = [f"{report.source}: {verdict} ({_count(errors, 'error')}, {_count(warnings, 'warning')})"]
    for title, findings in (("Errors", errors), ("Warnings", warnings)):
        if findings:
            lines.append(f"{title}:")
        for finding in findings:
            lines.append(f"  {finding.field}: {finding.message} [{finding.code}]")
            if finding.suggestion:
                lines.append(f"      suggestion: {finding.suggestion}")
    if report.spec is not None:
        lines.append(f"experiment {report.spec.name!r}, config hash {report.config_hash}")
    return "\n".join(lines)


def _count(items: Sequence[object], noun: str) -> str:
    return f"{len(items)} {noun}{'' if len(items) == 1 else 's'}"


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """CONFIG and repeated --set key.path=value, shared by every command that takes a config."""
    parser.add_argument("config", metavar="CONFIG", help="experiment spec: a YAML/JSON path or URI (gs://...)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. --set training.learning_rate=0.01 (repeatable)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="towerflow", description="Train and evaluate two-tower retrieval models, orchestrated by Prefect."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    validate = commands.add_parser(
        "validate",
        help="check a config (and its data's columns) without training",
        description="Check a config and its data's columns. Exit 0 when valid (warnings allowed), 2 otherwise.",
    )
    _add_config_arguments(validate)
    validate.add_argument("--json", action="store_true", help="print a machine-readable report")
    validate.set_defaults(handler=validate_command)

    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
