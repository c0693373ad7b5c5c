"""The robustness suite's counts: each test records its per-reader / per-fault counts in its
report; the session ends with their table (docs/robustness.md's), also written as JSON to
$ROBUSTNESS_REPORT when set. Works with and without pytest-xdist (reports carry the counts)."""
import collections
import json
import os

import pytest

from tests.robustness import harness


@pytest.fixture
def recorder(record_property):
  """A `harness.Recorder` whose counts end up in this test's report."""
  rec = harness.Recorder()
  yield rec
  record_property("robustness", rec.rows())


def pytest_terminal_summary(terminalreporter):
  totals: dict = collections.defaultdict(collections.Counter)
  for reports in terminalreporter.stats.values():
    for report in reports:
      if getattr(report, "when", None) != "teardown":
        continue
      for key, rows in getattr(report, "user_properties", ()):
        if key == "robustness":
          for row in rows:
            totals[row["name"]].update({k: v for k, v in row.items() if k != "name"})
  if not totals:
    return
  columns = ("tried", "accepted", "refused", "crash", "hang")
  terminalreporter.section(f"robustness counts (profile {harness.PROFILE})")
  terminalreporter.write_line(f"{'reader / fault':<44}" + "".join(f"{c:>10}" for c in columns))
  for name in sorted(totals):
    terminalreporter.write_line(f"{name:<44}" + "".join(f"{totals[name][c]:>10}"
                                                        for c in columns))
  if os.environ.get("ROBUSTNESS_REPORT"):
    with open(os.environ["ROBUSTNESS_REPORT"], "w") as f:
      json.dump({"profile": harness.PROFILE,
                 "counts": {n: dict(c) for n, c in sorted(totals.items())}}, f, indent=1)
