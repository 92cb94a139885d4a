"""Where a batch runs: in this process, on a local Dask cluster, or on an existing one.

The only module that knows about workers. :mod:`segsem_lite.batch` hands it one job per
image (a picklable function and its arguments); the engine yields each image's result as
it finishes. With Dask, every worker loads the model once (:class:`ModelRef` names it, so
no model object travels), a worker that dies has its image retried elsewhere, and the
client holds only the small records that come back.

``dask[distributed]`` is imported only when a cluster is asked for.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from .errors import SegSEMError

__all__ = ["ModelRef", "Engine", "resolve_model", "open_dataset"]


@dataclass(frozen=True)
class ModelRef:
    """A model by name, loaded where it is used (each Dask worker loads it once).

    Attributes
    ----------
    spec : str
        What ``--model`` takes: ``traditional``, ``default``, a built-in name, a checkpoint
        path or an official config name.
    checkpoint : str or None
        Meta's checkpoint for an official config.
    device : str
    threads : int or None
        torch and OpenCV threads to use where it is loaded (None leaves them).
    """

    spec: str
    checkpoint: str | None = None
    device: str = "auto"
    threads: int | None = None


_LOADED: dict[ModelRef, Any] = {}


def resolve_model(model: Any) -> Any:
    """A :class:`ModelRef` loaded (once per process), or any other model as it is."""
    if not isinstance(model, ModelRef):
        return model
    if model not in _LOADED:
        if model.threads:
            import cv2

            cv2.setNumThreads(model.threads)
        from .registry import load_model

        loaded = load_model(model.spec, checkpoint=model.checkpoint, device=model.device)
        if loaded is not None and model.threads:
            import torch

            torch.set_num_threads(model.threads)
        _LOADED[model] = loaded
    return _LOADED[model]


_DATASETS: dict[tuple, Any] = {}


def open_dataset(dataset: Any) -> Any:
    """A :class:`~segsem_lite.dataset.Dataset`, opened once per process when given as a path or as
    :meth:`~segsem_lite.dataset.Dataset.spec` (path and options)."""
    from pathlib import Path

    from .dataset import Dataset

    if isinstance(dataset, Dataset):
        return dataset
    path, options = dataset if isinstance(dataset, tuple) else (dataset, ())
    root = Path(path)
    meta = (root if root.is_dir() else root.parent) / "meta.csv"
    key = (str(root.resolve()), options, meta.stat().st_mtime if meta.exists() else 0.0)
    if key not in _DATASETS:
        _DATASETS[key] = Dataset(root, **dict(options))
    return _DATASETS[key]


@dataclass(frozen=True)
class Engine:
    """How a batch runs.

    Attributes
    ----------
    workers : int
        0 runs in this process; N > 0 starts a local Dask cluster of N processes with one
        thread each.
    scheduler : str or None
        Address of an existing Dask scheduler (``tcp://host:8786``, from ``dask scheduler``,
        dask-jobqueue or dask-kubernetes); its workers must see the dataset and output folders.
    retries : int
        How often an image whose worker died is tried again elsewhere.
    """

    workers: int = 0
    scheduler: str | None = None
    retries: int = 3

    def __post_init__(self) -> None:
        if self.workers < 0:
            raise SegSEMError(f"--workers {self.workers}: expected 0 (in-process) or a positive number of processes")
        if self.workers and self.scheduler:
            raise SegSEMError("--workers and --scheduler: give one, a local cluster or an existing one")

    @property
    def distributed(self) -> bool:
        return bool(self.workers or self.scheduler)

    def map(self, fn: Callable, jobs: Iterable[tuple], *, shared: tuple = (), progress: bool = False,
            desc: str = "images", total: int | None = None) -> Iterator[Any]:
        """Run ``fn(*shared, *job)`` for every job; yield the results as they finish.

        ``shared`` (the dataset, the model reference, the settings) goes with every task, so
        on Dask it should be small (see :func:`open_dataset`). In-process the results come in order; on Dask in completion order (each
        result says which job it belongs to, so the caller orders them).
        """
        from tqdm.auto import tqdm

        jobs = list(jobs)
        bar = tqdm(total=total if total is not None else len(jobs), disable=not progress, desc=desc, unit="img")
        try:
            if not self.distributed:
                for job in jobs:
                    yield fn(*shared, *job)
                    bar.update(1)
                return
            with self._client() as client:
                link = getattr(client, "dashboard_link", None)
                if progress and link:
                    print(f"Dask dashboard: {link}", file=sys.stderr)
                from distributed import as_completed

                # shared travels inside each task (keep it small: a dataset's path, not the dataset), so a task
                # whose worker died is simply run again elsewhere
                futures = [client.submit(fn, *shared, *job, key=f"segsem-{os.getpid()}-{id(jobs)}-{i}",
                                         retries=self.retries, pure=False)
                           for i, job in enumerate(jobs)]
                for fut in as_completed(futures):
                    result = fut.result()
                    fut.release()
                    yield result
                    bar.update(1)
        finally:
            bar.close()

    def _client(self):
        try:
            from distributed import Client, LocalCluster
        except ImportError as exc:
            raise SegSEMError(f"--workers/--scheduler need dask[distributed] ({exc}); pip install 'dask[distributed]'") \
                from None
        if self.scheduler:
            try:
                return Client(self.scheduler, timeout="20s")
            except (OSError, TimeoutError) as exc:
                raise SegSEMError(f"--scheduler {self.scheduler}: no Dask scheduler answered ({exc})") from None
        cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                               dashboard_address=":0", silence_logs=40)
        client = Client(cluster)
        _close = client.close

        def close(*args, **kwargs):  # the client's cluster goes with it
            _close(*args, **kwargs)
            cluster.close()

        client.close = close
        return client
