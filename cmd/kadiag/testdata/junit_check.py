# Reads a JUnit XML file with junitparser (a widely used JUnit reader, the
# Debian package python3-junitparser) and prints what it understood as JSON:
# the document's totals and every case's result, for kadiag's tests to
# compare with what kadiag meant.
import json
import sys

import junitparser

xml = junitparser.JUnitXml.fromfile(sys.argv[1])
out = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "suites": [], "cases": []}
suites = [xml] if isinstance(xml, junitparser.TestSuite) else list(xml)
for suite in suites:
    out["suites"].append({"name": suite.name, "tests": suite.tests, "failures": suite.failures, "errors": suite.errors})
    for case in suite:
        kinds = [type(r).__name__.lower() for r in case.result]
        out["cases"].append({"name": case.name, "classname": case.classname, "result": kinds[0] if kinds else "passed",
                             "message": case.result[0].message if case.result else None})
        out["tests"] += 1
        for k in ("failure", "error", "skipped"):
            if k in kinds:
                out[{"failure": "failures", "error": "errors", "skipped": "skipped"}[k]] += 1
print(json.dumps(out))
