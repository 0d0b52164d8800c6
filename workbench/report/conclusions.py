"""Conclusions in words, generated from the recorded figures of each stage: the search's
winners, edge against cloud, split computing and cascades. Every number comes from the
run; where a difference is within its noise, the sentence says so.
"""

from __future__ import annotations

import math
import re

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench.edge import distill, search, variants


def _known(value) -> bool:
    """A figure that was measured or estimated: not None, not NaN (a DataFrame's None)."""
    return value is not None and value == value


def _threads(n: int) -> str:
    return f"{n} thread" if n == 1 else f"{n} threads"


def noise_words(difference_pp: float, noise_pp: float | None, *, z: float = 1.96) -> str:
    """``"± 1.5 pp, one standard error: within noise"`` for a difference of two accuracies.

    Within noise when the difference is smaller than ``z`` standard errors (1.96: a 95%
    two-sided test), so a reader does not take a lucky split of the test images for a result.
    Empty when the noise is unknown.
    """
    if not _known(noise_pp):
        return ""
    verdict = "within noise" if abs(difference_pp) < z * noise_pp else "beyond noise"
    return f"\u00b1 {noise_pp:.1f} pp, one standard error: {verdict}"


def _noisy(v: variants.Variant) -> str:
    """``"+0.55 ± 1.53 pp"``: a validation delta with its standard error, when known."""
    if v.val_delta_pp is None:
        return "not measured"
    noise = f" \u00b1 {v.val_noise_pp:.2f}" if v.val_noise_pp is not None else ""
    return f"{v.val_delta_pp:+.2f}{noise} pp"


def search_conclusions(
    found: search.SearchResult, *, peak=None, dot_flags=(), threads: int = 1
) -> str:
    """What the search found, in a few sentences of Markdown (every number from ``found``)."""
    ref = found.variant("float32")
    small = found.variant(found.winners["smallest"]) if found.winners["smallest"] else None
    fast = found.variant(found.winners["fastest"]) if found.winners["fastest"] else None
    rule = f" with the pick rule *{found.rule.describe()}*" if found.rule else ""
    lines = [
        f"Within **{found.budget_pp:g} pp** of the float model (judged on the validation "
        f"images{rule}), on this CPU at {_threads(threads)}:",
        "",
    ]
    if small:
        lines.append(
            f"- **smallest: {small.variant}** ({small.recipe}): {small.gzip_bytes:,} bytes gzip, "
            f"{ref.bytes / small.gzip_bytes:.1f}x smaller than the float32 TFLite file, "
            f"test accuracy {small.accuracy:.4f} ({small.delta_pp:+.2f} pp; validation "
            f"{_noisy(small)})."
        )
    if fast:
        lines.append(
            f"- **fastest: {fast.variant}** ({fast.recipe}): p50 {fast.p50_ms:.3f} ms against "
            f"float32's {ref.p50_ms:.3f} ms ({ref.p50_ms / fast.p50_ms:.2f}x), test accuracy "
            f"{fast.accuracy:.4f} ({fast.delta_pp:+.2f} pp; validation {_noisy(fast)})"
            + (f", {fast.macs / 1e6:.2f} M MACs per image." if fast.macs else ".")
        )
    if not (small or fast):
        lines.append(
            "- no variant is certified within the budget: loosen `budget_pp` or `confidence`, "
            "or hold out more validation images."
        )
    lines += _winners_curse(found)
    winners = [w for w in (small, fast) if w]
    missed = [
        v for i, v in enumerate(winners)
        if v not in winners[:i] and v.delta_pp is not None and v.delta_pp < -found.budget_pp
    ]  # fmt: skip
    if missed:
        lines += [
            "",
            "On the test images "
            + " and ".join(f"{v.variant} loses {-v.delta_pp:.2f} pp" for v in missed)
            + f", more than the {found.budget_pp:g} pp budget its validation images allowed: "
            "a small validation split cannot resolve differences of a point or two (the "
            "\u00b1 above is one standard error, from the images the two models disagree on). "
            "Hold out more images, or read the table for the next candidate.",
        ]
    int8 = next((v for v in found.variants if v.variant == "int8" and v.ok), None)
    if int8:
        speed = ref.p50_ms / int8.p50_ms
        lines += [
            "",
            f"Post-training int8 is {ref.bytes / int8.bytes:.1f}x smaller raw and runs at "
            f"{speed:.2f}x float32's speed here. Pruning pays only after gzip (TFLite stores "
            "zeros densely) and clustering leaves few distinct values, which gzip also "
            "exploits; neither removes work. Removing channels does.",
        ]
        slim_int8 = [
            v for v in found.variants
            if v.ok and v.macs and int8.macs and re.fullmatch(r"slim\d+_int8", v.variant)
        ]  # fmt: skip
        for v in slim_int8:
            lines.append(
                f"{v.variant} does {v.macs / int8.macs:.0%} of int8's MACs and runs at "
                f"{int8.p50_ms / v.p50_ms:.2f}x its speed"
                + (
                    "."
                    if v.p50_ms < 0.9 * int8.p50_ms
                    else ": at this size the work between the multiply-accumulates "
                    "(quantizing, pooling, the interpreter's own steps) takes much of the time."
                )
            )
    lines += _collaborative(found)
    if peak is not None and peak.float32_gmacs and ref.macs:
        share = ref.macs / (ref.p50_ms * 1e-3) / 1e9 / peak.float32_gmacs
        text = (
            f"The float32 model runs at {share:.0%} of one core's float32 peak "
            f"({peak.float32_gmacs:.1f} G MAC/s: vector lanes x FMA units x the clock the "
            "system reports"
            + (
                "; above 100%, the core ran faster than that clock, e.g. in a turbo state, so "
                "read the peak as a lower bound). "
                if share > 1
                else "). "
            )
        )
        if dot_flags:
            text += (
                f"This CPU has 8-bit dot-product instructions ({', '.join(dot_flags)}): an "
                "int8 kernel does four MACs per 32-bit lane per instruction, four times "
                "float32's fused multiply-add"
                + (
                    ", which is why int8 is the faster one here."
                    if int8 and ref.p50_ms > 1.1 * int8.p50_ms
                    else "; yet int8 is not faster here: at this size the work around the "
                    "multiply-accumulates dominates."
                    if int8
                    else "."
                )
            )
        else:
            text += (
                "This CPU has no 8-bit dot-product instruction (VNNI, AMX, dotprod): its int8 "
                "kernels get fewer MACs per instruction than float32's fused multiply-add"
                + (", which is why int8 is not the faster one here" if int8 and
                   int8.p50_ms > 0.9 * ref.p50_ms else "")
                + ". On a CPU with them, int8 kernels do four MACs per 32-bit lane per "
                "instruction and would run faster."
            )  # fmt: skip
        lines.append(text)
    return "\n".join(lines)


def _collaborative(found: search.SearchResult) -> list[str]:
    """What PQAT and PCQAT kept of the zeros they started from, as measured in their files,
    and why PCQAT's file is slower: it keeps batch norm apart from its convolution."""
    ok = {v.variant: v for v in found.variants if v.ok}
    kept = []
    for name, v in ok.items():
        m = re.fullmatch(r"(.*)p(c?)qat(\d+)(_c\d+)?_int8", name)
        start = ok.get(f"{m.group(1)}pruned{m.group(3)}_int8") if m else None
        if start is None or v.sparsity is None or start.sparsity is None:
            continue
        kept.append((v, start, bool(m.group(2))))
    if not kept:
        return []
    start = kept[0][1]
    out = [
        "",
        "PQAT and PCQAT are quantization-aware training meant to keep the pruned zeros "
        "(PCQAT: and the shared values of clustering). Measured in their int8 files: "
        + ", ".join(f"{v.variant} has {v.sparsity:.1%} zeros" for v, _, _ in kept)
        + f", against {start.sparsity:.1%} in {start.variant}, the model they started from"
        + (
            ": the zeros did not all survive their fine-tuning and conversion here, so read "
            "their size from the table, not from their names."
            if any(v.sparsity < start.sparsity - 0.01 for v, _, _ in kept)
            else "."
        ),
    ]
    pq = next((v for v, _, c in kept if not c), None)
    pcq = next((v for v, _, c in kept if c), None)
    if pq and pcq and pq.p50_ms and pcq.p50_ms:
        out.append(
            f"{pcq.variant} runs in {pcq.p50_ms:.3f} ms against {pq.variant}'s "
            f"{pq.p50_ms:.3f} ms ({pcq.p50_ms / pq.p50_ms:.2f}x): PCQAT keeps each batch norm "
            "apart from its convolution (folding it in would scale each channel's weights and "
            "undo the shared values), which leaves a multiply and an add per batch norm in "
            "its file; the other variants fold them away."
        )
    return out


def _winners_curse(found: search.SearchResult) -> list[str]:
    """What the pick rule changed: the point estimate's pick against the certified one, with
    both test deltas (measured after the fact, never used to choose), and how many validation
    images it would take to certify the one it turned down."""
    loose = found.uncertified_winners or {}
    out = []
    for role in ("smallest", "fastest"):
        chosen, naive = found.winners.get(role), loose.get(role)
        if naive is None or naive == chosen or found.rule is None:
            continue
        v = found.variant(naive)
        kept = f"the rule picked **{chosen}** instead" if chosen else "the rule certified none"
        out.append(
            f"- The winner's curse: on its validation point estimate alone the {role} would "
            f"have been {naive} (validation {_noisy(v)}, lower bound "
            f"{found.rule.bound_pp(v):+.2f} pp; test {v.delta_pp:+.2f} pp); {kept}. Among many "
            "variants whose validation noise is as large as the budget, the one that looks "
            "best is the one most likely to have been lucky there."
        )
        if v.val_noise_pp and found.n_val:
            need = found.rule.images_needed(v.val_noise_pp, found.n_val)
            out.append(
                f"  Too few validation images to certify it: this run holds out "
                f"{found.n_val:,}; certifying a variant with its noise, truly as accurate as "
                f"the float model, would take about {need:,}."
                if need > found.n_val
                else f"  Not for want of validation images: this run's {found.n_val:,} would "
                f"certify a variant with its noise that is truly as accurate as the float model "
                f"(about {need:,} would do); its validation delta itself is too far below."
            )
    return out


def compare_conclusions(
    *,
    edge_variant: str,
    edge_accuracy: float,
    edge_latency,
    cloud,
    cloud_source: str,
    runtimes: list[dict],
    cloud_runtime: str,
    per_device: list[dict],
    decision_rows: list[dict],
    load: dict,
    batching: dict,
    bandwidth: list[dict],
    bandwidth_skipped: str | None,
    threads: int = 1,
    requests_per_day: float = 0,
    price_per_core_hour: float = 0,
    gap_noise_pp: float | None = None,
) -> str:
    """Notebook 04's findings in a few Markdown bullets (every number from the arguments).

    ``cloud`` is a :class:`workbench.collab.compare.CloudMeasurement`; ``per_device`` rows of
    :func:`workbench.collab.compare.compare_devices`; ``decision_rows`` of
    :func:`workbench.collab.decision.decision_table`; ``gap_noise_pp`` the paired standard
    error of the accuracy gap (:func:`workbench.core.metrics.paired_noise_pp`), to say when
    the gap is within noise.
    """
    from workbench.core import machine

    where = machine.accelerator() or "this machine's CPU"
    best = cloud.best
    json_row = next((p for p in cloud.encodings if p["encoding"] == "json"), None)
    gap = 100 * (cloud.accuracy - edge_accuracy)
    by_runtime = {r["runtime"]: r for r in runtimes}
    noise = noise_words(gap, gap_noise_pp)
    within = noise.endswith("within noise")
    lines = [
        f"- **Accuracy**: the cloud's model ({cloud_source}) answers {cloud.accuracy:.1%} of the "
        f"test images right, the edge model ({edge_variant}) {edge_accuracy:.1%}: "
        f"**{gap:+.1f} pp for the cloud**"
        + (f" ({noise})" if noise else "")
        + (
            ": on these images the two are equally accurate as far as the test can tell."
            if within
            else ", what the large model buys."
            if gap > 0
            else ": here the edge model is the more accurate one."
        ),
        f"- **The cloud side**, on {where}: model compute per image "
        + ", ".join(f"{r['runtime']} {r['compute_p50_ms']:.3f} ms" for r in runtimes)
        + f"; the comparison uses {cloud_runtime}"
        + (
            f" ({by_runtime['TensorFlow']['compute_p50_ms'] / by_runtime['LiteRT']['compute_p50_ms']:.1f}x "
            "faster than TensorFlow's runtime for the same model)."
            if cloud_runtime == "LiteRT" and "TensorFlow" in by_runtime
            else "."
        )
        + f" Loopback p50 {best['loopback_p50_ms']:.2f} ms with '{cloud.best_encoding}' "
        f"({best['request_bytes']:,} bytes up), server overhead {cloud.server_overhead_ms:.2f} ms.",
        f"- **This CPU as an edge** (reference, not a device): p50 {edge_latency.p50_ms:.3f} ms "
        f"at {_threads(threads)}.",
    ]
    if json_row:
        lines.append(
            f"- **Payloads**: one image is {json_row['request_bytes']:,} bytes as JSON integers "
            f"and {best['request_bytes']:,} bytes as '{cloud.best_encoding}' "
            f"({json_row['request_bytes'] / best['request_bytes']:.1f}x fewer)."
        )
    devices = list(dict.fromkeys(r["device"] for r in per_device))
    for d in devices:
        rows = [r for r in per_device if r["device"] == d]
        edge_links = [r["key"] for r in rows if r["faster"] == "edge"]
        cloud_links = [r["key"] for r in rows if r["faster"] == "cloud"]
        lines.append(
            f"- **{d}** ({rows[0]['edge_source']}, edge p50 {rows[0]['edge_p50_ms']:.2f} ms): "
            + (f"the edge answers first on {', '.join(edge_links)}" if edge_links else "")
            + ("; " if edge_links and cloud_links else "")
            + (f"the cloud answers first on {', '.join(cloud_links)}" if cloud_links else "")
            + "."
        )
    unknown = [
        d
        for d in dict.fromkeys(r["device"] for r in decision_rows)
        if d not in devices and any(r["device"] == d and not _known(r["edge_p50_ms"])
                                    for r in decision_rows)
    ]  # fmt: skip
    if unknown:
        lines.append(
            f"- **No latency for the edge model on {', '.join(unknown)}**: not measured there, "
            "and not estimated (its runtime does not run this file's format, or the model's "
            "MACs or this CPU's clock are unknown); the decision table counts it for the cloud."
        )
    misfits = sorted({r["device"] for r in decision_rows if not r["fits_memory"]})
    if misfits:
        lines.append(
            f"- **Does not fit**: the edge model does not fit {', '.join(misfits)}'s memory: "
            "there it is the cloud (or a smaller model) whatever the latency."
        )
    if decision_rows:
        r = decision_rows[0]
        lines.append(
            f"- **Traffic and cost**: at {requests_per_day:,.0f} requests a day a device sends "
            f"{r['cloud_mb_per_month']:.1f} MB a month to the cloud (nothing from the edge); a "
            f"million requests cost the cloud about ${r['cloud_usd_per_million']:.2f} at "
            f"${price_per_core_hour:g} per core-hour, from the load test's throughput. "
            "With the cloud, every image leaves the device; with the edge, nothing does."
        )
    lines.append(
        f"- **Under load**: {load['throughput_rps']:.1f} requests/s from {load['clients']} "
        f"clients, {load['failures']} failures, server CPU utilisation "
        f"{load['cpu_utilisation']:.0%}."
    )
    ratios = batching.get("throughput_ratio", {})
    if ratios:
        pays = batching.get("pays_at_clients") or []
        lines.append(
            "- **Server-side batching** changed throughput by "
            + ", ".join(f"{r:.2f}x at {c} client(s)" for c, r in ratios.items())
            + (
                f": it pays from {min(pays)} concurrent clients, when requests arrive while "
                "the model is busy and can share its next call."
                if pays
                else ": it did not pay here (too few requests waiting at once)."
            )
        )
    if bandwidth:
        within = sum(r["verdict"] == "within" for r in bandwidth)
        judged = sum(r["verdict"] != "base-dominated" for r in bandwidth)
        lines.append(
            f"- **Link model on real shaped links**: {within} of {judged} cells where the "
            f"transfer dominates agree with the model within its tolerance ({len(bandwidth)} "
            "cells measured)."
        )
    elif bandwidth_skipped:
        lines.append(f"- Link model on real links: not checked here ({bandwidth_skipped}).")
    lines.append(
        "\n**When is it the cloud?** When the device is slow for the model and the link is "
        "fast, when the model does not fit the device, or when the accuracy the large model "
        "adds is worth more than the round trip, the traffic and the images leaving the "
        "device. Otherwise the edge answers first, offline, and keeps the data where it is."
    )
    return "\n".join(lines)


def collab_conclusions(
    *,
    split: dict,
    students: dict,
    student_int8: dict,
    cascades: list[dict],
    cascade_latency: list[dict],
    cloud_accuracy: float,
    tolerance_pp: float,
    sweeps: dict[str, list[dict]] | None = None,
    n_test: int | None = None,
) -> str:
    """Notebook 05's findings as Markdown (every number from the arguments).

    ``split``: :func:`workbench.collab.split.split_stage`'s result; ``cascades``: rows of
    :func:`workbench.collab.cascade.summary`; ``cascade_latency``: rows of
    :func:`workbench.collab.cascade.latency_table` for the first cascade; ``sweeps``: each
    cascade's threshold sweep by edge model, and ``n_test`` the images it was measured on, to
    say whether a better point of the sweep than the chosen one is beyond noise.
    """
    lines = []
    if split.get("status") == "ok":
        best = split["best_per_device_link"]
        middle = [b for b in best if b["intermediate"]]
        lines.append(
            f"- **Split computing of the cloud model**: {len(split['cut_points'])} valid cuts. "
            f"Of {len(best)} device and link pairs, {len(middle)} are fastest with a cut in the "
            "middle"
            + (
                " ("
                + ", ".join(
                    f"{b['device']} over {b['key']}: after {b['best_after']}" for b in middle[:6]
                )
                + (", ..." if len(middle) > 6 else "")
                + ")"
                if middle
                else ""
            )
            + "; the others at one end (all on the device, or all in the cloud)."
        )
        larger = [b for b in best if b.get("larger_than_input")]
        if larger:
            lines.append(
                f"- {len(larger)} of those best cuts send an activation larger than the "
                "compressed input: there the split pays for the compute it moves between "
                "device and cloud, not for bytes."
            )
        run = split.get("run", {})
        if run.get("status") == "ok":
            timed = split_run_time(split)
            lines.append(
                f"- **Split run for real** after '{run['after']}' ({run['device']}, "
                f"{run['link']}): {run['agreement']:.2%} top-1 agreement with the full model "
                f"(int8 activations, {run['wire_bytes_per_image']:,.0f} bytes per image)."
                + (
                    f" Modelled end to end it takes {timed['run_ms']:.1f} ms there; the best "
                    f"choice for that pair, {timed['choice']}, takes {timed['best_ms']:.1f} ms"
                    + (
                        ": this cut was run to show the mechanics, not because it wins."
                        if timed["run_ms"] > timed["best_ms"] * 1.0001
                        else ": it is the best choice there."
                    )
                    if timed
                    else ""
                )
            )
    else:
        lines.append(f"- Split computing skipped: {split.get('reason')}")
    gain = students["gain_test_pp"]
    low, high = distill.confidence_interval(gain) if len(gain["per_seed"]) > 1 else (None, None)
    lines.append(
        f"- **Distillation** from the cloud model: {gain['mean']:+.2f} ± {gain['sd']:.2f} pp "
        f"(mean ± sd) on the test images over {len(gain['per_seed'])} seeds against labels "
        "alone"
        + (
            f", 95% interval {low:+.2f} to {high:+.2f} pp: "
            + ("within noise" if low <= 0 <= high else "beyond noise")
            if low is not None
            else ""
        )
        + f" (T={students['chosen']['temperature']:g}, alpha={students['chosen']['alpha']:g}); as "
        f"int8 TFLite the student is {student_int8['gzip_bytes']:,} bytes gzip at "
        f"{student_int8['accuracy']:.4f} accuracy."
    )
    for c in cascades:
        met = c["accuracy"] >= cloud_accuracy - tolerance_pp / 100 and c["cloud_fraction"] <= 0.5
        gap = 100 * (cloud_accuracy - c["edge_accuracy"])
        side = f"{gap:.1f} pp behind" if gap >= 0 else f"{-gap:.1f} pp ahead of"
        lines.append(
            f"- **Cascade with {c['edge model']}** (alone {c['edge_accuracy']:.4f}, {side} "
            f"the cloud's {cloud_accuracy:.4f}): threshold {c['threshold']:.2f}"
            + (
                f" (chosen on the validation images, where it sent "
                f"{c['validation_cloud_fraction']:.0%} to the cloud)"
                if c.get("chosen_on") == "validation"
                and c.get("validation_cloud_fraction") is not None
                else ""
            )
            + f" reaches {c['accuracy']:.4f} on the test images sending "
            f"{c['cloud_fraction']:.0%} of requests to the cloud"
            + (
                ": the edge model alone is at least as accurate as the cloud's here, so no "
                "cascade is needed."
                if met and c["cloud_fraction"] == 0 and gap <= 0
                else f": the edge model alone is within {tolerance_pp:g} pp of the cloud, so no "
                "cascade is needed."
                if met and c["cloud_fraction"] == 0
                else f": within {tolerance_pp:g} pp of the cloud with at most half the requests."
                if met
                else (
                    f": the target ({tolerance_pp:g} pp) needs {c['cloud_fraction']:.0%} in the "
                    "cloud."
                    if c["met"]
                    else ": no threshold reaches the target."
                )
            )
            + _sweep_peak(c, (sweeps or {}).get(c["edge model"]), n_test)
        )
    if cascade_latency and cascade_latency[0]["cloud_fraction"] > 0:
        wins = [r for r in cascade_latency if r["cascade_mean_ms"] < r["all_cloud_ms"]]
        lines.append(
            f"- **Cascade latency**: on {len(wins)} of {len(cascade_latency)} device and link "
            "pairs the cascade's mean latency is below sending everything to the cloud; it is "
            "always above answering everything on the device: the requests it sends on wait "
            "for both, the price of the accuracy the cloud adds."
        )
    lines += [
        "",
        "When each wins: a split pays where a middle layer's activation is small, the device "
        "slow and the link fast enough; a cascade pays when most inputs are easy: the device "
        "answers them at device speed and the large model fixes the hard ones.",
    ]
    return "\n".join(lines)


def _sweep_peak(choice: dict, sweep: list[dict] | None, n_test: int | None) -> str:
    """A sentence on the sweep's most accurate point when it beats the chosen threshold:
    whether the difference is beyond the noise of one accuracy on ``n_test`` images."""
    if not sweep or not n_test:
        return ""
    peak = max(sweep, key=lambda r: (r["accuracy"], -r["cloud_fraction"]))
    diff = 100 * (peak["accuracy"] - choice["accuracy"])
    if diff <= 0:
        return ""
    se = 100 * math.sqrt(peak["accuracy"] * (1 - peak["accuracy"]) / n_test)
    verdict = "within" if diff < 1.96 * se else "beyond"
    return (
        f" The sweep's most accurate point, {peak['accuracy']:.1%} with "
        f"{peak['cloud_fraction']:.0%} sent to the cloud (threshold {peak['threshold']:.2f}), is "
        f"{diff:.1f} pp above the chosen one: {verdict} the noise of one accuracy on "
        f"{n_test:,} images (\u00b1 {se:.1f} pp, one standard error)."
    )


def split_run_time(split: dict) -> dict | None:
    """The modelled end-to-end time of the split that was run for real, on its device and
    link, against the best choice for that pair (:func:`workbench.collab.split.best_splits`
    over the measured cuts, the device's slowdown applied to the edge part)."""
    from workbench.collab import split as splitting
    from workbench.network import latency

    run = split.get("run") or {}
    link = latency.LINKS.get(run.get("link"))
    slowdown = (split.get("devices") or {}).get(run.get("device"))
    if run.get("status") != "ok" or link is None or slowdown is None:
        return None
    rows = [{**r, "edge_ms": r["edge_ms"] * slowdown} for r in split["measured"]]
    (best,) = splitting.best_splits(
        rows,
        {run["link"]: link},
        server_overhead_ms=split["server_overhead_ms"],
        response_bytes=split["response_bytes"],
    )
    index = next((i for i, r in enumerate(rows) if r["after"] == run["after"]), None)
    if index is None:
        return None
    row = next(b for b in split["best_per_device_link"] if (b["device"], b["key"]) ==
               (run["device"], run["link"]))  # fmt: skip
    return {"run_ms": best["totals"][index], "best_ms": best["best_ms"], "choice": row["choice"]}


FULL_CIFAR10_TRAIN = 45_000  # the full training set after notebook 02's 10% validation split


def cloud_conclusions(
    rows: list[dict],
    *,
    specs: dict[str, dict],
    cloud: str,
    edge_candidate: str,
    n_train: int,
    data_source: str,
    strategy: str,
    gain_noise_pp: float | None = None,
) -> str:
    """Notebook 02 in a few sentences: what the cloud model buys over the edge candidate, at
    what cost, and what to expect on the full dataset (every number from ``rows``).

    ``gain_noise_pp``: the paired standard error of the cloud model's gain over the edge
    candidate (:func:`workbench.core.metrics.paired_noise_pp`), to say when it is noise.
    """
    by = {r["model"]: r for r in rows}
    c, e = by[cloud], by[edge_candidate]
    gain = 100 * (c["test_accuracy"] - e["test_accuracy"])
    noise = noise_words(gain, gain_noise_pp)
    lines = [
        f"The **cloud model** ({specs[cloud]['architecture']}, {c['parameters']:,} parameters, "
        f"{c['macs'] / 1e6:.1f} M MACs per image) reaches **{c['test_accuracy']:.1%}** on the "
        f"test images in inference mode: **{gain:+.1f} pp**"
        + (f" ({noise})" if noise else "")
        + f" against the **edge candidate** ({specs[edge_candidate]['architecture']}, "
        f"{e['parameters']:,} parameters, {e['macs'] / 1e6:.1f} M MACs, "
        f"{e['test_accuracy']:.1%}), for {c['macs'] / e['macs']:.1f}x its compute per image."
    ]
    others = [r for name, r in by.items() if name not in (cloud, edge_candidate)]
    for r in others:
        lines.append(
            f"The {r['model']} reaches {r['test_accuracy']:.1%} with {r['parameters']:,} "
            f"parameters and {r['macs'] / 1e6:.1f} M MACs."
        )
    budgets = ", ".join(
        f"{name} {by[name]['images_seen']:,} images ({by[name]['epochs']} "
        f"epoch{'' if by[name]['epochs'] == 1 else 's'})"
        for name in by
    )
    lines.append(
        f"Each model has its own recipe and its own budget ({budgets}): a difference between "
        "two of them mixes their architectures, recipes and budgets."
    )
    lines.append(
        f"Training took {c['train_seconds']:.0f} s for the cloud model "
        f"({c['images_per_second']:,.0f} images/s) and {e['train_seconds']:.0f} s for the edge "
        f"candidate ({e['images_per_second']:,.0f} images/s), under {strategy}."
    )
    if n_train < FULL_CIFAR10_TRAIN:
        epochs_full = c["images_seen"] / FULL_CIFAR10_TRAIN
        lines.append(
            f"These figures come from {n_train:,} training images ({data_source}). On the full "
            f"CIFAR-10 the same budget is {epochs_full:.2g} epochs of {FULL_CIFAR10_TRAIN:,} "
            "distinct images, which usually raises test accuracy for the same time; residual "
            "networks of this kind reach far higher accuracy there with budgets of millions of "
            "images seen (He et al., CVPR 2016). That is an expectation, not a measurement of "
            "this run."
        )
    return " ".join(lines)


def large_model_conclusions(rows: list[dict], *, edge: list[str], large: list[str]) -> str:
    """Why the large model stays in the cloud, per device (rows of
    :func:`workbench.edge.devices.device_table`; every number from them)."""
    by = {(r["device"], r["variant"]): r for r in rows}
    lines = []
    for device in dict.fromkeys(r["device"] for r in rows):
        best_edge = min(
            (by[(device, v)] for v in edge if (device, v) in by and by[(device, v)]["p50_ms"]),
            key=lambda r: r["p50_ms"],
            default=None,
        )
        parts = []
        for v in large:
            r = by.get((device, v))
            if r is None:
                continue
            if r["fits_memory"] is False:
                parts.append(f"{v} does not fit ({r['memory_why']})")
            elif r["p50_ms"] is not None:
                parts.append(f"{v} {r['p50_ms']:.2f} ms ({r['source']})")
        if not parts:
            continue
        edge_text = (
            f"against {best_edge['variant']}'s {best_edge['p50_ms']:.2f} ms"
            if best_edge
            else "with no edge model estimated"
        )
        lines.append(f"- **{device}**: " + "; ".join(parts) + f", {edge_text}.")
    lines.append(
        "\nThe large model is what the cloud adds: where it does not fit, or runs many times "
        "slower than the small model, a device sends its hard cases to the cloud instead "
        "(notebook 05's cascade)."
    )
    return "\n".join(lines)
