"""Reads wstest's index.json: every case's behavior and behaviorClose must be
OK, NON-STRICT or INFORMATIONAL (wstest itself always exits 0)."""
import collections
import json
import sys

ACCEPTED = {"OK", "NON-STRICT", "INFORMATIONAL"}


def case_key(case):
    return tuple(int(part) for part in case.split("."))


def main(path):
    with open(path) as f:
        index = json.load(f)
    counts = collections.Counter()
    bad = []
    total = 0
    for agent, cases in sorted(index.items()):
        for case in sorted(cases, key=case_key):
            result = cases[case]
            total += 1
            behavior, close = result["behavior"], result["behaviorClose"]
            counts[behavior] += 1
            if behavior not in ACCEPTED or close not in ACCEPTED:
                bad.append(f"  {agent} {case}: behavior {behavior}, behaviorClose {close}")
    if total == 0:
        print("autobahn: no case ran")
        return 1
    summary = ", ".join(f"{n} {b}" for b, n in sorted(counts.items()))
    print(f"autobahn: {total} cases: {summary}")
    if bad:
        print(f"autobahn: {len(bad)} cases not accepted:")
        print("\n".join(bad))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
