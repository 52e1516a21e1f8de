#!/usr/bin/env python3
"""Shrinks fuzz/corpus/<target>/ to at most CAP files that cover the most edges.

`cargo fuzz cmin` keeps every input that adds a feature (edge hit counts included), which
for the JSON and TOML targets is thousands of files. This runs the built target with
libFuzzer's set-cover merge on edges only (-use_counters=0), orders its picks greedily by
the edges each adds, and keeps the first CAP. Build the target first (`cargo fuzz build -a`).

    python3 trim_corpus.py marathon_apps 150
"""

import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BINARY = os.path.join(HERE, "target/x86_64-unknown-linux-gnu/release")


def features(control_file):
    """(file, size, set of features) per input of a set-cover merge control file."""
    lines = open(control_file).read().split("\n")
    count = int(lines[0])
    files = lines[2 : 2 + count]
    sizes, feats = {}, {}
    for line in lines[2 + count :]:
        parts = line.split()
        if parts and parts[0] == "STARTED":
            sizes[int(parts[1])] = int(parts[2])
        elif parts and parts[0] == "FT":
            feats[int(parts[1])] = set(parts[2:])
    return [(files[i], sizes.get(i, 0), f) for i, f in feats.items()]


def greedy(inputs):
    """Inputs in the order a greedy set cover picks them (most new features, then smallest)."""
    left = set().union(*(f for _, _, f in inputs)) if inputs else set()
    order = []
    while left:
        best = max(inputs, key=lambda x: (len(x[2] & left), -x[1]))
        if not best[2] & left:
            break
        left -= best[2]
        order.append(best[0])
    return order


def main():
    target, cap = sys.argv[1], int(sys.argv[2])
    corpus = os.path.join(HERE, "corpus", target)
    with tempfile.TemporaryDirectory() as tmp:
        control = os.path.join(tmp, "control")
        out = os.path.join(tmp, "out")
        os.mkdir(out)
        subprocess.run(
            [os.path.join(BINARY, target), "-set_cover_merge=1", "-use_counters=0",
             "-merge_control_file=" + control, out, corpus],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        keep = greedy(features(control))[:cap]
        staged = os.path.join(tmp, "keep")
        os.mkdir(staged)
        for path in keep:
            shutil.copy(path, staged)
        shutil.rmtree(corpus)
        shutil.copytree(staged, corpus)
    print(f"{target}: kept {len(keep)} files")


if __name__ == "__main__":
    main()
