"""How many intra-op threads an evaluation process gives torch.

Several evaluation processes on one machine (``torchrun --nproc_per_node N``, or runs
started side by side) each default to one thread per core and oversubscribe the CPU.
An evaluation process therefore uses ``len(os.sched_getaffinity(0)) // LOCAL_WORLD_SIZE``
threads (at least 1): the cores it may run on, shared by the processes torchrun started
on this machine (``LOCAL_WORLD_SIZE``, 1 when unset). Override it with the runner's
``num_threads`` or the environment variable ``INSID3LAB_NUM_THREADS``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["ENV_NUM_THREADS", "eval_num_threads", "threads_requested"]

ENV_NUM_THREADS = "INSID3LAB_NUM_THREADS"


def _positive_int(value, what: str) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ValueError(f"{what}={value!r}: must be an integer >= 1") from None
    if n < 1:
        raise ValueError(f"{what}={value!r}: must be an integer >= 1")
    return n


def eval_num_threads(
    num_threads: int | None = None, *, cpus: int | None = None, env: Mapping[str, str] | None = None
) -> int:
    """The intra-op thread count of one evaluation process.

    Args:
        num_threads: an explicit count (wins when given).
        cpus: the cores this process may use (default: ``len(os.sched_getaffinity(0))``,
            or ``os.cpu_count()`` where affinity is not available).
        env: the environment (default ``os.environ``): ``INSID3LAB_NUM_THREADS`` overrides,
            ``LOCAL_WORLD_SIZE`` is the number of processes sharing the cores.

    Returns:
        ``num_threads``, else ``INSID3LAB_NUM_THREADS``, else ``max(1, cpus // LOCAL_WORLD_SIZE)``.
    """
    env = os.environ if env is None else env
    if num_threads is not None:
        if isinstance(num_threads, bool):
            raise ValueError(f"num_threads={num_threads!r}: must be an integer >= 1")
        return _positive_int(num_threads, "num_threads")
    if env.get(ENV_NUM_THREADS, "").strip():
        return _positive_int(env[ENV_NUM_THREADS], ENV_NUM_THREADS)
    if cpus is None:
        try:
            cpus = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cpus = os.cpu_count() or 1
    local = _positive_int(env.get("LOCAL_WORLD_SIZE", "1") or "1", "LOCAL_WORLD_SIZE")
    return max(1, int(cpus) // local)


def threads_requested(num_threads: int | None = None, *, env: Mapping[str, str] | None = None) -> bool:
    """Whether the count differs in intent from torch's default (one per usable core): an explicit count, the
    environment override, or several local processes sharing the cores."""
    env = os.environ if env is None else env
    local = str(env.get("LOCAL_WORLD_SIZE", "1") or "1").strip()
    return num_threads is not None or bool(env.get(ENV_NUM_THREADS, "").strip()) or local not in ("", "1")
