"""Command line: ``python -m workbench {run,assess,serve,report}`` (also installed as ``workbench``)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="execute every notebook with papermill and build the report")
    run.add_argument(
        "--profile", default="full", help="full (default) or a file in notebooks/params/"
    )
    run.add_argument("notebooks", nargs="*", help="notebook stems to run (default: all, in order)")
    run.add_argument(
        "--memory-cap-mib",
        type=int,
        default=None,
        help="run under a memory cgroup with this cap, as on Binder (2048); Linux, root only",
    )
    run.add_argument(
        "--no-estimate",
        action="store_true",
        help="skip the throughput probe (20-40 s) that estimates each notebook's time; "
        "estimates then come only from earlier runs recorded on this machine",
    )

    sub.add_parser("report", help="rebuild reports/index.html from recorded results")

    assess = sub.add_parser(
        "assess",
        help="edge or cloud? compress, compare, split and cascade YOUR Keras image classifier",
        description="Run the whole flow for any Keras image classifier and labelled images; "
        "write assessment.json, figures and an HTML page to --out.",
    )
    assess.add_argument(
        "--model", required=True, help=".keras (Keras 3 or tf-keras), .h5 or a SavedModel folder"
    )
    assess.add_argument(
        "--data",
        required=True,
        help=".npz with x_train, y_train, x_test, y_test, or a folder with one sub-folder of "
        "images per class",
    )
    assess.add_argument("--out", required=True, help="output folder (created or replaced)")
    assess.add_argument(
        "--links",
        default=None,
        help="comma-separated links (default: all of lan, wifi, 5g, 4g, 3g, satellite)",
    )
    assess.add_argument(
        "--budget-pp",
        type=float,
        default=None,
        help="accuracy a compressed variant may lose, in percentage points (default 1.0)",
    )
    assess.add_argument(
        "--logits", action="store_true", help="the model outputs logits, not probabilities"
    )
    assess.add_argument(
        "--input-scale",
        type=float,
        default=None,
        help="the model takes pixels times this (e.g. 0.00392 for /255); default: pixels as "
        "stored (preprocessing such as a Rescaling layer belongs in the model)",
    )
    assess.add_argument(
        "--class-names", default=None, help="comma-separated class names, in label order"
    )
    assess.add_argument(
        "--profile", default="default", help="default, or smoke (a quick run for tests)"
    )
    assess.add_argument("--threads", type=int, default=None, help="edge interpreter threads (1)")
    assess.add_argument("--quiet", action="store_true", help="no progress bars")

    serve = sub.add_parser(
        "serve", help="serve SavedModels with TensorFlow Serving's REST and gRPC APIs"
    )
    from workbench.cloud.serving import options as serve_options

    serve_options.add_arguments(serve)

    args = parser.parse_args(argv)
    if args.command == "run":
        from workbench.core.memory import MemoryLimit
        from workbench.data import datasets
        from workbench.run import notebooks, params

        cap = args.memory_cap_mib * 2**20 if args.memory_cap_mib else None
        if cap and MemoryLimit.unavailable():
            print(f"--memory-cap-mib: {MemoryLimit.unavailable()}", file=sys.stderr)
            return 2
        try:
            notebooks.run_all(
                args.profile,
                args.notebooks or None,
                memory_cap_bytes=cap,
                estimate=not args.no_estimate,
            )
        except (
            datasets.DatasetError,
            params.ProfileError,
        ) as err:  # set-up: the message says it all
            print(err, file=sys.stderr)
            return 2
        except notebooks.NotebookFailed as err:
            print(err, file=sys.stderr)
            return 1
    elif args.command == "assess":
        return _assess(args)
    elif args.command == "report":
        from workbench.report import page

        print(page.build_index())
    elif args.command == "serve":
        from workbench.cloud import serving

        try:
            serving.run_server(serve_options.from_args(args))
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            print(f"workbench serve: {err}", file=sys.stderr)
            return 2
    return 0


def _assess(args) -> int:
    """``workbench assess``: a user mistake prints only its message and exits with 2."""
    from dataclasses import replace

    from workbench.assess import flow, summary
    from workbench.data import datasets
    from workbench.models import loading

    if args.profile not in flow.PROFILES:
        print(f"--profile: choose one of {', '.join(flow.PROFILES)}", file=sys.stderr)
        return 2
    settings = flow.PROFILES[args.profile]
    if args.links:
        settings = replace(settings, links=tuple(k.strip() for k in args.links.split(",")))
    if args.budget_pp is not None:
        settings = replace(settings, budget_pp=args.budget_pp)
    if args.threads is not None:
        settings = replace(settings, variants=replace(settings.variants, threads=args.threads))
    names = [n.strip() for n in args.class_names.split(",")] if args.class_names else None
    try:
        result = flow.assess(
            args.model,
            args.data,
            args.out,
            settings=settings,
            logits=args.logits,
            input_scale=args.input_scale,
            class_names=names,
            progress=not args.quiet,
        )
    except (loading.ContractError, datasets.DatasetError, flow.AssessError) as err:
        print(f"workbench assess: {err}", file=sys.stderr)
        return 2
    print(summary.summary(result, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
