#!/usr/bin/env python3
"""Runs a command and prints its wall time (s), CPU time (user and system, s) and peak RSS (MiB) as
JSON: {"seconds": .., "user_seconds": .., "system_seconds": .., "rss_mib": ..}.

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
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({
    "seconds": round(elapsed, 3),
    "user_seconds": round(usage.ru_utime, 3),
    "system_seconds": round(usage.ru_stime, 3),
    "rss_mib": round(usage.ru_maxrss / 1024, 1),
}))
