"""Probes: measurements that need the model itself, run inside the sandboxed model process.

A probe is a function ``probe(model, features, params) -> ProbeResult`` in the module of its
name here (inspect, explain, latency). ``model`` is the loaded SkopsModel or OnnxModel from
evaluators.model_runner: ``model.format``, ``model.task``, ``model.predict(features)`` (labels,
probabilities, classes, seconds), plus ``model.estimator`` (skops) or ``model.session``,
``model.feeds(features)`` and ``model.prediction(outputs, seconds)`` (ONNX), and
``model.loaded_rss_bytes`` (resident memory that loading the model added). ``features`` is the
whole test set's feature columns; ``params`` is a JSON object from the parent; ``progress`` is
called with the share of the probe done (0 to 1) by a probe that runs for seconds, so the
submission's progress line moves (the parent reads it, `evaluators.sandbox`). A probe returns a
JSON-serialisable document and plain (non-object) numpy arrays. Any exception fails the probe
alone; the parent's evaluator then reports why.
"""

import importlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

PROBE_NAMES = ("inspect", "explain", "latency")


@dataclass
class ProbeResult:
    document: dict
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeFiles:
    started: Path
    outcome: Path
    arrays: Path
    progress: Path


def probe_files(workdir: Path, name: str) -> ProbeFiles:
    return ProbeFiles(
        started=workdir / f"probe-{name}.started",
        outcome=workdir / f"probe-{name}.json",
        arrays=workdir / f"probe-{name}.npz",
        progress=workdir / f"probe-{name}.progress",
    )


def probe_function(name: str):
    if name not in PROBE_NAMES:
        raise ValueError(f"unknown probe {name!r}; known: {', '.join(PROBE_NAMES)}")
    return importlib.import_module(f"{__name__}.{name}").probe
