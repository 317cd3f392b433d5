#!/usr/bin/env python3
"""The client-library suite's closing report, from each suite's results file.

For every known gap: which GP systems, what the library sent and what the gateway
answered (issue 22's to-do list); then one line of counts. Exits non-zero when a results
file is missing or holds a FAIL (each suite has already printed why).

    report.py RESULTS_JSON...
"""

import json
import sys

SHOWN = 3  # answers shown per gap: the refusals of the first system it failed on
DETAIL = 400  # characters of the check's own account shown per gap


def main():
    failed = passed = gaps = 0
    print("== known gaps (issue 22's to-do list): what the library sent, what the gateway answered")
    for path in sys.argv[1:]:
        try:
            with open(path) as f:
                suite = json.load(f)
        except (OSError, ValueError) as e:
            print(f"clients: no results in {path} ({e})")
            failed += 1
            continue
        by_check = {}
        for r in suite["results"]:
            passed += r["outcome"] == "pass"
            failed += r["outcome"] == "FAIL"
            gaps += r["outcome"] == "gap"
            if r["outcome"] == "gap":
                by_check.setdefault(r["check"], []).append(r)
        for check, rows in by_check.items():
            first = rows[0]
            systems = ", ".join(r["system"] for r in rows)
            print(f"{suite['library']} · {check} ({systems}) — {first['gap']}")
            detail = first["detail"]
            refused = [x for x in first["exchanges"] if x["status"] >= 400]
            if not any(detail == f"{x['status']} {x['answer']}" for x in refused):
                print(f"    {detail if len(detail) <= DETAIL else detail[: DETAIL - 1] + '…'}")
            for x in refused[:SHOWN]:
                print(f"    {x['sent']} → {x['status']} {x['answer']}")
            if len(refused) > SHOWN:
                print(f"    … and {len(refused) - SHOWN} more like these")
    print(f"clients: {gaps} known gaps (expected failures, listed in KNOWN_GAPS of tests/clients/*_suite.*)")
    print(f"clients: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
