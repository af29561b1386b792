"""`infra`: the engine-free runner. Exit codes: 0 ok, 2 bad input or a failing program."""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections import Counter
from pathlib import Path

from platform_infra.infra.check import add_check_arguments, cmd_check
from platform_infra.infra.checklist import add_checklist_arguments, cmd_checklist
from platform_infra.infra.daytwo.autoscale import add_autoscale_arguments, cmd_autoscale
from platform_infra.infra.daytwo.autoscale_review import add_review_arguments, cmd_review
from platform_infra.infra.daytwo.autoscale_simulate import add_simulate_arguments, cmd_simulate
from platform_infra.infra.daytwo.backup import add_backup_commands
from platform_infra.infra.daytwo.drill_failover import add_failover_arguments
from platform_infra.infra.daytwo.drill_load import add_load_arguments
from platform_infra.infra.daytwo.drills import add_alerts_arguments
from platform_infra.infra.daytwo.restore import add_restore_arguments
from platform_infra.infra.daytwo.verify import add_verify_arguments, cmd_verify, stack_evidence
from platform_infra.infra.diagram import add_diagram_arguments, cmd_diagram
from platform_infra.infra.mockrun import DEFAULT_PROJECT, ProgramInputError, ProgramRun, redact, run_project
from platform_infra.infra.version import version_line

REPO_ROOT = Path(__file__).resolve().parent.parent


def program_error(exc: BaseException) -> str:
    """One line for a program that failed: its own message for config errors and a provider's Check refusal (as
    preview prints it), the type otherwise."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if type(exc).__name__ in ("RunError", "SettingsError", "ComponentArgsError", "ProviderCheckError"):
        return message
    return f"program failed: {type(exc).__name__}: {message}"


def plan_report(run: ProgramRun) -> dict:
    return {
        "project": run.project,
        "stack": run.stack,
        "resources": [
            {"urn": r.urn, "type": r.type, "name": r.name, "parent": r.parent, "inputs": redact(r.inputs)}
            for r in run.resources
        ],
        "outputs": redact(run.stack_outputs),
        "counts": dict(sorted(Counter(r.type for r in run.resources).items())),
    }


def plan_text(run: ProgramRun) -> str:
    children: dict[str | None, list] = {}
    for resource in run.resources:
        children.setdefault(resource.parent, []).append(resource)
    lines = [f"Plan for stack {run.stack} of project {run.project}: {len(run.resources)} resources"]

    def walk(parent: str | None, depth: int) -> None:
        for resource in children.get(parent, []):
            lines.append(f"{'  ' * (depth + 1)}{resource.type}  {resource.name}")
            walk(resource.urn, depth + 1)

    walk(None, 0)
    lines.append("Resources by type:")
    for type_, count in sorted(Counter(r.type for r in run.resources).items()):
        lines.append(f"  {count:5d}  {type_}")
    if run.stack_outputs:
        lines.append("Outputs:")
        for key, value in sorted(redact(run.stack_outputs).items()):
            lines.append(f"  {key}: {json.dumps(value)}")
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    run = run_project(args)
    print(json.dumps(plan_report(run), indent=2) if args.format == "json" else plan_text(run))
    return 0


def add_program_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="stack name: reads Pulumi.<stack>.yaml")
    parser.add_argument("--project", default=DEFAULT_PROJECT,
                        help="directory holding Pulumi.yaml (default: this repository in a checkout, else the "
                             "current directory)")


class VersionAction(argparse.Action):
    """`--version`: the version and commit, looked up only when asked (git is not run for every command)."""

    def __init__(self, option_strings, dest, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and commit, and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_line())
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="infra", description=__doc__)
    parser.add_argument("--version", action=VersionAction)
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="run the Pulumi program under mocks and print its resource tree")
    add_program_arguments(plan)
    plan.add_argument("--format", choices=["text", "json"], default="text")
    plan.set_defaults(handler=cmd_plan)
    check = commands.add_parser("check", help="evaluate the policy pack against the stack, offline, as preview does")
    add_program_arguments(check)
    add_check_arguments(check)
    check.set_defaults(handler=cmd_check)
    checklist = commands.add_parser("checklist", help="the production checklist for the stack: status and coverage")
    add_program_arguments(checklist)
    add_checklist_arguments(checklist)
    checklist.set_defaults(handler=functools.partial(cmd_checklist, read_evidence=stack_evidence))
    diagram = commands.add_parser("diagram", help="the architecture the stack deploys, from its resource graph")
    add_program_arguments(diagram)
    add_diagram_arguments(diagram)
    diagram.set_defaults(handler=cmd_diagram)
    backup_actions = add_backup_commands(commands, add_program_arguments)
    add_restore_arguments(backup_actions.add_parser("restore", help="return the running stack's PostgreSQL to a point "
                                                    "in time (--plan first), then verify its first hour"),
                          add_program_arguments)
    verify = commands.add_parser("verify", help="the checklist's post-deployment lines, checked on the running stack")
    add_program_arguments(verify)
    add_verify_arguments(verify)
    verify.set_defaults(handler=cmd_verify)
    drill = commands.add_parser("drill", help="deliberate failures and load on the running stack, bounded and "
                                "restored (alerts, load, failover)")
    kinds = drill.add_subparsers(dest="drill_command", required=True)
    add_alerts_arguments(kinds.add_parser("alerts", help="stop a service, await its alert fired, delivered and "
                                          "resolved"), add_program_arguments)
    add_load_arguments(kinds.add_parser("load", help="a bounded load through the edge: throughput, latency, 429s"),
                       add_program_arguments)
    add_failover_arguments(kinds.add_parser("failover", help="under load: an api-gateway replica and a worker "
                                            "crash, PostgreSQL restarts; errors, recovery times, lost jobs"),
                           add_program_arguments)
    autoscale = commands.add_parser("autoscale", help="scale a Swarm service on Kafka consumer lag (a controller)")
    add_autoscale_arguments(autoscale)
    autoscale.set_defaults(handler=cmd_autoscale)
    autoscale_commands = autoscale.add_subparsers(dest="autoscale_command")
    simulate = autoscale_commands.add_parser(
        "simulate", help="replay a lag trace through the controller's decision, offline")
    add_simulate_arguments(simulate)
    simulate.set_defaults(handler=cmd_simulate)
    review = autoscale_commands.add_parser(
        "review", help="replay the window's observed lag through the stack's policy; a dated evidence record")
    add_review_arguments(review)
    review.set_defaults(handler=cmd_review)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ProgramInputError as exc:
        print(f"infra: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 a failing program is reported, not re-raised
        print(f"infra: error: {program_error(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
