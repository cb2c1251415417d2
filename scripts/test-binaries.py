#!/usr/bin/env python3
"""Prints `manifest_dir<TAB>executable` for every test binary of the named workspace packages, as
`cargo test --workspace --no-run` built them. Running those binaries again (say, against another
store back end) reuses the workspace build: `cargo test -p A -p B` would resolve features for
that selection alone and rebuild half the tree. Usage: test-binaries.py PACKAGE..."""
import json
import os
import subprocess
import sys

wanted = set(sys.argv[1:])
out = subprocess.run(
    ["cargo", "test", "--workspace", "--no-run", "--message-format=json"],
    check=True,
    stdout=subprocess.PIPE,
    text=True,
).stdout
for line in out.splitlines():
    try:
        msg = json.loads(line)
    except json.JSONDecodeError:
        continue
    if msg.get("reason") != "compiler-artifact" or not msg.get("executable"):
        continue
    if not msg.get("profile", {}).get("test"):
        continue
    pkg_dir = os.path.dirname(msg["manifest_path"])
    if os.path.basename(pkg_dir) in wanted:
        print(f"{pkg_dir}\t{msg['executable']}")
