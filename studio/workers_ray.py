"""The Ray pool: a backend's jobs run on Ray actors, one actor per worker, anywhere on a cluster.

    cluster = Cluster.connect("auto", workers=4)          # or "ray://head:10001", or "head:6379"
    jobs = Jobs(library, "ltx", workers=cluster.pool("ltx"))

Each actor holds its loaded backend (it loads on the actor's first job and stays), asks Ray for
`gpus` GPUs (0: a CPU actor) and runs one job at a time. The studio keeps the queue and the library:
it hands a job to an idle actor with the job's media files (workers need not share a disk), the actor
streams back events (Ray's streaming generator: step, preview, end) and, at the end, the clips encoded
as mp4 + thumbnail bytes, which the studio writes into its data folder. A cancel is a flag the actor's
sampler checks at every step. An actor that dies under a job (killed, its node lost) ends that job
interrupted, with Retry; a new actor is started in its place wherever Ray finds room, and the other
actors go on with the queue. Nothing here imports Ray until a cluster is asked for: `pip install
cinepatch[ray]`.
"""
from __future__ import annotations

import functools
import os
import queue
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import ray

from engine.params import InputError
from studio.workers import CancelFlag, Slots, Task, describe, encode_clip, end_of, run_task

ADDRESS_ENV = "CINEPATCH_RAY_ADDRESS"
REACH_TIMEOUT_S = 5         # an address that does not answer in this long is refused at start
RESPAWN_AFTER_S = 5         # between attempts to start an actor that failed to start
NODES_FRESH_S = 10          # how long the cluster's node list is trusted (GPU check at submit)


# ----------------------------------------------------------------------------- the actor
class JobActor:
    """One worker: a backend loaded once, one job at a time, events streamed back. Threaded (max_concurrency
    above 1), so `cancel` runs while `run` does."""

    def __init__(self, name: str, loader):
        self.name, self._loader = name, loader
        self._backend, self._lock = None, threading.Lock()
        self._cancel: dict[int, CancelFlag] = {}
        self.where = f"{name} worker, pid {os.getpid()} on {socket.gethostname()}"

    def ready(self) -> dict:
        return {"pid": os.getpid(), "where": self.where}

    def backend(self):
        with self._lock:
            if self._backend is None:
                self._backend = self._loader()
            return self._backend

    def cancel(self, job_id: int) -> None:
        self._token(job_id).set()  # before or while it runs: run() finds the same token

    def _token(self, job_id: int) -> CancelFlag:
        with self._lock:
            return self._cancel.setdefault(int(job_id), CancelFlag())

    def run(self, task: Task, media: dict[str, bytes]):
        """A generator of the job's events, the last one {"end": ...}; the job runs on a thread of its own so
        that its progress callback can feed this generator."""
        cancel, events = self._token(task.job_id), queue.Queue()
        threading.Thread(target=self._work, args=(task, media, events.put, cancel), daemon=True).start()
        try:
            while True:
                ev = events.get()
                yield ev
                if "end" in ev:
                    return
        finally:
            with self._lock:
                self._cancel.pop(task.job_id, None)

    def _work(self, task: Task, media: dict[str, bytes], emit, cancel: CancelFlag):
        try:
            with tempfile.TemporaryDirectory(prefix="cinepatch-job-") as scratch:
                task = localise(task, media, Path(scratch))
                clips, sounds = run_task(task, self.backend, emit, cancel, self.where)
                end = {"end": "done", "clips": [encode_clip(c, task.timeline.fps, s) for c, s in zip(clips, sounds)]}
        except Exception as e:  # the loader's own message included: the job fails, the worker stays
            end = end_of(e, cancel)
        emit(end)


def localise(task: Task, media: dict[str, bytes], scratch: Path) -> Task:
    """The task with its media written into scratch/ and its timeline pointing there (a worker on another
    machine has none of the studio's files)."""
    from engine.requests import map_media
    from engine.timeline import Timeline
    if not media:
        return task
    local = {}
    for k, (path, data) in enumerate(sorted(media.items())):
        local[path] = str(scratch / f"m{k}{Path(path).suffix}")
        Path(local[path]).write_bytes(data)
    tl = task.timeline
    story = map_media(tl.to_dict(), lambda _field, p: local.get(tl.resolve(p), p))
    return replace(task, timeline=Timeline.from_dict(story))


def media_of(task: Task) -> dict[str, bytes]:
    """The bytes of every file the task's timeline reads, by the path it names them with."""
    tl = task.timeline
    return {tl.resolve(p): Path(tl.resolve(p)).read_bytes() for p in tl.media_paths()}


@functools.cache
def _actor_class():
    return ray.remote(JobActor)


# ----------------------------------------------------------------------------- the pool
@dataclass
class _Worker:
    actor: object
    ready: bool = False
    job: int | None = None
    where: str = ""
    pid: int | None = None


class RayPool(Slots):
    """`workers` actors for one backend, each with `gpus` GPUs (0: CPU actors); loader (picklable) builds the
    backend inside an actor (default: the registry's load_backend of `name`, on the actor's node)."""

    def __init__(self, name: str, workers: int = 1, gpus: int = 0, loader=None, cluster: "Cluster | None" = None):
        super().__init__()
        from engine.backends.registry import REAL, load_backend
        self.name, self.gpus, self.cluster = name, int(gpus), cluster or Cluster()
        # a real model on a GPU worker: on the GPU Ray gave the actor, in bfloat16 (the CLI's defaults are the CPU's)
        on_gpu = {"device": "cuda", "dtype": "bfloat16"} if self.gpus and name in REAL else {}
        if loader is None and self.gpus > 1:  # one video over several GPUs: context parallelism (its module)
            from engine.backends.parallel import load_parallel
            loader = functools.partial(load_parallel, name, self.gpus, dtype="bfloat16")
        self._loader = loader or functools.partial(load_backend, name, **on_gpu)
        self._lock = threading.Lock()
        self.workers: list[_Worker] = []
        self._closed = False
        for _ in range(int(workers)):
            self._spawn()

    def slots(self) -> int:
        with self._lock:
            return sum(w.ready and w.job is None for w in self.workers)

    def check(self) -> None:
        if self.gpus > (most := self.cluster.largest_node_gpus()):
            raise InputError(f"gpus: a {self.name} worker needs {self.gpus} GPUs on one node and the largest node "
                             f"of the Ray cluster has {most}; join a larger node or start the studio with "
                             f"--ray-gpus {self.name}={most}")

    def submit(self, task: Task, events) -> None:
        while True:  # the dispatcher saw a slot; should that worker have died since, the next one to free up
            with self._lock:
                w = next((w for w in self.workers if w.ready and w.job is None), None)
                if w is not None:
                    w.job = task.job_id
                    break
            self.wait_slot(1.0)
        threading.Thread(target=self._follow, args=(w, task, events), daemon=True,
                         name=f"cinepatch-ray-job-{task.job_id}").start()

    def cancel(self, job_id: int) -> None:
        with self._lock:
            w = next((w for w in self.workers if w.job == int(job_id)), None)
        if w is not None:
            w.actor.cancel.remote(int(job_id))

    def close(self) -> None:
        self._closed = True
        for w in list(self.workers):
            ray.kill(w.actor)

    # -- actors
    def _spawn(self):
        opts = dict(num_cpus=1, num_gpus=self.gpus, max_concurrency=4, max_restarts=0)
        w = _Worker(_actor_class().options(**opts).remote(self.name, self._loader))
        with self._lock:
            self.workers.append(w)
        threading.Thread(target=self._await_ready, args=(w,), daemon=True, name=f"cinepatch-ray-{self.name}").start()

    def _await_ready(self, w: _Worker):
        """Mark the actor ready once Ray has placed and started it (it may wait for a free GPU)."""
        try:
            info = ray.get(w.actor.ready.remote())
        except ray.exceptions.RayError as e:
            if self._closed:
                return
            print(f"cinepatch: a {self.name} worker did not start ({type(e).__name__}); trying again",
                  file=sys.stderr)
            time.sleep(RESPAWN_AFTER_S)
            self._replace(w)
            return
        with self._lock:
            w.ready, w.where, w.pid = True, info["where"], info["pid"]
        self.changed()

    def _replace(self, w: _Worker):
        with self._lock:
            if w in self.workers:
                self.workers.remove(w)
        try:
            ray.kill(w.actor)
        except Exception:  # already gone
            pass
        if not self._closed:
            self._spawn()

    def _follow(self, w: _Worker, task: Task, events):
        """Run one job on an actor, passing its events on; its death ends the job interrupted."""
        end, dead = None, False
        try:
            for ref in w.actor.run.options(num_returns="streaming").remote(task, media_of(task)):
                ev = ray.get(ref)
                if "end" in ev:
                    end = ev
                    break
                events(ev)
        except ray.exceptions.RayTaskError as e:  # our code raised inside Ray's machinery: a bug, said in one line
            end = {"end": "failed", "error": str(e.cause if e.cause is not None else e).splitlines()[0][:500]}
        except ray.exceptions.RayError as e:  # the actor or its node died under the job
            end, dead = {"end": "interrupted", "error": f"{w.where or 'its Ray actor'}: {type(e).__name__}"}, True
        except Exception as e:  # a media file vanished before it could be sent, the library refused a write
            w.actor.cancel.remote(task.job_id)  # the actor must not go on with a job nobody follows
            end = {"end": "failed", "error": describe(e)}
        with self._lock:
            w.job = None
        if dead:
            self._replace(w)
        events(end or {"end": "interrupted", "error": "its worker ended without a result"})
        self.changed()


# ----------------------------------------------------------------------------- the cluster
class Cluster:
    """The Ray cluster the studio joined, and how many workers (and GPUs each) every backend gets there."""

    def __init__(self, workers: int | None = None, gpus: dict[str, int] | None = None):
        self.workers, self.gpus = workers, dict(gpus or {})
        self._nodes, self._nodes_at = [], 0.0

    @classmethod
    def connect(cls, address: str, workers: int | None = None, gpus: dict[str, int] | None = None) -> "Cluster":
        """Join the cluster at `address` ("auto": the one started on this machine with `ray start`;
        "ray://host:10001": Ray Client; "host:6379": a head's GCS) -> InputError naming it when it cannot."""
        if not ray.is_initialized():
            reachable(address)
            try:
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
            except Exception as e:  # Ray's own words, first line
                why = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
                raise InputError(f"ray: cannot join a Ray cluster at {address} ({why})") from None
        return cls(workers, gpus)

    def pool(self, name: str, loader=None) -> RayPool:
        gpus = self.gpus.get(name, self.gpus.get("*", 1 if self.total("GPU") else 0))
        n = self.workers or (max(1, int(self.total("GPU")) // gpus) if gpus else max(1, len(self.nodes())))
        return RayPool(name, n, gpus, loader, self)

    def nodes(self) -> list[dict]:
        if time.time() - self._nodes_at > NODES_FRESH_S:
            self._nodes, self._nodes_at = [n for n in ray.nodes() if n.get("Alive")], time.time()
        return self._nodes

    def total(self, resource: str) -> float:
        return sum(n["Resources"].get(resource, 0) for n in self.nodes())

    def largest_node_gpus(self) -> int:
        return int(max((n["Resources"].get("GPU", 0) for n in self.nodes()), default=0))


def reachable(address: str) -> None:
    """A host:port address that answers a TCP connect within REACH_TIMEOUT_S, or InputError naming it (Ray itself
    would retry for a minute or more). "auto" is left to Ray, which says at once when no cluster runs here."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise InputError(f"ray: {address!r} is not a Ray address; use auto, host:port or ray://host:10001")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as e:
        raise InputError(f"ray: cannot reach a Ray cluster at {address} ({e.strerror or type(e).__name__})") from None


def parse_gpus(text: str | None) -> dict[str, int]:
    """--ray-gpus: "2" (every model's workers) or "ltx=2,wan=4" (per model; others get the default)."""
    out = {}
    for part in (text or "").split(","):
        name, _, n = part.strip().rpartition("=")
        if not part.strip():
            continue
        if not n.isdigit():
            raise InputError(f"ray-gpus: {part.strip()!r} is not a GPU count; use N or model=N, e.g. ltx=2,wan=4")
        out[name or "*"] = int(n)
    return out
