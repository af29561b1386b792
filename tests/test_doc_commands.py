"""Every command a reader is shown works: the shell blocks of README.md and docs/*.md are parsed (new blocks
are picked up by themselves) and each line is exercised. `infra` lines run here, offline ones to success,
those that need a store, a database, Prometheus or a Swarm service to exit 2 with one line naming what to set;
`make` lines name real targets and the quick ones run; `pulumi` lines use only the flags the Pulumi CLI
defines. A synopsis (`[--format text|json]`, `(--policy FILE | --stack NAME)`) runs in its plainest form."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

from tests.conftest import require_tool

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SHELL_BLOCKS = {"sh", "bash", "shell", "console"}
PLACEHOLDER = re.compile(r"\b[A-Z]{3,}\b|<[^>]+>")
# Commands shown for an operator on the running platform (inside its containers): not run here.
OPERATOR_PROGRAMS = {"docker", "cat", "rm", "curl", "openssl", "/opt/kafka/bin/kafka-topics.sh"}
# Offline commands run to success. Any other either succeeds here too, or needs what this test withholds
# (credentials, a store, PostgreSQL, Prometheus, a Swarm service) and says what, in one line, with exit 2.
OFFLINE = {"plan", "check", "checklist", "diagram", "--version"}
NAMES_WHAT_TO_SET = re.compile(r"^infra: error: (environment: |store unreachable|--prometheus-url: |--alertmanager-url: |--endpoint: |--grafana-url: |--service: no Swarm "
                               r"service|--docker-host: )")

# The Pulumi CLI's flags, per command, as its source defines them (cobra `Flags()`/`PersistentFlags()` calls):
# pulumi/pulumi 1b5949891b3cefcb9974752b24a5ecef0acc86c8, pkg/cmd/pulumi/{auth/login.go, config/config.go,
# operations/{destroy,preview,refresh,up}.go, stack/stack*.go, state/state_protect.go, pulumi.go (global)}.
PULUMI_FLAGS = {
    "login": {"--cloud-url", "--default-org", "--insecure", "--interactive", "--local", "--oidc-expiration",
              "--oidc-org", "--oidc-team", "--oidc-token", "--oidc-user", "-c", "-l"},
    "config": {"--config-file", "--dest", "--force", "--json", "--open", "--path", "--plaintext", "--raw", "--secret",
               "--show-secrets", "--stack", "--type", "-d", "-f", "-j", "-s"},
    "destroy": {"--client", "--config", "--config-file", "--config-path", "--continue-on-error", "--debug", "--diff",
                "--exclude", "--exclude-protected", "--json", "--message", "--parallel", "--preview-only", "--refresh",
                "--remove", "--run-program", "--show-config", "--skip-preview", "--stack", "--suppress-outputs",
                "--target", "--target-dependents", "--yes", "-c", "-d", "-f", "-j", "-m", "-p", "-r", "-s", "-t",
                "-x", "-y"},
    "preview": {"--client", "--config", "--config-file", "--config-path", "--debug", "--diff", "--exclude",
                "--expect-no-changes", "--json", "--message", "--parallel", "--policy-pack", "--policy-pack-config",
                "--refresh", "--replace", "--run-program", "--save-plan", "--show-config", "--show-reads",
                "--show-replacement-steps", "--show-sames", "--show-secrets", "--stack", "--suppress-outputs",
                "--target", "--target-dependents", "--target-replace", "-c", "-d", "-j", "-m", "-p", "-r", "-s",
                "-t", "-x"},
    "refresh": {"--client", "--config", "--config-file", "--debug", "--diff", "--expect-no-changes", "--json",
                "--message", "--parallel", "--preview-only", "--run-program", "--skip-preview", "--stack",
                "--target", "--yes", "-c", "-d", "-f", "-j", "-m", "-p", "-s", "-t", "-x", "-y"},
    "up": {"--client", "--config", "--config-file", "--config-path", "--continue-on-error", "--debug", "--diff",
           "--exclude", "--expect-no-changes", "--json", "--message", "--parallel", "--plan", "--policy-pack",
           "--policy-pack-config", "--refresh", "--replace", "--run-program", "--secrets-provider", "--show-config",
           "--show-reads", "--show-replacement-steps", "--show-sames", "--show-secrets", "--skip-preview", "--stack",
           "--strict", "--suppress-outputs", "--target", "--target-dependents", "--target-replace", "--yes", "-c",
           "-d", "-f", "-j", "-m", "-p", "-r", "-s", "-t", "-y"},
    "stack export": {"--file", "--show-secrets", "--stack", "--version", "-s"},
    "stack history": {"--full-dates", "--page", "--page-size", "--show-secrets", "--stack", "-s"},
    "stack output": {"--json", "--shell", "--show-secrets", "--stack", "-j", "-s"},
    "stack select": {"--create", "--secrets-provider", "--stack", "-c", "-s"},
    "stack": {"--show-ids", "--show-name", "--show-secrets", "--show-urns", "--stack", "-i", "-s", "-u"},
    "state protect": {"--all", "--stack", "--yes", "-s", "-y"},
}
PULUMI_GLOBAL_FLAGS = {"--color", "--cwd", "--disable-integrity-checking", "--emoji", "--fully-qualify-stack-names",
                       "--logflow", "--logtostderr", "--non-interactive", "--tracing", "--verbose", "-C", "-e", "-v"}


@dataclass(frozen=True)
class Shown:
    doc: str
    line: str

    def __str__(self) -> str:
        return f"{self.doc}: {self.line}"


def shell_blocks(text: str) -> list[str]:
    return [token.content for token in MarkdownIt().parse(text)
            if token.type == "fence" and token.info.strip() in SHELL_BLOCKS]


def shell_lines(text: str) -> list[str]:
    """Command lines of a document's shell blocks: continuations joined, comments and here-documents left out."""
    lines = []
    for block in shell_blocks(text):
        heredoc = None
        for line in block.replace("\\\n", " ").splitlines():
            if heredoc is not None:
                heredoc = None if line.strip() == heredoc else heredoc
                continue
            words = shlex.split(line, comments=True)
            if words:
                lines.append(" ".join(shlex.quote(w) if " " in w else w for w in words))
                marker = re.search(r"<<-?'?(\w+)'?", line)
                heredoc = marker.group(1) if marker else None
    return lines


def shown_commands() -> list[Shown]:
    found = {Shown(str(doc.relative_to(REPO_ROOT)), line) for doc in DOCS for line in shell_lines(doc.read_text())}
    return sorted(found, key=lambda s: (s.doc, s.line))


def inline_pulumi_commands() -> list[Shown]:
    """`pulumi ...` in a document's prose (code spans): their flags are checked too."""
    found = set()
    for doc in DOCS:
        for token in MarkdownIt().parse(doc.read_text()):
            for child in token.children or []:
                if child.type == "code_inline" and child.content.startswith("pulumi "):
                    found.add(Shown(str(doc.relative_to(REPO_ROOT)), child.content))
    return sorted(found, key=lambda s: (s.doc, s.line))


def plainest(words: list[str]) -> list[str]:
    """A synopsis as a runnable command: optional groups with a placeholder dropped, others kept; of
    alternatives (`a|b`, `(x | y)`) the first."""
    text = " ".join(words)
    while re.search(r"\[[^\[\]]*\]", text):
        text = re.sub(r"\[([^\[\]]*)\]", lambda m: "" if PLACEHOLDER.search(m.group(1)) else m.group(1), text)
    text = re.sub(r"\(([^()|]*)\|[^()]*\)", r"\1", text)
    return [word.split("|")[0] for word in text.split()]


def program(shown: Shown) -> str:
    words = [w for w in shlex.split(shown.line) if not re.fullmatch(r"[A-Z_]+=\S*", w)]
    return words[0]


COMMANDS = shown_commands()


def by_program(*names: str) -> list[Shown]:
    return [c for c in COMMANDS if program(c) in names]


def test_every_shown_command_is_one_this_test_knows_how_to_exercise():
    assert COMMANDS, "no shell blocks found"
    unknown = [str(c) for c in COMMANDS if program(c) not in {"make", "infra", "pulumi", "source", "python",
                                                              *OPERATOR_PROGRAMS}]
    assert unknown == []


def test_a_new_block_is_picked_up_and_its_synopsis_made_runnable():
    text = ("Intro\n\n```sh\ninfra verify --stack prod [--format text|json] [--since DATE]   # new\n"
            "cat > /tmp/x <<'EOF'\nnot a command\nEOF\nmake preview \\\n  STACK=prod\n```\n")
    assert shell_lines(text) == ["infra verify --stack prod [--format text|json] [--since DATE]", "cat > /tmp/x <<EOF",
                                 "make preview STACK=prod"]
    assert plainest(shlex.split(shell_lines(text)[0])) == ["infra", "verify", "--stack", "prod", "--format", "text"]
    synopsis = shlex.split("infra autoscale --service S (--policy p.yaml | --stack prod) [--once] [--interval SECONDS]")
    assert plainest(synopsis) == ["infra", "autoscale", "--service", "S", "--policy", "p.yaml", "--once"]


def environment_without_credentials(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PG", "DOCKER_"))}
    return env | {"HOME": str(home), "AWS_EC2_METADATA_DISABLED": "true"}


@pytest.mark.parametrize("shown", by_program("infra"), ids=str)
def test_infra_command_works_as_shown(shown, tmp_path):
    words = shlex.split(shown.line)
    env = environment_without_credentials(tmp_path)
    while re.fullmatch(r"[A-Z_]+=\S*", words[0]):
        key, value = words.pop(0).split("=", 1)
        env[key] = value
    if ">" in words:  # the shown redirection: the output goes to a scratch file
        words = words[: words.index(">")]
    words = plainest(words)
    if PLACEHOLDER.search(" ".join(words)):
        pytest.fail(f"a required placeholder is left, nothing to run: {shown}")
    policy = tmp_path / "policy.yaml"  # the scaling policy file a synopsis names
    policy.write_text(yaml.safe_dump({"min_replicas": 1, "max_replicas": 4, "consumer_group": "job-workers",
                                      "topic": "jobs"}))
    words = [str(policy) if w == "policy.yaml" else w for w in words]
    if words[1] == "autoscale" and words[2].startswith("--") and "--once" not in words:
        words += ["--once", "--dry-run"]  # the controller otherwise runs until stopped
    result = subprocess.run([str(Path(sys.executable).parent / "infra"), *words[1:]], cwd=REPO_ROOT, env=env,
                            capture_output=True, text=True, timeout=180, check=False)
    if words[1] in OFFLINE or result.returncode != 2:
        expected = 1 if "examples/insecure" in shown.line else 0
        assert result.returncode == expected, f"{shown}\n{result.stderr[-2000:]}"
        assert result.stdout.strip(), shown
    else:
        errors = [line for line in result.stderr.splitlines() if line.startswith("infra: error: ")]
        assert len(errors) == 1 and NAMES_WHAT_TO_SET.match(errors[0]), f"{shown}\n{result.stderr}"
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("shown", by_program("make"), ids=str)
def test_make_command_names_a_real_target_and_the_quick_ones_run(shown):
    require_tool("make")
    words = shlex.split(shown.line)
    planned = subprocess.run([*words, "-n"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert planned.returncode == 0, f"{shown}\n{planned.stderr}"
    if set(words[1:]) & {"preview", "plan", "check"}:
        run = subprocess.run(words, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=False)
        assert run.returncode == 0, f"{shown}\n{run.stderr[-2000:]}"


@pytest.mark.parametrize("shown", by_program("source", "python"), ids=str)
def test_setup_and_module_commands_name_what_exists(shown):
    words = shlex.split(shown.line)
    if words[0] == "source":
        assert (REPO_ROOT / words[1]).is_file(), shown
    else:
        assert words[1] == "-m", shown
        assert (REPO_ROOT / (words[2].replace(".", "/") + ".py")).is_file(), shown


def pulumi_flag_problems(line: str) -> list[str]:
    words = [w for w in shlex.split(line, comments=True) if w != "pulumi"]
    positional = [w for w in words if not w.startswith("-")]
    command = next((c for c in sorted(PULUMI_FLAGS, key=len, reverse=True)
                    if positional[: len(c.split())] == c.split()), None)
    if command is None:
        return [f"pulumi {' '.join(positional[:2])}: not a command this test knows"]
    allowed = PULUMI_FLAGS[command] | PULUMI_GLOBAL_FLAGS
    return [f"pulumi {command} {flag}" for flag in (w.split("=", 1)[0] for w in words if w.startswith("-"))
            if flag not in allowed]


@pytest.mark.parametrize("shown", by_program("pulumi") + inline_pulumi_commands(), ids=str)
def test_pulumi_command_uses_only_flags_the_cli_defines(shown):
    assert pulumi_flag_problems(shown.line) == [], shown


def test_the_pulumi_check_finds_a_flag_the_cli_does_not_have():
    assert pulumi_flag_problems("pulumi preview --policy-packs policies") == ["pulumi preview --policy-packs"]
    assert pulumi_flag_problems("pulumi stack select prod --create") == []
    assert pulumi_flag_problems("pulumi stack output --show-secret") == ["pulumi stack output --show-secret"]
    assert pulumi_flag_problems("pulumi deploy") == ["pulumi deploy: not a command this test knows"]


def test_every_make_target_is_in_the_readme_and_plans():
    """The README's table of targets covers the Makefile's, and each one's recipe is sound (`make -n`)."""
    require_tool("make")
    makefile = (REPO_ROOT / "Makefile").read_text()
    targets = [t for line in re.findall(r"^\.PHONY: (.+)$", makefile, re.MULTILINE) for t in line.split()
               if not t.startswith("$(")]
    assert "preview" in targets
    readme = (REPO_ROOT / "README.md").read_text()
    assert [t for t in targets if f"`make {t}`" not in readme] == []
    for target in targets:
        planned = subprocess.run(["make", "-n", target], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
                                 check=False)
        assert planned.returncode == 0, f"make {target}: {planned.stderr}"
