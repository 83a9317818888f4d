"""Lints charts/talos-operator with Helm's own Go library, through helm-sdkpy.

Run by tests/testbeds/helm/lint in its cached venv (helm-sdkpy, PyYAML):

    python lint.py CHART_DIR

Each scenario lints a copy of the chart whose values.yaml has the scenario's values
merged in (helm-sdkpy's Lint takes a chart path only and lints with the chart's own
values). Helm's lint loads the chart, checks Chart.yaml and values.yaml against
values.schema.json, and renders every template, parsing each as YAML.

What helm-sdkpy hides, and how this script makes up for it:

- Strict mode is not exposed (Helm's Lint runs with Strict off). Here a message of
  severity warning or error fails the scenario, as `helm lint --strict` would.
- Messages reach Python without their text (Helm's error values serialise as {}):
  a failure is reported by severity and path only.
- In lint mode Helm's `fail` and `required` do not fail the render; the engine logs
  them on fd 2 ("funcMap fail message=..."). This script captures fd 2 during each
  lint and counts such a line as a failure, so the Deployment's `fail` is checked.
- The rendered manifests are not returned at all, so nothing here checks them
  against the Kubernetes schema or the operator's requests (docs/chart.md).

Exits 0 when every scenario did what it expects (the failing ones too), else 1.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_sdkpy
import yaml

HERE = Path(__file__).resolve().parent
SEVERITY = {0: "unknown", 1: "info", 2: "warning", 3: "error"}
# Strict: like `helm lint --strict`, warnings fail too.
FAILING_SEVERITY = 2
# What Helm's engine logs instead of failing in lint mode.
ENGINE_FAILURE = re.compile(r"funcMap fail|missing required value", re.IGNORECASE)


@dataclass
class Scenario:
    """One lint of the chart with some values, and what it must give."""

    name: str
    values: dict[str, Any] = field(default_factory=dict)
    values_file: Path | None = None
    # Lint without values.schema.json, to reach the templates' own `fail`.
    drop_schema: bool = False
    expect_pass: bool = True
    # For a failing scenario: a path with an error message (e.g. values.yaml) ...
    expect_error_path: str | None = None
    # ... or text that the engine's log of a template `fail` must contain.
    expect_fail_text: str | None = None


SCENARIOS = [
    Scenario("default values"),
    Scenario("values-ha.yaml (serviceMonitor, leaderElection, 2 replicas)",
             values_file=HERE / "values-ha.yaml"),
    Scenario("replicas 3, leaderElection auto", values={"replicas": 3}),
    Scenario("clientCertSecret \"\" is refused by values.schema.json",
             values={"clientCertSecret": ""}, expect_pass=False,
             expect_error_path="values.yaml"),
    Scenario("clientCertSecret \"\" without the schema: the Deployment's fail",
             values={"clientCertSecret": ""}, drop_schema=True, expect_pass=False,
             expect_fail_text="clientCertSecret is empty"),
    Scenario("replicas 2, leaderElection false is refused by values.schema.json",
             values={"replicas": 2, "leaderElection": False}, expect_pass=False,
             expect_error_path="values.yaml"),
    Scenario("replicas 2, leaderElection false without the schema: the Deployment's fail",
             values={"replicas": 2, "leaderElection": False}, drop_schema=True,
             expect_pass=False, expect_fail_text="leaderElection is false"),
    Scenario("an unknown key (typo) is refused by values.schema.json",
             values={"serviceMonitor": {"enable": True}}, expect_pass=False,
             expect_error_path="values.yaml"),
]


@dataclass
class Outcome:
    """What one lint gave."""

    charts: int
    messages: list[tuple[int, str]]
    errors: int
    engine_log: list[str]
    seconds: float

    def problems(self) -> list[str]:
        """Everything that fails a strict lint, one line each."""
        out = [f"{SEVERITY.get(sev, sev)}: {path} (helm-sdkpy drops the message text)"
               for sev, path in self.messages if sev >= FAILING_SEVERITY]
        if self.errors and not out:
            out.append(f"{self.errors} error(s) without a message (chart not loaded?)")
        out += [f"template: {line}" for line in self.engine_log if ENGINE_FAILURE.search(line)]
        if self.charts != 1:
            out.append(f"{self.charts} charts linted, not 1")
        return out


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` merged into `base` the way Helm merges values files: maps key by key,
    anything else replaced."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def lint(chart: Path, scenario: Scenario, work: Path) -> Outcome:
    """Lints a copy of `chart` with the scenario's values, capturing Helm's log."""
    copy = work / chart.name
    shutil.copytree(chart, copy)
    values = yaml.safe_load((copy / "values.yaml").read_text()) or {}
    if scenario.values_file is not None:
        values = deep_merge(values, yaml.safe_load(scenario.values_file.read_text()) or {})
    values = deep_merge(values, scenario.values)
    (copy / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    if scenario.drop_schema:
        (copy / "values.schema.json").unlink()

    config = helm_sdkpy.Configuration(namespace="talos-system")
    started = time.monotonic()
    with tempfile.TemporaryFile() as log:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(log.fileno(), 2)
        try:
            result = asyncio.run(helm_sdkpy.Lint(config).run(str(copy)))
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        # slog's default lines start with the date and time; the rest is kept.
        engine_log = [re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", line)
                      for line in log.read().decode(errors="replace").splitlines() if line]
    seconds = time.monotonic() - started

    return Outcome(
        charts=result.get("TotalChartsLinted", 0),
        messages=[(m.get("Severity", 0), m.get("Path", "?")) for m in result.get("Messages") or []],
        errors=len(result.get("Errors") or []),
        engine_log=engine_log,
        seconds=seconds,
    )


def judge(scenario: Scenario, outcome: Outcome) -> str | None:
    """None when the outcome is what the scenario expects, else why not."""
    problems = outcome.problems()
    if scenario.expect_pass:
        return "; ".join(problems) if problems else None
    if not problems:
        return "lint passed, but this scenario must fail"
    if scenario.expect_error_path is not None and not any(
        sev >= FAILING_SEVERITY and path == scenario.expect_error_path
        for sev, path in outcome.messages
    ):
        return f"failed, but with no error on {scenario.expect_error_path}: " + "; ".join(problems)
    if scenario.expect_fail_text is not None and not any(
        ENGINE_FAILURE.search(line) and scenario.expect_fail_text in line
        for line in outcome.engine_log
    ):
        return f"failed, but no template fail says {scenario.expect_fail_text!r}: " + "; ".join(problems)
    return None


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: lint.py CHART_DIR", file=sys.stderr)
        return 2
    chart = Path(sys.argv[1]).resolve()
    print(f"helm lint (strict) of {chart.name} with helm-sdkpy {helm_sdkpy.__version__}")
    passed = failed = 0
    for scenario in SCENARIOS:
        with tempfile.TemporaryDirectory(prefix="chart-lint-") as work:
            outcome = lint(chart, scenario, Path(work))
        wrong = judge(scenario, outcome)
        expected = "pass" if scenario.expect_pass else "fail"
        if wrong is None:
            passed += 1
            detail = "; ".join(outcome.problems()) if not scenario.expect_pass else ""
            infos = [p for s, p in outcome.messages if s < FAILING_SEVERITY]
            note = f" [{detail}]" if detail else (f" [info: {', '.join(infos)}]" if infos else "")
            print(f"ok   {scenario.name}: {expected}{'es' if expected == 'pass' else 's'}{note}"
                  f" ({outcome.seconds:.2f}s)")
        else:
            failed += 1
            print(f"FAIL {scenario.name}: should {expected}; {wrong} ({outcome.seconds:.2f}s)")
            for line in outcome.engine_log:
                print(f"     helm: {line}")
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
