#!/usr/bin/env python3
"""Recomputes keyturn's audit hash chain from `keyturn audit export` output,
with nothing but Python 3 (docs/AUDIT.md describes the format).

    keyturn audit export > audit.jsonl
    python3 audit_verify.py audit.jsonl [SEQ:HASH]

Each line is one event with its "hash". The hash is SHA-256 over the
canonical JSON of the event without "hash" (keys sorted, no whitespace,
UTF-8, integers only), and each event's "prev_hash" is the previous event's
hash (64 zeros before event 1). SEQ:HASH, if given, is a tip recorded
earlier: that event must still be there with that hash.

Exit 0 if intact; 1 with the first bad event named otherwise.
"""
import hashlib
import json
import sys

GENESIS = "0" * 64


def canonical(event):
    return json.dumps(event, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def has_float(v):
    if isinstance(v, float):
        return True
    if isinstance(v, dict):
        return any(has_float(x) for x in v.values())
    if isinstance(v, list):
        return any(has_float(x) for x in v)
    return False


def fail(seq, why):
    print(f"BROKEN: event #{seq}: {why}")
    sys.exit(1)


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__)
        sys.exit(2)
    anchor = None
    if len(sys.argv) == 3:
        a_seq, a_hash = sys.argv[2].split(":", 1)
        anchor = (int(a_seq.lstrip("#")), a_hash.strip().lower())
    prev = None  # (seq, hash)
    count = 0
    first = None
    anchor_seen = None
    with open(sys.argv[1], encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            event = json.loads(line)
            stored = event.pop("hash")
            seq = event["seq"]
            count += 1
            if first is None:
                first = seq
            if prev is None:
                if seq == 1 and event["prev_hash"] != GENESIS:
                    fail(1, "the first event must have prev_hash = 64 zeros")
            elif seq > prev[0] + 1:
                fail(prev[0] + 1, f"missing: #{prev[0]} is followed by #{seq}")
            elif seq != prev[0] + 1:
                fail(seq, f"out of order: comes after #{prev[0]}")
            if event.get("v") != 1:
                fail(seq, f"unknown format version {event.get('v')!r}")
            if has_float(event):
                fail(seq, "holds a non-integer number")
            computed = hashlib.sha256(canonical(event).encode("utf-8")).hexdigest()
            if computed != stored:
                fail(seq, f"edited: stored hash {stored[:16]}…, computed {computed[:16]}…")
            if prev is not None and event["prev_hash"] != prev[1]:
                fail(seq, f"does not follow event #{prev[0]} (its prev_hash differs)")
            if anchor and seq == anchor[0]:
                anchor_seen = stored
            prev = (seq, stored)
    if anchor and anchor_seen != anchor[1]:
        fail(anchor[0], "the anchored event is missing or has another hash")
    partial = "" if first in (None, 1) else f" (partial export from #{first})"
    tip = f"; tip #{prev[0]} {prev[1]}" if prev else ""
    print(f"{count} events, chain intact{partial}{tip}")


if __name__ == "__main__":
    main()
