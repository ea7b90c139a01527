"""init_ray's local start: workers get the project's path and thread settings from the
raylet's environment, the workers ray.init boots are used, and the driver's environment
is left as it was."""

import json
import os
import subprocess
import sys
import time
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


# ------------------------------------------------------------ a node that starts late, tried again

def _fake_raylet():
    """A child process that looks like a raylet a failed start left behind (its argv[0])."""
    return subprocess.Popen(["bash", "-c", "exec -a raylet sleep 120"])


def test_a_node_start_that_times_out_is_tried_again_after_ending_what_it_left(monkeypatch, caplog):
    import pipelines.runtime as rt

    left, calls = [], []

    def start():
        calls.append(1)
        if len(calls) < 3:  # as ray/_private/node.py raises after its fixed 30 s
            left.append(_fake_raylet())
            time.sleep(0.3)  # the child has exec'd
            raise Exception("The current node timed out during startup. This could happen because some of the "
                            "raylet failed to startup or the GCS has become overloaded.")
        return "up"

    bystander = subprocess.Popen(["bash", "-c", "exec -a raylet sleep 120"])  # there before: not ours to end
    try:
        with caplog.at_level("WARNING", logger="pipelines.runtime"):
            assert rt.start_node(start, "starting a local Ray", tries=3, pause_s=0.01) == "up"
        assert len(calls) == 3
        for p in left:  # each failed try's processes were ended by pid before the next try
            assert p.wait(timeout=10) is not None
        assert bystander.poll() is None
        warnings = [r.getMessage() for r in caplog.records]
        assert len(warnings) == 2 and "try 1 of 3" in warnings[0] and "load average" in warnings[0]
        assert "ended 1 process(es)" in warnings[0]
    finally:
        for p in left + [bystander]:
            p.kill()
            p.wait()


def test_a_node_that_never_starts_ends_with_one_message_and_other_errors_are_not_retried(monkeypatch):
    import pytest

    import pipelines.runtime as rt

    calls = []

    def late():
        calls.append(1)
        raise Exception("The current node timed out during startup. This could happen because ...")

    with pytest.raises(rt.RayStartError) as e:
        rt.start_node(late, "starting a local Ray", tries=2, pause_s=0.01)
    assert len(calls) == 2
    text = str(e.value)
    assert "2 tries" in text and "fixed 30 s" in text and "--ray-address" in text and "\n" not in text

    def broken():
        calls.append(1)
        raise ValueError("num_cpus must be positive")

    calls.clear()
    with pytest.raises(ValueError, match="num_cpus"):
        rt.start_node(broken, "starting a local Ray", tries=3, pause_s=0.01)
    assert len(calls) == 1
    monkeypatch.setenv("MENTOR_RAY_START_TRIES", "0")
    with pytest.raises(ValueError, match="MENTOR_RAY_START_TRIES=0"):
        rt.start_node(broken, "starting a local Ray")


def test_init_ray_tries_again_when_ray_init_times_out(monkeypatch):
    """init_ray's local start goes through start_node: a ray.init that times out once is
    shut down and called again."""
    import ray

    import pipelines.runtime as rt

    seen = []

    def fake_init(**kw):
        seen.append(kw)
        if len(seen) == 1:
            raise Exception("The current node timed out during startup.")

    shutdowns = []
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", fake_init)
    monkeypatch.setattr(ray, "shutdown", lambda: shutdowns.append(1))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.setattr(rt.time, "sleep", lambda s: None)
    assert rt.init_ray(num_cpus=1).startswith("local ray")
    assert len(seen) == 2 and seen[1]["address"] == "local" and shutdowns == [1]
