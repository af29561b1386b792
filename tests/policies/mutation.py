"""Execute a cosmic-ray session fast: replay the rules' recorded calls against each mutant, and run only the
tests that could tell it apart, in a forked child.

cosmic-ray's own `exec` edits the module on disk and starts the whole test command once per mutant (thousands
of runs of ~20 s here). This keeps cosmic-ray's mutation operators and its session database (so `cr-report`
gives the score) and changes only how a mutant is tested:

1. The session's tests (the paths in the config's test-command) run once, in this process, under coverage.py
   with one dynamic context per test: that maps each line of the mutated modules to the tests executing it
   (a line run at import, such as a constant, a decorator or a `def`, to every test). The run must pass.
   Where the mutated modules register policy rules, every rule's calls are recorded too, with their answers
   (tests/policies/replay.py), and replayed once, unmutated, to map each line to the rules executing it.
2. Per pending mutant, cosmic-ray's `mutate_code` gives the mutated source (its operators, its occurrence).
   Mutants inside annotations are recorded skipped: every rule module defers annotations, nothing reads them.
3. A forked child imports the rule modules afresh, the mutated one served from memory through a meta-path
   finder (the file on disk is never edited, so workers run side by side), and makes the recorded calls
   again: those of the rules executing the mutant's lines, or all of them for a line run at import once the
   registry is seen unchanged (a changed registration, such as an option's default, runs every covering
   test). Every answer the same: no test can tell the mutant from the original, it survived.
4. Otherwise a forked child runs, with `pytest -x` under a timeout, only the tests that made a call answered
   differently (all covering tests where nothing was replayed), those that killed most mutants so far first.
   Third-party modules stay imported from the parent; the project's own are imported afresh in the child.
5. The outcome goes back into the session as cosmic-ray records it: killed (a test failed, or the timeout
   hit: cosmic-ray counts a timeout as killed too), survived (the tests passed, the replay answered the
   same, or no test executes the line).

    cosmic-ray init tests/policies/cosmic-ray.toml pack.sqlite
    nice -n 10 .venv/bin/python -m tests.policies.mutation tests/policies/cosmic-ray.toml pack.sqlite
    cr-report --show-output pack.sqlite

After adding tests for the survivors, `--survivors --equivalent tests/policies/mutation-equivalent.md` tests the
survived mutants again but for the listed equivalent ones; `--score` prints killed / tested and killed /
(tested - equivalent). `--no-replay` runs every mutant's covering tests instead of replaying first (to check
the replay's verdicts on a `--sample`). Run it from the directory `cosmic-ray init` ran in (the mutants' paths
are relative to it).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib.abc
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from tests.policies.replay import ATTRIBUTES, Call, Recorder, by_rule, replay, rule_modules

FAILED = re.compile(r"^FAILED (.+?)(?: - .*)?$", re.MULTILINE)  # pytest's short summary of a failed test
IMPORTED = "(import)"  # the context of lines run outside any test: when a module loads
RECORDED_MODULES: dict[str, object] = {}  # the project's modules as the recorded run imported them

# How long a mutant may take, from the time its tests took unmutated: slower children (shared machine,
# fresh imports) are normal, a mutant that loops forever is not.
TIMEOUT_FACTOR = 5.0
TIMEOUT_BASE_SECONDS = 60.0


def test_paths(test_command: str) -> list[str]:
    """The tests `cosmic-ray exec` would run: the test-command's path arguments."""
    return [arg for arg in shlex.split(test_command) if arg.endswith((".py", "/")) or "::" in arg]


def module_name(path: Path, package: str) -> str:
    """`policies/rules/edge.py` -> `platform_infra.policies.rules.edge`: the working directory is `package`."""
    parts = path.with_suffix("").parts
    return ".".join((package, *(parts[:-1] if parts[-1] == "__init__" else parts)))


def mutant_lines(source: str, start: int, end: int) -> set[int]:
    """The mutant's lines, and the first line of each statement they belong to (where coverage counts it)."""
    from coverage.parser import PythonParser

    parser = PythonParser(text=source)
    parser.parse_source()
    return set(range(start, end + 1)) | {parser.first_line(line) for line in range(start, end + 1)}


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) positions of every annotation: under `from __future__ import annotations` (every rule
    module) an annotation is a string nothing evaluates, so mutating one changes nothing."""
    import ast

    tree = ast.parse(source)
    if not any(isinstance(node, ast.ImportFrom) and node.module == "__future__"
               and any(alias.name == "annotations" for alias in node.names) for node in tree.body):
        return []
    found = []
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, ast.arg | ast.AnnAssign):
            annotations.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations.append(node.returns)
        found += [((a.lineno, a.col_offset), (a.end_lineno, a.end_col_offset)) for a in annotations if a is not None]
    return found


def in_annotation(mutation, spans) -> bool:
    start, end = tuple(mutation.start_pos), tuple(mutation.end_pos)
    return any(first <= start and end <= last for first, last in spans)


@dataclass
class CoverageMap:
    tests: list[str]  # node ids, in collection order
    durations: dict[str, float]  # seconds each test took (setup, call, teardown)
    lines: dict[str, dict[int, set[str]]]  # module path -> line -> contexts that executed it

    def contexts(self, path: str, lines: set[int]) -> set[str]:
        return contexts_of(self.lines, path, lines)

    def tests_for(self, path: str, lines: set[int]) -> list[str]:
        """The tests executing any of the lines (every test, for a line run at import); Session.start_tests
        orders them."""
        contexts = self.contexts(path, lines)
        return self.tests if IMPORTED in contexts or "" in contexts else [t for t in self.tests if t in contexts]


def contexts_of(executed: dict[str, dict[int, set[str]]], path: str, lines: set[int]) -> set[str]:
    """The coverage contexts (tests, or rule ids) that executed any of the lines."""
    by_line = executed.get(path, {})
    return set().union(*(by_line.get(line, set()) for line in lines))


class PerTestContext:
    """pytest plugin: coverage's dynamic context is the running test's node id."""

    def __init__(self, cov, recorder: Recorder | None) -> None:
        self.cov, self.recorder = cov, recorder
        self.tests: list[str] = []
        self.durations: dict[str, float] = {}
        self.failed: list[str] = []

    def pytest_runtest_protocol(self, item, nextitem):
        self.tests.append(item.nodeid)
        self.cov.switch_context(item.nodeid)
        if self.recorder is not None:
            self.recorder.start_test(len(self.tests) - 1)

    def pytest_runtest_logreport(self, report):
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        if report.failed:
            self.failed.append(report.nodeid)
        if report.when == "teardown":
            self.cov.switch_context(IMPORTED)
            if self.recorder is not None:
                self.recorder.end_test()


def _lines(cov) -> dict[str, dict[int, set[str]]]:
    data = cov.get_data()
    return {
        str(Path(file).relative_to(Path.cwd())): {line: set(ctx) for line, ctx in data.contexts_by_lineno(file).items()}
        for file in data.measured_files()
    }


def build_map(module_path: str, package: str, tests: list[str]) -> tuple[CoverageMap, RuleCalls | None]:
    """Run the tests once under coverage, in this process (which thereby imports what they need); where the
    mutated modules register policy rules, also record every rule's calls (see tests/policies/replay.py)."""
    import coverage
    import pytest

    root = Path(module_path).resolve()
    cov = coverage.Coverage(data_file=None, include=[str(root), f"{root}/*"])
    cov.start()
    cov.switch_context(IMPORTED)
    importlib.import_module(module_name(Path(module_path), package))  # every mutated module, before any test
    rules = getattr(sys.modules.get(f"{package}.policies.registry"), "RULES", None)
    recorder = Recorder() if rules else None
    if recorder is not None:
        recorder.install(rules)
    plugin = PerTestContext(cov, recorder)
    status = pytest.main(["-q", "-p", "no:cacheprovider", *tests], plugins=[plugin])
    cov.stop()
    if status != 0 or plugin.failed:
        raise SystemExit(f"the unmutated tests must pass first (pytest exit {status}; failed: {plugin.failed})")
    coverage_map = CoverageMap(plugin.tests, plugin.durations, _lines(cov))
    return coverage_map, None if recorder is None else RuleCalls.of(recorder, rules, root)


@dataclass
class RuleCalls:
    """Every distinct call of the rules in the unmutated tests, and which rules execute each line."""

    calls: dict[str, list[Call]]  # rule id -> its calls
    lines: dict[str, dict[int, set[str]]]  # module path -> line -> rule ids whose calls execute it
    unreplayable: set[str]  # rules that answered the same call differently: their mutants run their tests
    registry: dict[str, str]  # rule id -> what the registry holds of it but its functions (see `registered`)
    seconds: dict[str, float]  # rule id -> how long replaying its calls took (under coverage: an upper bound)

    @classmethod
    def of(cls, recorder: Recorder, rules, root: Path) -> RuleCalls:
        """Replays each rule's calls, unmutated, under coverage with the rule's id as context: that maps the
        lines to the rules, and shows every answer reproducible (the premise of the replay)."""
        import coverage

        calls = by_rule(recorder.calls)
        originals = {rule_id: SimpleNamespace(**{name: getattr(getattr(rule, name), "__wrapped__", None)
                                                 for name in ATTRIBUTES}) for rule_id, rule in rules.items()}
        cov = coverage.Coverage(data_file=None, include=[str(root), f"{root}/*"])
        unreplayable, seconds = set(), {}
        cov.start()
        for rule_id, made in calls.items():
            cov.switch_context(rule_id)
            started = time.monotonic()
            if replay(made, originals)[1]:
                unreplayable.add(rule_id)
            seconds[rule_id] = time.monotonic() - started
        cov.stop()
        return cls(calls, _lines(cov), unreplayable, registered(rules), seconds)

    def rules_for(self, path: str, lines: set[int]) -> set[str]:
        return contexts_of(self.lines, path, lines)


class MutantFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves one module's mutated source from memory; every other import goes on as usual."""

    def __init__(self, name: str, origin: Path, source: str) -> None:
        self.name, self.origin, self.source = name, origin, source

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        is_package = self.origin.name == "__init__.py"
        return importlib.util.spec_from_file_location(
            fullname, self.origin, loader=self,
            submodule_search_locations=[str(self.origin.parent)] if is_package else None)

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        exec(compile(self.source, str(self.origin), "exec"), module.__dict__)  # noqa: S102 the mutant, as import would


def forget_project_modules() -> dict[str, object]:
    """Drop the project's modules (anything loaded from the working directory): each child imports them anew,
    the mutated one from memory. Returns what was dropped."""
    here, environment = str(Path.cwd()), sys.prefix  # the virtualenv may live in the working directory
    dropped = {}
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if file.startswith(here) and not file.startswith(environment):
            dropped[name] = sys.modules.pop(name)
    importlib.invalidate_caches()
    return dropped


def registered(rules) -> dict[str, str]:
    """Each rule's registration but its check and scope: a mutant run at import (a decorator, an option's
    default, a constant) may change it, and then the recorded calls (made with the old options) say nothing."""
    return {rule_id: repr([(f.name, getattr(rule, f.name)) for f in dataclasses.fields(rule)
                           if f.name not in ATTRIBUTES]) for rule_id, rule in rules.items()}


def start_replay(package: str, origin: Path, source: str, calls: list[Call], workdir: Path,
                 registry_before: dict[str, str] | None = None) -> int:
    """Fork a child replaying `calls` against the rules imported afresh with the mutant; it writes
    workdir/replay.json: the tests (bits) that made a call answered differently, and how many calls. With
    `registry_before` (a mutant run at import), a registration that changed is reported instead."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setpgid(0, 0)
        out = os.open(workdir / "output", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        sys.modules.update(RECORDED_MODULES)  # the modules the recorded subjects' classes come from
        for name in rule_modules(package):
            del sys.modules[name]
        registry = sys.modules[f"{package}.policies.registry"]
        registry.RULES.clear()
        sys.meta_path.insert(0, MutantFinder(module_name(origin.relative_to(Path.cwd()), package), origin, source))
        importlib.import_module(f"{package}.policies.rules")
        if registry_before is not None:
            after = registered(registry.RULES)
            changed = sorted(rule for rule in registry_before.keys() | after.keys()
                             if registry_before.get(rule) != after.get(rule))
            if changed:
                summary = f"replay: the registration of {', '.join(changed[:5])} changed: every covering test runs"
                (workdir / "replay.json").write_text(json.dumps({"registry": changed, "summary": summary}))
                os._exit(0)
        started = time.monotonic()
        bits, differing, first = replay(calls, registry.RULES)
        rules = sorted({call.rule for call in calls})
        summary = (f"replay: {differing} of {len(calls)} calls of {len(rules)} rules ({', '.join(rules[:5])}"
                   f"{', ...' if len(rules) > 5 else ''}) answered differently, in {time.monotonic() - started:.1f} s"
                   + (f"; first: {first[:1500]}" if first else ""))
        (workdir / "replay.json").write_text(json.dumps({"tests": bits, "calls": differing, "summary": summary}))
        os._exit(0)
    except BaseException:  # noqa: BLE001 the child must never return into the parent's loop
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)


def read_replay(workdir: Path) -> dict | None:
    try:
        return json.loads((workdir / "replay.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def start_child(name: str, origin: Path, source: str, tests: list[str], workdir: Path) -> int:
    """Fork a child running `tests` against the mutated module; its output goes to workdir/output."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setpgid(0, 0)  # its own group: a timeout kills whatever it started
        out = os.open(workdir / "output", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(out, 1)
        os.dup2(out, 2)
        sys.meta_path.insert(0, MutantFinder(name, origin, source))
        import pytest

        status = pytest.main(["-x", "-q", "-p", "no:cacheprovider",
                              f"--basetemp={workdir / 'tmp'}", *tests])
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(status))
    except BaseException:  # noqa: BLE001 the child must never return into the parent's loop
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)


def tail(path: Path, limit: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except FileNotFoundError:
        return ""


@dataclass
class Job:
    item: object  # the cosmic-ray work item
    diff: str
    deadline: float
    workdir: Path
    mutated: str
    tests: list[str]  # the tests covering its lines
    replaying: bool  # a replay child; else a child running tests
    started: float = 0.0


class Session:
    """A cosmic-ray session's pending mutants, tested `workers` at a time, each outcome recorded as it comes."""

    def __init__(self, db, coverage_map: CoverageMap, rule_calls: RuleCalls | None, package: str,
                 workers: int) -> None:
        self.db, self.coverage_map, self.rule_calls = db, coverage_map, rule_calls
        self.package, self.workers = package, workers
        self.running: dict[int, Job] = {}
        self.kills: Counter[str] = Counter()  # test -> mutants it killed
        self.counts = {"killed": 0, "survived": 0, "timeout": 0, "no-test": 0, "no-mutant": 0, "not-covered": 0,
                       "replayed": 0}
        self.scratch = Path(tempfile.mkdtemp(prefix="mutation-"))

    def record(self, job_id: str, outcome: str, **result) -> None:
        from cosmic_ray.work_item import WorkerOutcome, WorkResult

        self.db.set_result(job_id, WorkResult(**{"worker_outcome": WorkerOutcome.NORMAL, **result}))
        self.counts[outcome] += 1

    def run(self, pending, log) -> None:
        from cosmic_ray.mutating import _make_diff, mutate_code
        from cosmic_ray.plugins import get_operator
        from cosmic_ray.work_item import TestOutcome, WorkerOutcome

        started, sources = time.monotonic(), {}
        try:
            for done, item in enumerate(pending):
                (mutation,) = item.mutations
                path = mutation.module_path
                source = sources.setdefault(path, path.read_text(encoding="utf-8"))
                operator = get_operator(mutation.operator_name)(**(mutation.operator_args or {}))
                try:
                    mutated = mutate_code(source, operator, mutation.occurrence)
                except Exception as error:  # noqa: BLE001 an operator that cannot handle this node (cosmic-ray's
                    # ExceptionReplacer on `except (A, B)`): no mutant, as cosmic-ray's own worker records it
                    self.record(item.job_id, "no-mutant", worker_outcome=WorkerOutcome.EXCEPTION,
                                output=f"{type(error).__name__}: {error}")
                    continue
                if mutated is None:
                    self.record(item.job_id, "no-test", worker_outcome=WorkerOutcome.NO_TEST)
                    continue
                diff = "\n".join(_make_diff(source, mutated, path))
                lines = mutant_lines(source, mutation.start_pos[0], mutation.end_pos[0])
                tests = self.coverage_map.tests_for(str(path), lines)
                if not tests:
                    self.record(item.job_id, "not-covered", test_outcome=TestOutcome.SURVIVED, diff=diff,
                                output="no test executes this line")
                    continue
                while len(self.running) >= self.workers:
                    self.reap()
                    time.sleep(0.02)
                workdir = self.scratch / item.job_id
                workdir.mkdir()
                job = Job(item, diff, 0.0, workdir, mutated, tests, False, time.monotonic())
                replayed = self.to_replay(str(path), lines)
                if replayed is not None:
                    calls, registry_before = replayed
                    budget = TIMEOUT_BASE_SECONDS + TIMEOUT_FACTOR * sum(
                        self.rule_calls.seconds[rule] for rule in {call.rule for call in calls})
                    job.replaying, job.deadline = True, time.monotonic() + budget
                    pid = start_replay(self.package, path.resolve(), mutated, calls, workdir, registry_before)
                    self.running[pid] = job
                else:
                    self.start_tests(job, tests)
                if done % 100 == 0:
                    log(f"{done}/{len(pending)} started, {time.monotonic() - started:.0f} s: {self.counts}")
            while self.running:
                self.reap()
                time.sleep(0.02)
        finally:  # interrupted: no child outlives the run
            for pid in self.running:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            shutil.rmtree(self.scratch, ignore_errors=True)

    def to_replay(self, path: str, lines: set[int]) -> tuple[list[Call], dict[str, str] | None] | None:
        """The calls to replay for a mutant of these lines: those of the rules executing them; for a line run at
        import, every call, once the registry is seen unchanged. None: run the tests (a rule that does not
        answer the same twice executes them)."""
        calls = self.rule_calls
        if calls is None:
            return None
        if self.coverage_map.contexts(path, lines) & {IMPORTED, ""}:
            rules, registry_before = set(calls.calls), calls.registry
        else:
            rules, registry_before = calls.rules_for(path, lines), None
        if not rules or rules & calls.unreplayable:
            return None
        return [call for rule in sorted(rules) for call in calls.calls[rule]], registry_before

    def by_bits(self, bits: int) -> list[str]:
        return [test for index, test in enumerate(self.coverage_map.tests) if bits >> index & 1]

    def start_tests(self, job: Job, tests: list[str]) -> None:
        """Run them, the tests that killed most mutants so far first, then the quickest (`-x` stops at the
        first failure)."""
        tests = sorted(tests, key=lambda test: (-self.kills[test], self.coverage_map.durations.get(test, 0.0)))
        budget = TIMEOUT_BASE_SECONDS + TIMEOUT_FACTOR * sum(self.coverage_map.durations.get(t, 0.0) for t in tests)
        job.replaying, job.deadline = False, time.monotonic() + budget
        path = job.item.mutations[0].module_path
        self.running[start_child(module_name(path, self.package), path.resolve(), job.mutated, tests, job.workdir)] = job

    def reap(self) -> None:
        """Record the children that finished, and kill (killed by timeout) the ones past their deadline; a
        replay that found different answers goes on with the tests that made those calls."""
        from cosmic_ray.work_item import TestOutcome

        for pid, job in list(self.running.items()):
            finished, status = os.waitpid(pid, os.WNOHANG)
            if not finished and time.monotonic() <= job.deadline:
                continue
            del self.running[pid]
            job_id = job.item.job_id
            if not finished:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                self.record(job_id, "timeout", output="timeout", diff=job.diff, test_outcome=TestOutcome.KILLED)
            elif job.replaying:
                replayed = read_replay(job.workdir)
                if replayed is not None and replayed.get("calls") == 0:
                    self.record(job_id, "replayed", output=f"[{time.monotonic() - job.started:.1f} s] {replayed['summary']}",
                                diff=job.diff,
                                test_outcome=TestOutcome.SURVIVED)
                else:  # answers differ (or the replay failed: then every covering test runs)
                    tests = job.tests if replayed is None or "tests" not in replayed else self.by_bits(replayed["tests"])
                    (job.workdir / "replay").write_text(replayed["summary"] if replayed else tail(job.workdir / "output"))
                    self.start_tests(job, tests)
                    continue
            else:
                killed = os.waitstatus_to_exitcode(status) != 0
                output = tail(job.workdir / "output")
                self.kills.update(FAILED.findall(output))
                self.record(job_id, "killed" if killed else "survived", diff=job.diff,
                            output=f"[{time.monotonic() - job.started:.1f} s] " + tail(job.workdir / "replay") + output,
                            test_outcome=TestOutcome.KILLED if killed else TestOutcome.SURVIVED)
            shutil.rmtree(job.workdir, ignore_errors=True)


EQUIVALENT_ROW = re.compile(r"^\|\s*(\S+\.py):(\d+)\s*\|\s*`?([\w/]+)`?\s*\|", re.MULTILINE)


def equivalent_mutants(listing: Path) -> set[tuple[str, int, str]]:
    """(path, line, operator) of each row `| path:line | operator | why |` of the equivalent mutants' list."""
    return {(path, int(line), operator) for path, line, operator in EQUIVALENT_ROW.findall(listing.read_text())}


def is_listed(mutation, listed: set[tuple[str, int, str]]) -> bool:
    return (str(mutation.module_path), mutation.start_pos[0], mutation.operator_name) in listed


def score(session: str, listing: Path | None) -> dict:
    """Killed / tested, and killed / (tested - the equivalent mutants listed)."""
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome

    listed = equivalent_mutants(listing) if listing else set()
    with use_db(session, WorkDB.Mode.open) as db:
        done = [(item.mutations[0], result) for item, result in db.completed_work_items
                if result.test_outcome is not None]
        total = db.num_work_items
    killed = sum(result.test_outcome == TestOutcome.KILLED for _, result in done)
    equivalent = sum(result.test_outcome == TestOutcome.SURVIVED and is_listed(m, listed) for m, result in done)
    return {"mutants": total, "tested": len(done), "killed": killed, "equivalent": equivalent,
            "score": round(killed / len(done), 4) if done else None,
            "score_without_equivalent": round(killed / (len(done) - equivalent), 4) if done else None}


def execute(config_file: str, session: str, package: str, workers: int, limit: int | None,
            survivors: bool = False, equivalent: Path | None = None, log=print, sample: int | None = None,
            seed: int = 0, use_replay: bool = True) -> dict:
    """Test every pending mutant of `session` (at most `limit`, or a random `sample`; with `survivors`, the
    survived ones again, as after adding tests, but for those listed in `equivalent`, and then the `sample` of
    pending ones if one is asked for); returns counts of the outcomes recorded. Mutants inside annotations are
    recorded skipped, as cosmic-ray's filters do."""
    import random

    from cosmic_ray.config import load_config
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

    config = load_config(config_file)
    started = time.monotonic()
    coverage_map, rule_calls = build_map(config["module-path"], package, test_paths(config["test-command"]))
    RECORDED_MODULES.update(forget_project_modules())
    if rule_calls is not None:
        log(f"recorded {sum(map(len, rule_calls.calls.values()))} distinct calls of {len(rule_calls.calls)} rules")
    log(f"coverage map: {len(coverage_map.tests)} tests, {time.monotonic() - started:.0f} s")
    gc.freeze()  # a forked child's collections would walk (and so copy) every object the parent holds
    with use_db(session, WorkDB.Mode.open) as db:
        runner = Session(db, coverage_map, rule_calls if use_replay else None, package, workers)
        listed = equivalent_mutants(equivalent) if equivalent else set()
        pending = list(db.pending_work_items)
        spans = {path: annotation_spans(path.read_text(encoding="utf-8"))
                 for path in {item.mutations[0].module_path for item in pending}}
        for item in [item for item in pending if in_annotation(item.mutations[0], spans[item.mutations[0].module_path])]:
            db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED,
                                                  output="inside an annotation, which nothing evaluates"))
            pending.remove(item)
        if sample is not None:
            pending = random.Random(seed).sample(pending, min(sample, len(pending)))
        if survivors:  # the survived ones again, and only the sampled pending ones
            pending = [item for item, result in db.completed_work_items
                       if result.test_outcome == TestOutcome.SURVIVED and not is_listed(item.mutations[0], listed)
                       ] + (pending if sample is not None else [])
        pending = pending[:limit]
        runner.run(pending, log)
    log(f"{len(pending)} mutants in {time.monotonic() - started:.0f} s: {runner.counts}")
    return runner.counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("config", help="the cosmic-ray config (tests/policies/cosmic-ray.toml)")
    parser.add_argument("session", help="the session database `cosmic-ray init` made")
    parser.add_argument("--package", default="platform_infra", help="the package the working directory is")
    parser.add_argument("--workers", type=int, default=2, help="children at a time (default 2)")
    parser.add_argument("--limit", type=int, help="test at most this many pending mutants (a sample)")
    parser.add_argument("--survivors", action="store_true",
                        help="test the survived mutants again (after adding tests), and a --sample of pending ones")
    parser.add_argument("--equivalent", type=Path, help="the equivalent mutants' list: not tested again, and "
                        "left out of the second score")
    parser.add_argument("--sample", type=int, help="test a random sample of this many pending mutants")
    parser.add_argument("--seed", type=int, default=0, help="the sample's random seed (default 0)")
    parser.add_argument("--no-replay", action="store_true",
                        help="run every mutant's covering tests, without replaying the rules' calls first")
    parser.add_argument("--score", action="store_true", help="only print the session's score")
    args = parser.parse_args(argv)
    if not args.score:
        execute(args.config, args.session, args.package, args.workers, args.limit, args.survivors, args.equivalent,
                sample=args.sample, seed=args.seed, use_replay=not args.no_replay)
    print(json.dumps(score(args.session, args.equivalent)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
