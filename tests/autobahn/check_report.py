"""Reads kosoku's index.json and fails on any FAILED case, or on any other non-OK case that is not
listed (with its reason) in expected-non-ok.txt. Prints a summary and 'N passed, N failed'."""
import collections
import json
import sys


def main(index_path, expected_path):
    try:
        with open(index_path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print(f"autobahn: no readable report at {index_path}: {e}")
        return 1
    cases = {}
    for agent_cases in index.values():
        cases.update(agent_cases)
    if not cases:
        print("autobahn: the report holds no cases: nothing was tested")
        return 1

    expected = {}
    with open(expected_path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            case, _, reason = line.partition("#")
            expected[case.strip()] = reason.strip()

    counts = collections.Counter()
    passed, failed = 0, 0
    for case_id in sorted(cases, key=lambda c: [int(x) for x in c.split(".")]):
        r = cases[case_id]
        behavior, close = r.get("behavior"), r.get("behaviorClose")
        counts[(behavior, close)] += 1
        if behavior == "OK" and close == "OK":
            passed += 1
        elif "FAILED" in (behavior, close):
            failed += 1
            print(f"  FAILED   {case_id}: behavior {behavior}, behaviorClose {close}")
        elif case_id in expected:
            passed += 1
            print(f"  accepted {case_id}: {behavior}/{close} ({expected[case_id]})")
        else:
            failed += 1
            print(f"  UNEXPECTED {case_id}: {behavior}/{close} (not in expected-non-ok.txt)")
    print("autobahn: " + ", ".join(f"{b}/{c}: {n}" for (b, c), n in sorted(counts.items())))
    print(f"autobahn: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
