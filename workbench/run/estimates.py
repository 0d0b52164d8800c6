"""A time budget for the whole flow: what ``make run`` will do, and how long it should take here.

Notebook 02 trains, notebook 03 fine-tunes and converts, 04 serves, 05 trains students: the
work differs in kind, so each is priced at its own measured rate. Before any notebook starts,
:func:`make_plan` combines

- **the work each notebook is asked to do**: its parameters in the chosen profile (training
  images, fine-tuning steps, variants, requests...) and the dataset's image counts, read from
  the file's headers without decoding anything (:func:`workbench.data.counts.data_counts`). Each notebook's work is
  described by a :class:`~workbench.run.workload.WorkModel` in
  :data:`workbench.run.workload.MODELS`, which names the parameters it reads;
- **this machine's throughput now**: :func:`workbench.run.probe.probe` measures it in a fresh process, in a few
  seconds: training images/s of the seed, improved and student CNNs at their batch sizes
  (after warm-up), the first training step (graph tracing: what every fine-tuning set-up
  pays), Keras and LiteRT inference, one TFLite conversion and TensorFlow's import; the
  fixed costs measured once on the development machine (in
  ``workbench/run/calibration.json``) are scaled by how much slower than then the machine is now
  (:attr:`Rates.slowdown`);

into one :class:`Estimate` per notebook: seconds, with the terms that make them. When
``runs.json`` holds an earlier run of the notebook on this machine with its work recorded
(and that work is within ``MAX_WORK_RATIO`` of today's), the estimate is that run's
measured time scaled by the work ratio instead, and says so.

:class:`workbench.run.progress.Progress` then shows the run: one line that updates every second on a terminal (a
line every 30 s into a log file), with the notebook, its elapsed time against its estimate
and the whole run's ETA. After each notebook, the remaining estimates are rescaled by how far
off the finished ones were.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from workbench.core import machine
from workbench.data import counts
from workbench.run import params, probe, workload

# After each notebook the remaining estimates are multiplied by actual / estimated so far,
# with RESCALE_PRIOR_S of estimated time counted as on target (a short first notebook, mostly
# fixed costs, does not swing the long ones alone), kept within RESCALE_BOUNDS.
RESCALE_PRIOR_S = 60.0


RESCALE_BOUNDS = (0.25, 4.0)


# ===================================================================== estimates


RECORDED = "as recorded"  # a term's rate when it comes from a recorded run


FIXED_LABELS = ("fixed", "TensorFlow import")  # shown together as the fixed cost


@dataclass(frozen=True)
class Term:
    """One priced term of an estimate."""

    label: str
    quantity: float
    unit: str
    seconds: float
    rate: str  # the rate in words, e.g. "410 images/s"


@dataclass
class Estimate:
    """How long one notebook should take here, and why."""

    notebook: str
    seconds: float | None  # None: no estimate (no probe, no usable recorded run, no model)
    basis: str  # "probe", "recorded run ...", or why there is none
    terms: list[Term] = field(default_factory=list)
    work: dict[str, float] = field(default_factory=dict)  # label -> quantity
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """The main terms in a line: "147,000 images at 410 images/s = 6:00; ...; 0:30 fixed"."""
        if self.seconds is None or not self.terms:
            return self.basis
        fixed = sum(t.seconds for t in self.terms if t.label in FIXED_LABELS)
        main = sorted(
            (t for t in self.terms if t.label not in FIXED_LABELS), key=lambda t: -t.seconds
        )
        parts = []
        for t in main[:3]:
            if t.seconds < 0.5:
                continue
            amount = f"{_quantity(t.quantity)}{' ' + t.unit if t.unit else ''}"
            rate = "" if t.rate in (RECORDED, "") else f" at {t.rate}"
            parts.append(f"{t.label} {amount}{rate} = {clock(t.seconds)}")
        parts.append(f"{clock(fixed)} fixed (start, imports, figures, exports)")
        text = "; ".join(parts)
        return text if self.basis == "probe" else f"{self.basis}: {text}"

    def record(self) -> dict:
        """What runs.json keeps next to the measured seconds (for the report and the next
        run's scaling)."""
        if self.seconds is None:
            return {"estimate_basis": self.basis}
        return {
            "estimate_s": round(self.seconds, 1),
            "estimate_basis": self.basis,
            "work": {k: _rounded(v) for k, v in self.work.items()},
            "estimate_terms": {t.label: round(t.seconds, 2) for t in self.terms},
            "machine": machine.machine_id(),
        }


def _rounded(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 3)


def _quantity(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or value >= 100 else f"{value:.2g}"


def clock(seconds: float | None) -> str:
    """``m:ss`` (``h:mm:ss`` from an hour); ``?`` for no value."""
    if seconds is None:
        return "?"
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _cost(w: workload.Work, rates: probe.Rates) -> tuple[float, str]:
    """(seconds, the rate in words) of one term."""
    slow = rates.slowdown
    kind, _, arg = w.rate.partition(":")
    if kind == "train":
        arch, _, technique = arg.partition(":")
        if arch not in rates.train_ips:  # an architecture the probe did not train
            arch = min(rates.train_ips, key=rates.train_ips.get)  # its slowest: an upper bound
        ips = rates.train_ips[arch] / workload.STEP_FACTOR.get(technique, 1.0)
        return w.quantity / ips, f"{ips:,.0f} images/s"
    if kind == "infer":  # a forward pass of a model whose training the probe timed
        arch = arg if arg in rates.train_ips else min(rates.train_ips, key=rates.train_ips.get)
        ips = rates.train_ips[arch] * workload.INFERENCE_SPEEDUP
        return w.quantity / ips, f"{ips:,.0f} images/s"
    if kind == "first_step":
        arch, _, technique = arg.partition(":")
        if arch not in rates.first_step_s:
            arch = max(rates.first_step_s, key=rates.first_step_s.get)
        each = rates.first_step_s[arch] * workload.SETUP_FACTOR.get(technique, 1.0)
        return w.quantity * each, f"{each:.1f} s each"
    per_unit = {
        "predict": (1 / rates.predict_ips, f"{rates.predict_ips:,.0f} images/s"),
        "tflite": (rates.tflite_ms / 1e3, f"{1e3 / rates.tflite_ms:,.0f} images/s"),
        "latency": (rates.latency_ms / 1e3, f"{rates.latency_ms:.2f} ms each"),
        "convert": (rates.convert_s, f"{rates.convert_s:.1f} s each"),
        "calibrate": (
            workload.CALIBRATION_PER_LATENCY * rates.latency_ms / 1e3,
            f"{workload.CALIBRATION_PER_LATENCY * rates.latency_ms:.1f} ms each",
        ),
        "import": (rates.import_s, "as measured"),
        "wall": (1.0, ""),
        "knn": (
            workload.KNN_PREDICT_MS * slow / 1e3,
            f"{workload.KNN_PREDICT_MS * slow:.1f} ms each",
        ),
        "epoch": (workload.EPOCH_S * slow, f"{workload.EPOCH_S * slow:.1f} s each"),
        "server": (workload.SERVER_START_S * slow, f"{workload.SERVER_START_S * slow:.1f} s each"),
        "request": (workload.REQUEST_MS * slow / 1e3, f"{workload.REQUEST_MS * slow:.0f} ms each"),
        "served": (
            workload.SERVED_IMAGE_MS * slow / 1e3,
            f"{1e3 / (workload.SERVED_IMAGE_MS * slow):,.0f} images/s",
        ),
        "cut": (workload.CUT_S * slow, f"{workload.CUT_S * slow:.1f} s each"),
        "shaped_cell": (
            workload.SHAPED_CELL_S * slow,
            f"{workload.SHAPED_CELL_S * slow:.1f} s each",
        ),
    }
    seconds, text = per_unit[kind]  # "fixed" is priced per notebook (estimate_from_probe)
    return w.quantity * seconds, text


def estimate_from_probe(name: str, work: list[workload.Work], rates: probe.Rates) -> list[Term]:
    """Priced terms of notebook ``name``; its fixed term from :data:`FIXED_S`."""
    terms = []
    for w in work:
        if w.rate == "fixed":
            seconds = workload.FIXED_S.get(name, max(workload.FIXED_S.values())) * rates.slowdown
            terms.append(Term(w.label, w.quantity, w.unit, seconds, "measured once"))
        else:
            terms.append(Term(w.label, w.quantity, w.unit, *_cost(w, rates)))
    return terms


def scale_recorded(
    recorded: dict, work: dict[str, float]
) -> tuple[float, float, dict[str, float]] | None:
    """An estimate from an earlier run: its measured seconds times the ratio of the work now
    to the work then, each term weighted by its share of that run's estimate.

    Returns:
        (seconds, work ratio, each term's seconds scaled to today's work), or None when the
        run recorded no work, its terms differ from today's (the notebook's work model
        changed), or the work is more than :data:`MAX_WORK_RATIO` away from it.
    """
    old_work, old_terms = recorded.get("work"), recorded.get("estimate_terms")
    if not old_work or not old_terms or set(old_work) != set(work) or set(old_terms) != set(work):
        return None
    scaled = {}
    for label, seconds in old_terms.items():
        if old_work[label] == work[label]:
            scaled[label] = seconds
        elif old_work[label] > 0:
            scaled[label] = seconds * work[label] / old_work[label]
        else:
            return None  # work that was not there: the old run says nothing about its cost
    before = sum(old_terms.values())
    if before <= 0 or not recorded.get("seconds"):
        return None
    ratio = sum(scaled.values()) / before
    if not 1 / workload.MAX_WORK_RATIO <= ratio <= workload.MAX_WORK_RATIO:
        return None
    return recorded["seconds"] * ratio, ratio, scaled


# ===================================================================== the plan


@dataclass
class Plan:
    """What ``make run`` will do: the data, one estimate per notebook, and how they were made."""

    profile: str
    data: list[counts.DataCounts]
    estimates: dict[str, Estimate]
    rates: probe.Rates | None
    probe_note: str  # how the throughput was measured, or why it was not

    @property
    def total_s(self) -> float | None:
        known = [e.seconds for e in self.estimates.values() if e.seconds is not None]
        return sum(known) if known else None

    def describe(self) -> str:
        """The data found and the plan table, as printed before the first notebook."""
        lines = [d.describe() for d in self.data]
        lines.append(f"throughput: {self.probe_note}")
        lines.append(f"plan ({self.profile} profile), estimated on this machine:")
        width = max(len(n) for n in self.estimates) if self.estimates else 10
        for name, e in self.estimates.items():
            lines.append(f"  {name:<{width}}  {clock(e.seconds):>7}  {e.summary()}")
            lines += [f"  {'':<{width}}           note: {note}" for note in e.notes]
        unknown = [n for n, e in self.estimates.items() if e.seconds is None]
        total = clock(self.total_s)
        lines.append(
            f"  {'total':<{width}}  {total:>7}"
            + (f"  (without {', '.join(unknown)}: no estimate)" if unknown else "")
        )
        return "\n".join(lines)


def read_runs() -> dict:
    """``reports/results/runs.json`` (empty when there is none or it cannot be read)."""
    from workbench.core import paths

    path = paths.reports_dir("results") / "runs.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def make_plan(
    names: list[str],
    profile: str,
    *,
    measure: bool = True,
    probe_fn: Callable[[], probe.Rates] | None = None,
    runs: Mapping[str, dict] | None = None,
    environment: Callable[[list[str]], dict] | None = None,
) -> Plan:
    """The data, and how long each notebook should take on this machine.

    Args:
        names: the notebooks to run, in order.
        profile: ``full`` or a profile in ``notebooks/params/``.
        measure: run the throughput probe when a notebook needs it (False: ``--no-estimate``:
            only recorded runs on this machine give estimates).
        probe_fn: measures the machine (default :func:`probe`; tests give a stub).
        runs: recorded runs (default: ``runs.json``).
        environment: what 04 depends on (default: :func:`link_environment`; tests stub it).

    Raises:
        workbench.data.datasets.DatasetError: a dataset is missing.
        workbench.run.params.ProfileError: the profile does not fit a notebook.
    """
    runs = read_runs() if runs is None else runs
    values = {name: params.notebook_values(name, profile) for name in names}
    datasets, data_of = _datasets(names, values)
    links = (environment or workload.link_environment)(names)
    if "02-cloud-cifar10-cnn" in names and "checkpoints" not in links:
        links = links | {"checkpoints": workload.find_checkpoints()}
    work = {name: _work(name, values[name], data_of.get(name), links) for name in names}
    here = machine.machine_id()
    estimates = {name: _from_record(name, work[name], runs.get(name) or {}, here) for name in names}
    needs_probe = any(e.seconds is None and e.work for e in estimates.values())
    rates, note = None, "not needed: every notebook has a recorded run on this machine"
    if needs_probe and not measure:
        note = "not measured (--no-estimate)"
    elif needs_probe:
        try:
            rates = (probe_fn or probe.probe)()
            note = f"measured now in {rates.probe_s:.0f} s: {rates.describe()}"
            probe.save_probe(rates)
        except probe.ProbeError as err:
            note = f"not measured: {err}"
    for name, e in estimates.items():
        if e.seconds is not None or not e.work:  # recorded, or no work model
            continue
        if rates is None:
            e.basis = f"no estimate: throughput {note}"
            continue
        e.terms = estimate_from_probe(name, work[name][0], rates)
        e.seconds, e.basis = sum(t.seconds for t in e.terms), "probe"
    return Plan(profile, datasets, estimates, rates, note)


def _datasets(
    names: list[str], values: dict
) -> tuple[list[counts.DataCounts], dict[str, counts.DataCounts]]:
    """The datasets the notebooks read (each once) and which one each reads (none: iris)."""
    from workbench.run import params

    found: dict[str | None, counts.DataCounts] = {}
    data_of: dict[str, counts.DataCounts] = {}
    for name in names:
        declared = [p for p in params.DATA_PARAMETERS if p in values[name]]
        if not declared:  # reads no image dataset (notebook 01: iris)
            continue
        key = values[name][declared[0]]
        key = None if key is None else str(key)
        if key not in found:
            found[key] = counts.data_counts(key)
        data_of[name] = found[key]
    return list(found.values()), data_of


def _work(
    name: str, values: dict, counts: counts.DataCounts | None, links: dict
) -> tuple[list[workload.Work], list[str]] | str:
    """Notebook ``name``'s work and the notes for this run, or why there is none."""
    model = workload.MODELS.get(name)
    if model is None:
        return "no work model for this notebook in workbench.run.workload.MODELS"
    missing = [p for p in model.uses if p not in values]
    if missing:
        return f"its parameters cell lacks {missing}: update workbench.run.workload.MODELS"
    env = workload.Environment(counts and counts.n_train, counts and counts.n_test, **links)
    used = {p: values[p] for p in model.uses}
    try:
        notes = list(model.notes) + (model.explain(used, env) if model.explain else [])
        return model.terms(used, env), notes
    except ValueError as err:
        return f"no estimate: {err}"


def _from_record(
    name: str, work: tuple[list[workload.Work], list[str]] | str, recorded: dict, here: str
) -> Estimate:
    """The estimate from an earlier run on this machine, scaled by the work ratio; without
    one, an estimate still to be priced (``seconds`` None)."""
    if isinstance(work, str):
        return Estimate(name, None, work)
    items, notes = work
    quantities = {w.label: w.quantity for w in items}
    scaled = scale_recorded(recorded, quantities) if recorded.get("machine") == here else None
    if scaled is None:
        return Estimate(name, None, "", work=quantities, notes=notes)
    seconds, ratio, terms = scaled
    basis = (
        f"recorded run ({recorded.get('profile', '?')} profile, "
        f"{clock(recorded['seconds'])}) x work ratio {ratio:.2f}"
    )
    share = seconds / sum(terms.values())  # the terms, as that run turned out
    priced = [Term(w.label, w.quantity, w.unit, terms[w.label] * share, RECORDED) for w in items]
    return Estimate(name, seconds, basis, priced, quantities, notes)
