"""init_ray's local start: workers get the project's path and thread settings from the
raylet's environment, the workers ray.init boots are used, and the driver's environment
is left as it was."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, os, sys
sys.path.insert(0, {root!r})
KEYS = ("PYTHONPATH", "OMP_NUM_THREADS", "TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel")
before = {{k: os.environ.get(k) for k in KEYS}}
from pipelines.runtime import init_ray
import ray
init_ray(num_cpus=1)

@ray.remote(num_cpus=1)
def worker_view():
    import pipelines.stages  # the project imports in a worker started from another cwd
    return {{"pythonpath": os.environ.get("PYTHONPATH", ""), "omp": os.environ.get("OMP_NUM_THREADS"),
             "glog": os.environ.get("GLOG_minloglevel")}}

def parent(p):
    return int(open(f"/proc/{{p}}/stat").read().rsplit(")", 1)[1].split()[1])

def idle_workers():  # idle workers of this driver's own Ray (worker -> raylet -> this process)
    pids = set()
    for p in os.listdir("/proc"):
        try:
            if (p.isdigit() and open(f"/proc/{{p}}/cmdline").read().startswith("ray::IDLE")
                    and parent(parent(p)) == os.getpid()):
                pids.add(int(p))
        except (OSError, ValueError, IndexError):
            pass
    return pids

import time
deadline = time.time() + 60
while not idle_workers() and time.time() < deadline:
    time.sleep(0.2)
booted = idle_workers()

@ray.remote(num_cpus=1)
def pid():
    return os.getpid()

view = ray.get(worker_view.remote())
print("VIEW " + json.dumps({{"worker": view, "driver_unchanged": {{k: os.environ.get(k) for k in KEYS}} == before,
                            "booted": sorted(booted), "task_pid": ray.get(pid.remote())}}))
ray.shutdown()
"""


def test_local_workers_inherit_the_environment_and_the_driver_keeps_its_own(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OMP_NUM_THREADS", "RAY_ADDRESS")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT.format(root=str(ROOT))], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("VIEW ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    view = json.loads(lines[-1][5:])
    assert str(ROOT) in view["worker"]["pythonpath"].split(os.pathsep)
    assert view["worker"]["omp"] == "1" and view["worker"]["glog"] == "2"
    assert view["driver_unchanged"]
    # the job's tasks run in the worker processes ray.init booted (a job runtime_env
    # would make Ray boot new ones and retire these)
    assert view["booted"] and view["task_pid"] in view["booted"]
