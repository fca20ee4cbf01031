#!/usr/bin/env python3
"""Splits a `perf record --call-graph dwarf` profile of sonde into pipeline stages.

    PERF_DIR=/tmp/prof SCENARIOS=sonde_rw SONDE_BIN=... tests/bench/remote_write.sh 1
    perf script -i /tmp/prof/sonde_rw-1.data -F tid,ip,sym --inline > rw.script
    tests/bench/perf_stages.py rw.script

A sample goes to the first stage (in the order below) one of whose markers occurs in its
call chain; the markers are symbol names of today's code, so after a rewrite check the
"other" line. "allocator" is the share of samples whose leaf is in libc's malloc/free
(sonde uses the system allocator on glibc). The remote-write series-building stage is
broken down further by what its leaf does.
"""

import collections
import sys

STAGES = [
    ("compression (snappy for remote write, gzip for influxdb_v2)",
     ["snap::", "compress_vec", "compress (inlined)", "flate2", "miniz", "deflate"]),
    ("remote_write: protobuf encode (prost)", ["prost::", "encode_to_vec"]),
    ("output HTTP client (reqwest/hyper)",
     ["reqwest", "hyper_util::client", "role::Client", "hyper::client"]),
    ("influxdb_v2: line-protocol serialize", ["influxdb_v2"]),
    ("remote_write: build series (labels, HashMap, sort, sample Vecs)",
     ["prometheus_remote_write", "codec::prometheus", "W&encode (inlined)", "W&to_string",
      "W&sanitize", "W&sip::Hasher", "W&hash_one"]),
    ("output: drop the written batch (free Metrics)",
     ["drop_in_place<alloc::vec::Vec<sonde_plugins::model::Metric",
      "drop_in_place<[sonde_plugins::model::Metric]", "drop_in_place<sonde_plugins::model::Metric"]),
    ("output: buffer take / flush loop", ["write_batches", "flush_loop", "buffer::Buffer"]),
    ("listener: line-protocol parse (incl. Metric allocation)", ["influx::parse", "codec::influx"]),
    ("buffer push (add_owned)", ["add_owned", "enforce_limits"]),
    ("channel / processors / fan-out", ["process_loop", "fan_out", "flume", "run_processors"]),
    ("listener: HTTP server, body read, hand-off",
     ["serve_conn", "influxdb_listener", "role::Server", "common::server", "lp_listener"]),
    ("other (tokio scheduler, kernel, unresolved)", [""]),
]
SERIES = STAGES[4][0]
SUB = [
    ("SipHash of label Vecs (HashMap<Vec<Label>, usize>)", ["sip::Hasher", "hash_one", "reserve_rehash"]),
    ("free: label Strings, Vec<Label>, series", ["FREE"]),
    ("malloc: label Strings (to_string, format!, clone), sample Vecs", ["MALLOC"]),
    ("memcmp / Label eq (HashMap probe, dedup)", ["memcmp", "eq<", "cmp<"]),
    ("sanitize label names", ["sanitize"]),
    ("sort labels / samples", ["sort", "merge"]),
    ("memmove / memcpy", ["memmove", "memcpy"]),
    ("the encode loop itself (inlined code)", [""]),
]
FREE = ("_int_free", "cfree", "free", "malloc_consolidate", "unlink_chunk", "__GI___libc_free",
        "__rdl_dealloc")
MALLOC = ("_int_malloc", "malloc", "__GI___libc_malloc", "__rdl_alloc", "realloc", "_int_realloc",
          "sysmalloc", "tcache", "alloc_perturb")


def hit(key, stack):
    if key.startswith("W&"):
        return key[2:] in stack and "write_batches" in stack
    return key in stack


def samples(path):
    frames = []
    with open(path, errors="replace") as f:
        for line in f:
            if not line.startswith(("\t", " ")):
                if frames:
                    yield frames
                frames = []
                continue
            parts = line.strip().split(None, 1)
            if len(parts) == 2 and not parts[0].startswith("ffffffff"):
                frames.append(parts[1])
    if frames:
        yield frames


def main(path):
    stages, alloc, sub = collections.Counter(), collections.Counter(), collections.Counter()
    total = 0
    for frames in samples(path):
        total += 1
        stack = " | ".join(frames)
        leaf = frames[0]
        for name, keys in STAGES:
            if any(hit(k, stack) for k in keys):
                stages[name] += 1
                if leaf.startswith(FREE) or leaf.startswith(MALLOC):
                    alloc[name] += 1
                if name == SERIES:
                    top = " | ".join(frames[:8])
                    for sname, skeys in SUB:
                        if any((k == "FREE" and leaf.startswith(FREE))
                               or (k == "MALLOC" and leaf.startswith(MALLOC))
                               or (k not in ("FREE", "MALLOC") and k in top) for k in skeys):
                            sub[sname] += 1
                            break
                break
    print(f"{total} samples (user-space call chains)")
    for name, n in stages.most_common():
        print(f"{100 * n / total:6.1f}%  {name}  (allocator leaf {100 * alloc[name] / total:.1f}%)")
        if name == SERIES:
            for sname, sn in sub.most_common():
                print(f"{'':9}{100 * sn / total:5.1f}%  {sname}")
    print(f"allocator (libc malloc/free at the leaf), all stages: {100 * sum(alloc.values()) / total:.1f}%")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
