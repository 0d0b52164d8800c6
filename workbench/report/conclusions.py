"""Conclusions in words, generated from the recorded figures of each stage: the search's
winners, edge against cloud, split computing and cascades. Every number comes from the
run; where a difference is within its noise, the sentence says so.
"""

from __future__ import annotations

import re

import workbench  # noqa: F401 - selects Keras 2 before TensorFlow loads
from workbench.edge import search, variants


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
    lines = [
        f"Within **{found.budget_pp:g} pp** of the float model (judged on the validation "
        f"images), on this CPU at {threads} thread(s):",
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
        lines.append("- no variant stays within the budget: loosen `budget_pp`.")
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
    if peak is not None and peak.float32_gmacs and ref.macs:
        share = ref.macs / (ref.p50_ms * 1e-3) / 1e9 / peak.float32_gmacs
        text = (
            f"The float32 model runs at {share:.0%} of one core's float32 peak "
            f"({peak.float32_gmacs:.1f} G MAC/s). "
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


def compare_conclusions(
    *,
    edge_variant: str,
    edge_accuracy: float,
    edge_latency,
    cloud_accuracy: float,
    payloads: list[dict],
    best_encoding: str,
    server_overhead_ms: float,
    links: list[dict],
    links_slow: list[dict],
    edge_slowdown: float,
    load: dict,
    batching: dict,
    bandwidth: list[dict],
    bandwidth_skipped: str | None,
    threads: int = 1,
) -> str:
    """Notebook 04's findings in a few Markdown bullets (every number from the arguments)."""
    best = next(p for p in payloads if p["encoding"] == best_encoding)
    json_row = next((p for p in payloads if p["encoding"] == "json"), None)

    def names(rows, side):
        return ", ".join(r["link"] for r in rows if r["faster"] == side) or "no link"

    lines = [
        f"- **Edge** ({edge_variant}, {threads} thread(s)): accuracy {edge_accuracy:.4f}, "
        f"p50 {edge_latency.p50_ms:.3f} ms, p95 {edge_latency.p95_ms:.3f} ms.",
        f"- **Cloud** (float model behind the server): accuracy {cloud_accuracy:.4f}; loopback "
        f"p50 {best['loopback_p50_ms']:.3f} ms with '{best_encoding}' "
        f"({best['request_bytes']:,} bytes up, over {best['protocol'].upper()}); server "
        f"overhead {server_overhead_ms:.3f} ms.",
    ]
    if json_row:
        lines.append(
            f"- **Payloads**: one image is {json_row['request_bytes']:,} bytes as JSON integers "
            f"and {best['request_bytes']:,} bytes as '{best_encoding}' "
            f"({json_row['request_bytes'] / best['request_bytes']:.1f}x fewer)."
        )
    lines += [
        f"- **Edge is faster on**: {names(links, 'edge')}; **cloud is faster on**: "
        f"{names(links, 'cloud')}.",
        f"- **What-if, edge {edge_slowdown:g}x slower**: the cloud is faster on "
        f"{names(links_slow, 'cloud')}; the edge still wins on {names(links_slow, 'edge')}.",
        f"- **Under load**: {load['throughput_rps']:.1f} requests/s from {load['clients']} "
        f"clients, {load['failures']} failures, server CPU utilisation "
        f"{load['cpu_utilisation']:.0%}.",
    ]
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
        worst = max(bandwidth, key=lambda r: abs(r["error"]))
        lines.append(
            f"- **Link model on real shaped links**: {within} of {len(bandwidth)} cells within "
            f"15%; the largest deviation {worst['error']:+.0%} ({worst['size_bytes']:,} bytes at "
            f"{worst['rate_mbps']:g} Mbit/s, {worst['connection']})."
        )
    elif bandwidth_skipped:
        lines.append(f"- Link model on real links: not checked here ({bandwidth_skipped}).")
    return "\n".join(lines)


def collab_conclusions(
    *,
    split: dict,
    students: dict,
    student_int8: dict,
    cascades: list[dict],
    cloud_accuracy: float,
    edge_slowdown: float,
    tolerance_pp: float,
) -> str:
    """Notebook 05's findings as Markdown (every number from the arguments)."""
    lines = []
    if split.get("status") == "ok":
        rows = "\n".join(
            f"| {b['link']} | {b['best_after']} | {b['best_ms']:.2f} | {b['all_edge_ms']:.2f} | "
            f"{b['all_cloud_ms']:.2f} | {s['best_after']} ({s['best_ms']:.1f} ms) |"
            for b, s in zip(split["best_per_link"], split["best_per_link_slow_edge"], strict=True)
        )
        lines += [
            "**Best cut per link** (end-to-end ms; the last layer means all edge, 'input' all "
            "cloud):",
            "",
            f"| link | best cut after | best | all edge | all cloud | what-if edge "
            f"{edge_slowdown:g}x slower: best cut |",
            "|---|---|---|---|---|---|",
            rows,
            "",
        ]
        run = split.get("run", {})
        if run.get("status") == "ok":
            lines.append(
                f"- **Split run for real** after '{run['after']}' ({run['link']}): "
                f"{run['agreement']:.2%} top-1 agreement with the full model (int8 "
                f"activations, {run['wire_bytes_per_image']:,.0f} bytes per image)."
            )
    else:
        lines.append(f"- Split computing skipped: {split.get('reason')}")
    gain = students["gain_test_pp"]
    lines.append(
        f"- **Distillation**: {gain['mean']:+.2f} ± {gain['sd']:.2f} pp on the test images over "
        f"{len(gain['per_seed'])} seeds against labels alone (T={students['chosen']['temperature']:g}, "
        f"alpha={students['chosen']['alpha']:g}); as int8 TFLite the student is "
        f"{student_int8['gzip_bytes']:,} bytes gzip at {student_int8['accuracy']:.4f} accuracy, "
        f"p50 {student_int8['p50_ms']:.3f} ms."
    )
    for c in cascades:
        met = c["accuracy"] >= cloud_accuracy - tolerance_pp / 100 and c["cloud_fraction"] <= 0.5
        lines.append(
            f"- **Cascade with {c['edge model']}** (edge alone {c['edge_accuracy']:.4f}, "
            f"{c['speedup_vs_cloud_float32_tflite']:.2f}x the speed of the cloud model's float32 "
            f"TFLite): threshold {c['threshold']:.2f} gives {c['accuracy']:.4f} (cloud alone "
            f"{cloud_accuracy:.4f}) sending {c['cloud_fraction']:.0%} of requests to the cloud"
            + (
                f": within {tolerance_pp:g} pp with at most half the requests in the cloud."
                if met
                else "."
            )
            + (
                " The edge model alone is already that close to the cloud model: compression "
                "kept what the cloud knows, so the cloud adds nothing a cascade could use."
                if met and c["cloud_fraction"] == 0
                else ""
            )
        )
    lines += [
        "",
        "When each wins: a split pays only where a middle layer's activation is much smaller "
        "than the input and the edge is slow compared with the link; on fast links the cloud "
        "end, on slow ones the edge end. A cascade wins when most inputs are easy: the edge "
        "answers them at edge speed and the cloud fixes the hard ones.",
    ]
    return "\n".join(lines)
