"""Several processes on one machine: a free port, a gloo process group, the workers ``torch.multiprocessing`` starts."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from helpers.runs import FakeModel, comparable


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gloo_group(rank: int, world: int, port: int) -> Iterator[None]:
    """This process as ``rank`` of a ``world``-process gloo group on 127.0.0.1:``port``, for the ``with`` block."""
    import torch.distributed as dist

    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def distributed_worker(rank: int, world: int, port: int, jobs: list[tuple]) -> None:
    """Run ``run_evaluation`` with a FakeModel in a gloo process group (for torch.multiprocessing).

    jobs: (dataset name, data root, episodes, out dir[, resume]) evaluated one after the other, seed 3.
    """
    from insid3lab.eval import build_dataset, run_evaluation

    with gloo_group(rank, world, port):
        for name, root, episodes, out, *resume in jobs:
            ds = build_dataset(name, root, shots=1)
            summary = run_evaluation(
                FakeModel(), ds, out, episodes=episodes, seed=3, progress=False, resume=bool(resume and resume[0])
            )
            with open(Path(out) / f"returned.rank{rank}.json", "w") as fh:
                json.dump(comparable(summary), fh)


def cli_worker(rank: int, world: int, port: int, argv: list[str]) -> None:
    """Run ``insid3lab eval`` as torchrun would: the process group comes from the environment."""
    from insid3lab.cli.eval import main

    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    main(argv)
