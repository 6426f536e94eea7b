"""Issue 23: the job queue's workers on a Ray cluster (studio/workers_ray.py), on a local cluster of 2 CPUs that
this module starts, with CPU actors running the embedded model.

No assertion here reads a clock: two jobs are shown to run at once by one read of the library in which both are
running and both past their first step, which one worker can never produce; everything else waits on states with
generous bounds.
"""
import os
import signal
import time

import pytest

ray = pytest.importorskip("ray")

from engine.params import InputError  # noqa: E402
from studio.jobs import Jobs  # noqa: E402
from studio.library import Library  # noqa: E402
from studio.workers_ray import RayPool  # noqa: E402

TOY = {"prompt": "a red circle moving left on black", "duration_s": 0.5, "resolution": 32, "seed": 1}
BOUND_S = 300   # generous: CI and a training run may share the two cores


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


def wait_for(predicate, bound_s: float = BOUND_S):
    """predicate()'s first truthy value, polled until bound_s passes (then the falsy one, for the assert)."""
    deadline = time.time() + bound_s
    while not (got := predicate()) and time.time() < deadline:
        time.sleep(0.02)
    return got


def both_sampling(lib, a: int, b: int) -> bool:
    """One read of the library in which jobs a and b are both running and both past their first step."""
    rows = {r["id"]: r for r in lib.jobs(("running",), limit=50)}
    return a in rows and b in rows and rows[a]["step"] >= 1 and rows[b]["step"] >= 1


def test_more_gpus_than_any_node_has_is_refused_at_submit(cluster, tmp_path):
    jobs = Jobs(Library(tmp_path / "home"), "toy", workers=RayPool("toy", workers=0, gpus=1))
    with pytest.raises(InputError) as e:
        jobs.submit("generate", dict(TOY, steps=2))
    msg = str(e.value)
    assert msg.startswith("gpus:") and "needs 1 GPUs" in msg and "has 0" in msg and "\n" not in msg
    assert jobs.library.jobs() == []                              # nothing was queued


def test_gpu_workers_load_real_models_on_their_gpus_and_gangs_in_parallel():
    """The loaders an actor gets (no actor is started): a real model on a 1-GPU worker in bfloat16 on cuda, on an
    N-GPU worker through context parallelism over its N GPUs, the embedded model as the CLI loads it."""
    from engine.backends.parallel import load_parallel
    one, four, toy = (RayPool(n, workers=0, gpus=g) for n, g in (("ltx", 1), ("wan22-14b", 4), ("toy", 1)))
    assert one._loader.args == ("ltx",) and one._loader.keywords == {"device": "cuda", "dtype": "bfloat16"}
    assert four._loader.func is load_parallel and four._loader.args == ("wan22-14b", 4)
    assert toy._loader.args == ("toy",) and toy._loader.keywords == {}


def test_a_worker_that_cannot_load_fails_its_jobs_with_the_loaders_message(cluster, tmp_path, monkeypatch):
    """ltx without a model folder: the loader's one line is the job's error; another backend's worker goes on."""
    for var in ("CINEPATCH_MODELS", "CINEPATCH_LTX_MODEL"):
        monkeypatch.delenv(var, raising=False)
    lib = Library(tmp_path / "home")
    broken, fine = RayPool("ltx", workers=1), RayPool("reference", workers=1)
    try:
        ltx, ref = Jobs(lib, "ltx", workers=broken), Jobs(lib, "reference", workers=fine)
        spec = ref.spec
        monkeypatch.setattr(ltx, "_spec", spec)                  # no folder to read the spec from: submit anyway
        bad = [ltx.submit("generate", dict(TOY, steps=1)) for _ in range(2)]
        good = ref.submit("generate", dict(TOY, steps=2))
        for job in bad:
            row = ltx.wait(job, BOUND_S)
            assert row["state"] == "failed" and row["error"].startswith("model: the ltx backend needs a model folder")
        assert ref.wait(good, BOUND_S)["state"] == "done" and len(lib.videos_of_job(good)) == 1
    finally:
        broken.close()
        fine.close()


@pytest.fixture(scope="module")
def toy_pool(cluster, tmp_path_factory):
    """Two CPU actors of the embedded model, each with the model loaded (by a first job each: the two jobs are
    handed out while both actors are idle), so that jobs handed to both at once also sample at once."""
    pool = RayPool("toy", workers=2)
    assert wait_for(lambda: pool.slots() == 2), "the two actors did not start"
    warm = Jobs(Library(tmp_path_factory.mktemp("warm")), "toy", workers=pool)
    for job in [warm.submit("generate", dict(TOY, steps=1)) for _ in range(2)]:
        assert warm.wait(job, BOUND_S)["state"] == "done"
    yield pool
    pool.close()


@pytest.fixture
def jobs(tmp_path, toy_pool):
    assert wait_for(lambda: toy_pool.slots() == 2), "the pool's two workers are not both free"
    return Jobs(Library(tmp_path / "home", own=True), "toy", workers=toy_pool)


def test_two_jobs_really_run_at_once_on_two_workers(jobs):
    lib = jobs.library
    long = dict(TOY, duration_s=2, resolution=64)    # long enough to overlap on a loaded machine (as below)
    a = jobs.submit("generate", dict(long, steps=16))
    b = jobs.submit("generate", dict(long, steps=16, prompt="a blue square moving right on gray"))
    assert wait_for(lambda: both_sampling(lib, a, b)), (lib.job(a), lib.job(b))
    for job in (a, b):
        row = jobs.wait(job, BOUND_S)
        assert row["state"] == "done" and row["step"] == 16, row
        [video] = lib.videos_of_job(job)
        assert video["seed"] == 1 and video["backend"] == "toy" and os.path.getsize(video["path"]) > 0
    assert jobs.preview_path(a) is not None                      # previews streamed back to the studio's folder


def test_cancel_while_queued_and_while_running(jobs, monkeypatch):
    lib = jobs.library
    ends, event = {}, jobs._event
    monkeypatch.setattr(jobs, "_event", lambda job, ev: (ends.update({job: ev}) if "end" in ev else None,
                                                          event(job, ev)))
    # steps of a 2 s, 64 px job (not the 0.5 s, 32 px one's few milliseconds), so the cancel's message is
    # small beside a step on a loaded machine too
    a, b = (jobs.submit("generate", dict(TOY, steps=40, seed=s, duration_s=2, resolution=64)) for s in (1, 2))
    c = jobs.submit("generate", dict(TOY, steps=2))
    assert wait_for(lambda: both_sampling(lib, a, b))
    assert lib.job(c)["state"] == "queued"                       # both workers are busy with a and b
    assert jobs.cancel(c) and lib.job(c)["state"] == "cancelled" and lib.job(c)["started"] is None
    seen = lib.job(a)["step"]
    assert jobs.cancel(a)
    row = jobs.wait(a, BOUND_S)
    # The actor reports the steps done when the flag reached it and when the job stopped: the sampler checks the
    # flag before every step, so at most the step in flight is finished after it.
    end = ends[a]
    assert row["state"] == "cancelled" and end["end"] == "cancelled", (row, end)
    assert seen <= end["asked_at"] <= end["step"] <= end["asked_at"] + 1 < 40 and row["step"] == end["step"], end
    assert jobs.cancel(b) and jobs.wait(b, BOUND_S)["state"] == "cancelled"
    assert lib.videos() == [] and list((lib.home / "videos").iterdir()) == []


def test_a_killed_worker_interrupts_its_job_and_the_queue_goes_on(jobs, toy_pool):
    lib = jobs.library
    # 2 s, 64 px jobs (a 0.5 s, 32 px one lasts milliseconds once its second pass refines a guide): both must still be
    # sampling when one read of the library sees them, on a loaded machine too; b as long as a, which it must outlive
    a, b = (jobs.submit("generate", dict(TOY, steps=40, seed=s, duration_s=2, resolution=64)) for s in (1, 2))
    assert wait_for(lambda: both_sampling(lib, a, b))
    victim = next(w for w in toy_pool.workers if w.job == a)
    os.kill(victim.pid, signal.SIGKILL)                          # as a crash or a lost node would
    row = jobs.wait(a, BOUND_S)
    assert row["state"] == "interrupted" and "stopped" in row["error"] and "Retry" in row["error"], row
    assert lib.videos_of_job(a) == []
    assert jobs.wait(b, BOUND_S)["state"] == "done" and len(lib.videos_of_job(b)) == 1
    c = jobs.submit("generate", dict(TOY, steps=2))              # the next worker takes the queue
    assert jobs.wait(c, BOUND_S)["state"] == "done"
    assert wait_for(lambda: toy_pool.slots() == 2)               # a new actor took the dead one's place
    assert victim not in toy_pool.workers
