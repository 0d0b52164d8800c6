"""The budgeted search: which compressed variants to build, in which order, stopping where
the accuracy budget says; the sparsity ladder it climbed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from workbench.edge import runtime, variants
from workbench.models import subject

# ===================================================================== the budgeted search


@dataclass
class SearchSpace:
    """What :func:`search` tries. Cheap things are searched; expensive ones are few."""

    slim_fractions: tuple[float, ...] = (0.25, 0.35)  # channels removed, largest tried first
    sparsities: tuple[float, ...] = (0.5, 0.7, 0.8, 0.9)  # the ladder (on the slim model)
    compare_all_layers: bool = True  # at the best level, prune the first and last layers too
    clusters: tuple[int, ...] = (16,)  # PCQAT from the sparsest level within budget
    qat: bool = True  # plain quantization-aware training of the float model

    def most_steps(self) -> dict[str, int]:
        """The most :func:`search` builds with this space (its ladder may stop early): the
        variants and, of them, int8 files and fine-tuned ones; the fine-tunes by technique.
        The plan prices notebook 03 from this (:mod:`workbench.run.workload`)."""
        fractions, levels, clusters = (
            len(self.slim_fractions),
            len(self.sparsities),
            len(self.clusters),
        )
        qat, ends = int(self.qat), int(self.compare_all_layers)
        slim_files = fractions * (1 + len(variants.SLIM_CONVERSIONS))  # float32 and the rest
        # the ladder's int8 files; at the best level its float32, the ends pruned too, PQAT
        # and PCQAT per cluster count
        variant_count = 4 + qat + slim_files + levels + 1 + ends + 1 + clusters
        return {
            "variants": variant_count,
            "int8": 1 + qat + fractions + levels + ends + 1 + clusters,
            "tuned": variant_count - 4,
            "slim": fractions,
            "prune": levels + ends,
            "qat": qat + 1 + clusters,  # QAT, PQAT, PCQAT
            "cluster": clusters,
        }


@dataclass
class SearchResult:
    """Every variant built, the winners within the budget, the frontiers, and the search's
    own account of what it tried and why it stopped."""

    variants: list[variants.Variant]
    budget_pp: float
    winners: dict[str, str | None]
    frontier_size: list[str]  # validation accuracy against gzip bytes
    frontier_speed: list[str]  # validation accuracy against p50 latency
    log: list[dict]
    rule: variants.PickRule | None = None  # how the winners were certified
    # what the winners would have been on the point estimate alone (the winner's curse)
    uncertified_winners: dict[str, str | None] | None = None
    n_val: int = 0  # validation images the winners were judged on

    def variant(self, name: str) -> variants.Variant:
        return next(v for v in self.variants if v.variant == name)

    def picks(self) -> list[dict]:
        """Each winner with its validation delta, its bound under the rule, the rule, and
        (measured after the fact, never used to choose) its test delta."""
        rows = []
        for role, name in self.winners.items():
            if name is None:
                continue
            v = self.variant(name)
            rows.append(
                {
                    "winner": role,
                    "variant": name,
                    "val_delta_pp": v.val_delta_pp,
                    "val_noise_pp": v.val_noise_pp,
                    "bound_pp": self.rule.bound_pp(v) if self.rule else v.val_delta_pp,
                    "rule": self.rule.describe() if self.rule else "point estimate",
                    "test_delta_pp": v.delta_pp,
                }
            )
        return rows


def pct(x: float) -> int:
    return int(round(100 * x))


def search(
    classifier,
    x_train: np.ndarray,
    y_train: np.ndarray,
    evaluation: subject.Evaluation,
    *,
    input_scale: float | None,
    budget_pp: float = 1.0,
    confidence: float = 0.9,
    settings: variants.Settings | None = None,
    space: SearchSpace | None = None,
    out_dir: Path | None = None,
    file_prefix: str = "",
    progress: bool = True,
    on_variant: Callable[[variants.Variant], None] | None = None,
) -> SearchResult:
    """The smallest and the fastest edge variant within ``budget_pp`` points of the float model.

    In order (each step's decision is logged):

    1. the four post-training variants, and plain QAT;
    2. structured pruning (fewer MACs: the way to a faster model on a CPU without 8-bit
       dot-product instructions, where float32 already runs near the peak), from the
       largest fraction of channels removed down to the first one within the budget
       (each is a fresh fine-tune, so the fastest candidate goes first), converted to
       float32, int8 and dynamic-range; the slim model within the budget is the *base* of
       what follows (the float model when none is);
    3. a sparsity ladder (``space.sparsities``) on the base, each level pruned on from the
       previous one with the first and last layers left dense, converted to int8, climbed
       until the validation accuracy leaves the budget;
    4. at the sparsest level within the budget: its first and last layers pruned too, one
       more rung (is leaving the ends dense worth it?), its float32 file (zeros only pay
       after gzip), PQAT, and sparsity-preserving clustering + PCQAT per cluster count.

    Names carry the base: ``slim35_pruned80_int8`` is the 35%-slimmed model pruned to 80%;
    ``pruned80_int8`` the float model pruned to 80% (no slim model within the budget).
    Fine-tuning the slim model costs fewer MACs per step than the float model, and what is
    built on it is small *and* does less work.

    The budget is judged on the validation images (held out from training, not the test
    images of the final table): the search explores on their point estimates, and the
    winners are picked only among the variants the :class:`~workbench.edge.variants.PickRule`
    certifies at ``confidence`` (the lower confidence bound of the validation delta within
    the budget), so that a pick holds on images the search never saw.
    """
    settings = settings or variants.Settings()
    space = space or SearchSpace()
    runner = variants.Builder(classifier, x_train, y_train, evaluation, input_scale=input_scale,
                     settings=settings, out_dir=out_dir, file_prefix=file_prefix,
                     progress=progress, on_variant=on_variant)  # fmt: skip
    log: list[dict] = []

    def within(v: variants.Variant) -> bool:
        return bool(variants.within_budget([v], budget_pp))

    def note(step: str, variant: variants.Variant | None, decision: str) -> None:
        log.append(
            {
                "step": step,
                "variant": variant.variant if variant else None,
                "status": variant.status if variant else None,
                "val_delta_pp": variant.val_delta_pp if variant else None,
                "gzip_bytes": variant.gzip_bytes if variant else None,
                "p50_ms": variant.p50_ms if variant else None,
                "decision": decision,
            }
        )

    # 1. post-training, and plain QAT
    for name in variants.POST_TRAINING:
        v = runner.run(variants.Recipe(name, (), name))
        note("post-training", v, "measured")
    if space.qat:
        v = runner.run(variants.Recipe("qat_int8", (variants.Step.of("qat"),), "int8"))
        note("quantization-aware training", v, "measured")
        runner.keep_only([])

    # 2. structured pruning: fewer channels. Each fraction is a fresh fine-tune of the float
    #    model (nothing to reuse), so the most aggressive comes first: if it is within the
    #    budget it is the fastest, and the milder ones need not be built.
    base: tuple[
        variants.Step, ...
    ] = ()  # what the ladder starts from: the slim model, or the float one
    prefix = ""
    for fraction in sorted(space.slim_fractions, reverse=True):
        slim_chain = (variants.Step.of("slim", fraction=fraction),)
        f = pct(fraction)
        v = runner.run(variants.Recipe(f"slim{f}_float32", slim_chain, "float32"))
        if v.ok:
            for kind in variants.SLIM_CONVERSIONS:
                runner.run(variants.Recipe(f"slim{f}_{kind}", slim_chain, kind))
        if v.ok and within(v):
            base, prefix = slim_chain, f"slim{f}_"
            note(
                "structured pruning",
                v,
                f"{f}% of channels removed, within budget: the ladder starts from it",
            )
            runner.keep_only([base])
            break
        why = "skipped" if not v.ok else f"loses more than {budget_pp:g} pp"
        note("structured pruning", v, f"{why}: try fewer channels removed")
        runner.keep_only([])
    if space.slim_fractions and not base:
        note(
            "structured pruning",
            None,
            "no fraction within budget: the rest starts from the float model",
        )

    # 3. the sparsity ladder, on the slim model when there is one within the budget
    chain: tuple[variants.Step, ...] = base
    best_chain, best_level = None, None
    for level in sorted(space.sparsities):
        chain = (*chain, variants.Step.of("prune", sparsity=level))
        v = runner.run(variants.Recipe(f"{prefix}pruned{pct(level)}_int8", chain, "int8"))
        if v.ok and within(v):
            best_chain, best_level = chain, level
            note("sparsity ladder", v, f"within {budget_pp:g} pp: climb on")
            runner.keep_only([chain])
            continue
        why = "skipped" if not v.ok else f"loses more than {budget_pp:g} pp"
        note("sparsity ladder", v, f"{why}: stop climbing")
        break
    if best_chain is None and runner.results[-1].ok and len(chain) == len(base) + 1:
        best_chain, best_level = chain, min(space.sparsities)  # the lowest, for reference
        note("sparsity ladder", None, "no level within budget: continue from the lowest one")

    # 4. from the sparsest level within budget
    if best_chain is not None:
        runner.keep_only([best_chain])

        def named(technique: str) -> str:  # e.g. "slim35_pqat80"
            return f"{prefix}{technique}{pct(best_level)}"

        v = runner.run(variants.Recipe(f"{named('pruned')}_float32", best_chain, "float32"))
        note("zeros and gzip", v, "float32 with zeros: small only after gzip")
        if space.compare_all_layers:
            # the ends-dense model with its first and last layers pruned too: what leaving
            # them dense buys, one more rung of fine-tuning (which only helps the comparison)
            all_chain = (*best_chain, variants.Step.of("prune", sparsity=best_level, keep="none"))
            v = runner.run(variants.Recipe(f"{named('pruned')}_all_int8", all_chain, "int8"))
            runner.keep_only([best_chain])
            note("which layers stay dense", v, "the first and last layers pruned too")
        v = runner.run(
            variants.Recipe(
                f"{named('pqat')}_int8", (*best_chain, variants.Step.of("pqat")), "int8"
            )
        )
        note("pruning-preserving QAT", v, "measured")
        runner.keep_only([best_chain])
        for k in space.clusters:
            steps = (
                *best_chain,
                variants.Step.of("cluster", clusters=k),
                variants.Step.of("pcqat"),
            )
            v = runner.run(variants.Recipe(f"{named('pcqat')}_c{k}_int8", steps, "int8"))
            note("clustering + PCQAT", v, f"{k} shared values per kernel")
            runner.keep_only([best_chain])
    runner.keep_only([])

    built = runner.results
    return SearchResult(
        variants=built,
        budget_pp=budget_pp,
        winners=variants.winners(built, budget_pp, confidence=confidence),
        rule=variants.PickRule(budget_pp, confidence),
        uncertified_winners=variants.winners(built, budget_pp),
        n_val=len(evaluation.y_val),
        frontier_size=variants.frontier(built, "gzip_bytes"),
        frontier_speed=variants.frontier(built, "p50_ms"),
        log=log,
    )


def ladder(found: SearchResult) -> list[dict]:
    """The sparsity ladder's levels that were built (on the slim model or on the float one):
    target and measured sparsity, accuracy."""
    ref = found.variant("float32")
    rows = []
    for v in found.variants:
        match = re.fullmatch(r"(?:slim\d+_)?pruned(\d+)_int8", v.variant)
        if not (v.ok and match):  # pruned80_all_int8 is not on the ladder
            continue
        level = match.group(1)
        rows.append(
            {
                "target_sparsity": int(level) / 100,
                "measured_sparsity": v.sparsity,
                "accuracy": v.accuracy,
                "delta_pp": v.delta_pp,
                "val_delta_pp": v.val_delta_pp,
                "gzip_bytes": v.gzip_bytes,
                "compression_x": ref.bytes / v.gzip_bytes if ref.ok else None,
            }
        )
    return rows


def write_manifest(found: SearchResult, folder: Path, *, extra: dict | None = None) -> dict:
    """The edge models notebooks 04 and 05 read: float32, int8 and the two winners.

    The default edge model is the fastest variant within the budget (int8 if none is).
    Returns the manifest, with its ``path``.
    """
    names = ["float32", "int8", found.winners["smallest"], found.winners["fastest"]]
    chosen = [found.variant(n) for n in dict.fromkeys(n for n in names if n)]
    chosen = [v for v in chosen if v.ok and v.file]
    entries = [
        {
            "variant": v.variant,
            "file": v.file,
            "recipe": v.recipe,
            "accuracy": v.accuracy,
            "val_accuracy": v.val_accuracy,
            "bytes": v.bytes,
            "gzip_bytes": v.gzip_bytes,
            "p50_ms": v.p50_ms,
            "macs": v.macs,
            "input_dtype": v.input_dtype,
            "roles": [role for role, name in found.winners.items() if name == v.variant],
        }
        for v in chosen
    ]
    default = found.winners["fastest"] or "int8"
    path = runtime.write_manifest(
        Path(folder),
        entries,
        default=default,
        extra={"winners": found.winners, "budget_pp": found.budget_pp, **(extra or {})},
    )
    return {"path": str(path), "default": default, "models": entries}
