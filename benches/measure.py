#!/usr/bin/env python3
"""Runs a command and prints its wall time (s) and peak RSS (MiB) as JSON: {"seconds": .., "rss_mib": ..}.

Used by benches/export-vs-copy.sh; stdout of the command is discarded, stderr kept."""
import json
import resource
import subprocess
import sys
import time

start = time.perf_counter()
proc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)
elapsed = time.perf_counter() - start
if proc.returncode != 0:
    sys.exit(f"command failed with exit code {proc.returncode}: {' '.join(sys.argv[1:])}")
rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": round(elapsed, 3), "rss_mib": round(rss_kib / 1024, 1)}))
