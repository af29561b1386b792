"""Execute a cosmic-ray session fast: each mutant runs only the tests that execute its line, in a forked child.

cosmic-ray's own `exec` edits the module on disk and starts the whole test command once per mutant (thousands
of runs of ~20 s here). This keeps cosmic-ray's mutation operators and its session database (so `cr-report`
gives the score) and changes only how a mutant is tested:

1. The session's tests (the paths in the config's test-command) run once under coverage.py, one dynamic
   context per test, which maps each line of the mutated modules to the tests that execute it. Lines run at
   import (module constants, `def` lines, decorators) belong to every test. The run must pass.
2. Per pending mutant, cosmic-ray's `mutate_code` gives the mutated source (its operators, its occurrence).
3. A forked child serves that source from memory through a meta-path finder (the file on disk is never
   edited, so workers run side by side), then runs only the tests covering the mutant's lines with
   `pytest -x`, under a timeout. Third-party modules stay imported from the parent; the project's own
   modules are imported afresh in every child.
4. The outcome goes back into the session as cosmic-ray records it: killed (a test failed, or the timeout
   hit: cosmic-ray counts a timeout as killed too), survived (all selected tests passed, or no test executes
   the line: then nothing runs).

    cosmic-ray init tests/policies/cosmic-ray.toml pack.sqlite
    nice -n 10 .venv/bin/python -m tests.policies.mutation tests/policies/cosmic-ray.toml pack.sqlite
    cr-report --show-output pack.sqlite

After adding tests for the survivors, `--survivors --equivalent tests/policies/mutation-equivalent.md` tests the
survived mutants again but for the listed equivalent ones (delete the session's coverage map first: the tests
changed); `--score` prints killed / tested and killed / (tested - equivalent). Run it from the directory
`cosmic-ray init` ran in (the mutants' paths are relative to it).
"""

from __future__ import annotations

import argparse
import contextlib
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
from dataclasses import dataclass
from pathlib import Path

IMPORTED = "(import)"  # the context of lines run outside any test: when a module loads

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


@dataclass
class CoverageMap:
    tests: list[str]  # node ids, in collection order
    durations: dict[str, float]  # seconds each test took (setup, call, teardown)
    lines: dict[str, dict[int, set[str]]]  # module path -> line -> contexts that executed it

    def tests_for(self, path: str, source: str, start: int, end: int) -> list[str]:
        """The tests executing any line of the mutant (coverage counts a statement at its first line)."""
        from coverage.parser import PythonParser

        parser = PythonParser(text=source)
        parser.parse_source()
        lines = set(range(start, end + 1)) | {parser.first_line(line) for line in range(start, end + 1)}
        executed = self.lines.get(path, {})
        contexts = set().union(*(executed.get(line, set()) for line in lines))
        selected = self.tests if IMPORTED in contexts or "" in contexts else [t for t in self.tests if t in contexts]
        return sorted(selected, key=lambda test: self.durations.get(test, 0.0))  # quick ones first: -x stops early

    def save(self, path: Path, modules: list[str]) -> None:
        lines = {file: {line: sorted(ctx) for line, ctx in by_line.items()} for file, by_line in self.lines.items()}
        path.write_text(json.dumps({"tests": self.tests, "durations": self.durations, "lines": lines,
                                    "modules": modules}))

    @classmethod
    def load(cls, path: Path) -> tuple[CoverageMap, list[str]]:
        data = json.loads(path.read_text())
        lines = {file: {int(line): set(ctx) for line, ctx in by_line.items()} for file, by_line in data["lines"].items()}
        return cls(data["tests"], data["durations"], lines), data["modules"]


class PerTestContext:
    """pytest plugin: coverage's dynamic context is the running test's node id."""

    def __init__(self, cov) -> None:
        self.cov = cov
        self.tests: list[str] = []
        self.durations: dict[str, float] = {}
        self.failed: list[str] = []

    def pytest_runtest_protocol(self, item, nextitem):
        self.tests.append(item.nodeid)
        self.cov.switch_context(item.nodeid)

    def pytest_runtest_logreport(self, report):
        self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + report.duration
        if report.failed:
            self.failed.append(report.nodeid)
        if report.when == "teardown":
            self.cov.switch_context(IMPORTED)


def build_map(module_path: str, package: str, tests: list[str]) -> CoverageMap:
    """Run the tests once under coverage, in this process (which thereby imports what they need)."""
    import coverage
    import pytest

    root = Path(module_path).resolve()
    cov = coverage.Coverage(data_file=None, include=[str(root), f"{root}/*"])
    cov.start()
    cov.switch_context(IMPORTED)
    importlib.import_module(module_name(Path(module_path), package))  # every mutated module, before any test
    plugin = PerTestContext(cov)
    status = pytest.main(["-q", "-p", "no:cacheprovider", *tests], plugins=[plugin])
    cov.stop()
    if status != 0 or plugin.failed:
        raise SystemExit(f"the unmutated tests must pass first (pytest exit {status}; failed: {plugin.failed})")
    data = cov.get_data()
    lines = {
        str(Path(file).relative_to(Path.cwd())): {line: set(ctx) for line, ctx in data.contexts_by_lineno(file).items()}
        for file in data.measured_files()
    }
    return CoverageMap(plugin.tests, plugin.durations, lines)


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


def forget_project_modules() -> None:
    """Drop the project's modules (anything loaded from the working directory): each child imports them anew,
    the mutated one from memory."""
    here, environment = str(Path.cwd()), sys.prefix  # the virtualenv may live in the working directory
    for name, module in list(sys.modules.items()):
        file = getattr(module, "__file__", None) or ""
        if file.startswith(here) and not file.startswith(environment):
            del sys.modules[name]
    importlib.invalidate_caches()


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


class Session:
    """A cosmic-ray session's pending mutants, tested `workers` at a time, each outcome recorded as it comes."""

    def __init__(self, db, coverage_map: CoverageMap, package: str, workers: int) -> None:
        self.db, self.coverage_map, self.package, self.workers = db, coverage_map, package, workers
        self.running: dict[int, tuple] = {}  # pid -> (job id, diff, deadline, workdir)
        self.counts = {"killed": 0, "survived": 0, "timeout": 0, "no-test": 0, "not-covered": 0}
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
                mutated = mutate_code(source, operator, mutation.occurrence)
                if mutated is None:
                    self.record(item.job_id, "no-test", worker_outcome=WorkerOutcome.NO_TEST)
                    continue
                diff = "\n".join(_make_diff(source, mutated, path))
                tests = self.coverage_map.tests_for(str(path), source, mutation.start_pos[0], mutation.end_pos[0])
                if not tests:
                    self.record(item.job_id, "not-covered", test_outcome=TestOutcome.SURVIVED, diff=diff,
                                output="no test executes this line")
                    continue
                while len(self.running) >= self.workers:
                    self.reap()
                    time.sleep(0.05)
                workdir = self.scratch / item.job_id
                workdir.mkdir()
                budget = TIMEOUT_BASE_SECONDS + TIMEOUT_FACTOR * sum(
                    self.coverage_map.durations.get(test, 0.0) for test in tests)
                pid = start_child(module_name(path, self.package), path.resolve(), mutated, tests, workdir)
                self.running[pid] = (item.job_id, diff, time.monotonic() + budget, workdir)
                if done % 25 == 0:
                    log(f"{done}/{len(pending)} started, {time.monotonic() - started:.0f} s: {self.counts}")
            while self.running:
                self.reap()
                time.sleep(0.05)
        finally:  # interrupted: no child outlives the run
            for pid in self.running:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            shutil.rmtree(self.scratch, ignore_errors=True)

    def reap(self) -> None:
        """Record the children that finished, and kill (killed by timeout) the ones past their deadline."""
        from cosmic_ray.work_item import TestOutcome

        for pid, (job_id, diff, deadline, workdir) in list(self.running.items()):
            finished, status = os.waitpid(pid, os.WNOHANG)
            if finished:
                killed = os.waitstatus_to_exitcode(status) != 0
                self.record(job_id, "killed" if killed else "survived", output=tail(workdir / "output"), diff=diff,
                            test_outcome=TestOutcome.KILLED if killed else TestOutcome.SURVIVED)
            elif time.monotonic() > deadline:
                os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                self.record(job_id, "timeout", output="timeout", diff=diff, test_outcome=TestOutcome.KILLED)
            else:
                continue
            del self.running[pid]
            shutil.rmtree(workdir, ignore_errors=True)


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
            survivors: bool = False, equivalent: Path | None = None, log=print) -> dict:
    """Test every pending mutant of `session` (at most `limit`; with `survivors`, the survived ones again, as
    after adding tests, but for those listed in `equivalent`); returns counts of the outcomes recorded."""
    from cosmic_ray.config import load_config
    from cosmic_ray.work_db import WorkDB, use_db
    from cosmic_ray.work_item import TestOutcome

    config = load_config(config_file)
    started = time.monotonic()
    saved = Path(f"{session}.coverage.json")  # kept: a resumed or repeated run skips the coverage run
    if saved.exists():
        coverage_map, modules = CoverageMap.load(saved)
        for name in modules:  # what the tests import from outside the project, once for every child
            with contextlib.suppress(Exception):
                importlib.import_module(name)
    else:
        coverage_map = build_map(config["module-path"], package, test_paths(config["test-command"]))
        forget_project_modules()
        coverage_map.save(saved, sorted(name for name in sys.modules if name != "__main__"))
    log(f"coverage map: {len(coverage_map.tests)} tests, {time.monotonic() - started:.0f} s")
    forget_project_modules()
    with use_db(session, WorkDB.Mode.open) as db:
        runner = Session(db, coverage_map, package, workers)
        listed = equivalent_mutants(equivalent) if equivalent else set()
        pending = list(db.pending_work_items) if not survivors else [
            item for item, result in db.completed_work_items
            if result.test_outcome == TestOutcome.SURVIVED and not is_listed(item.mutations[0], listed)]
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
                        help="test the survived mutants again (after adding tests; delete the coverage map first)")
    parser.add_argument("--equivalent", type=Path, help="the equivalent mutants' list: not tested again, and "
                        "left out of the second score")
    parser.add_argument("--score", action="store_true", help="only print the session's score")
    args = parser.parse_args(argv)
    if not args.score:
        execute(args.config, args.session, args.package, args.workers, args.limit, args.survivors, args.equivalent)
    print(json.dumps(score(args.session, args.equivalent)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
