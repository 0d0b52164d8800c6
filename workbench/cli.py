"""Command line: ``workbench`` (also ``python -m workbench``), one sub-command per job.

Every parser prints plain text (no reStructuredText), shows its defaults, takes names from
fixed lists (``choices``) and ends its help with examples (:data:`EXAMPLES`).
"""

from __future__ import annotations

import argparse
import os
import sys

DESCRIPTION = (
    "The edge-cloud AI workbench: should a model run on the device or in the cloud? Run the "
    "course's notebooks, assess your own Keras image classifier, serve models like TensorFlow "
    "Serving, and build the report and the static site."
)
EXAMPLES = {
    "workbench": """examples:
  workbench notebooks my-course        copy the notebooks out, then: cd my-course
  workbench run                        execute every notebook (full profile), write the report
  workbench run --profile smoke 01-edge-iris-knn
  workbench assess --model my.keras --data my.npz --out reports/assess-mine
  workbench serve --model-base artifacts/serving --grpc-port 8500
  workbench site                       the executed notebooks as a static site

'workbench COMMAND --help' says more about each command.""",
    "run": """examples:
  workbench run                          every notebook, full profile (what `make run` does)
  workbench run --profile smoke          the quick profile the tests use
  workbench run 01-edge-iris-knn 02-cloud-cifar10-cnn
  workbench run --memory-cap-mib 2048    under Binder's memory cap (Linux, root)""",
    "report": """examples:
  workbench report                 rebuild reports/index.html after a run
  WORKBENCH_REPORTS=/tmp/r workbench report""",
    "assess": """examples:
  workbench assess --model my.keras --data my.npz --out reports/assess-mine
  workbench assess --model my.keras --data images/ --out out --links lan,4g --budget-pp 0.5
  workbench assess --model my.h5 --data my.npz --out out --input-scale 0.00392156862745098""",
    "serve": """examples:
  workbench serve --model-base artifacts/serving
  workbench serve --model-base artifacts/serving --grpc-port 8500 --enable-batching
  workbench serve --model-base s3://bucket/models --version-policy latest:2""",
    "notebooks": """examples:
  workbench notebooks my-course && cd my-course && workbench run
  workbench notebooks . --force        replace edited copies with the shipped ones""",
    "site": """examples:
  workbench site                   reports/site/index.html from the last run
  workbench site --out public      somewhere else, e.g. for a static web server""",
}
DISTRIBUTION = "edge-cloud-workbench"  # the name on the package index (`pip install ...`)


class HelpFormatter(argparse.HelpFormatter):
    """Descriptions wrapped, examples (text with line breaks) as written; every option's default
    shown (unless it has none)."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if "\n" in text:
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or not action.option_strings
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or default == ""
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser (and its sub-commands' parsers) with :class:`HelpFormatter`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)


def name_list(names: list[str] | tuple[str, ...], *, what: str):
    """An argparse ``type`` for comma-separated names taken from ``names`` (``--links lan,4g``)."""

    def parse(text: str) -> tuple[str, ...]:
        given = tuple(n.strip() for n in text.split(",") if n.strip())
        unknown = [n for n in given if n not in names]
        if unknown or not given:
            raise argparse.ArgumentTypeError(
                f"{', '.join(unknown) or repr(text)}: not {what}; choose from {', '.join(names)}"
            )
        return given

    return parse


def other_workbench() -> str | None:
    """The distribution named ``workbench`` (an unrelated project on PyPI) if one is installed
    here: it installs a package of the same import name over this one's files."""
    import importlib.metadata

    try:
        dist = importlib.metadata.distribution("workbench")
    except importlib.metadata.PackageNotFoundError:
        return None
    return f"workbench {dist.version}"


def version_text() -> str:
    """``workbench --version``: the version, where the package is, and any conflict."""
    import importlib.metadata

    from workbench import __version__
    from workbench.core import paths

    try:
        installed = importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        installed = None
    where = (
        f"checkout {paths.REPO_ROOT}" if paths.REPO_ROOT else f"installed in {paths.PACKAGE_DIR}"
    )
    text = f"{DISTRIBUTION} {__version__} ({where}; Python {sys.version.split()[0]})"
    if installed and installed != __version__:
        text += f"\nwarning: the installed metadata says {installed}: reinstall it (pip install .)"
    return text


def _warn_conflict() -> None:
    other = other_workbench()
    if other:
        print(
            f"warning: {other} is installed in this environment too: an unrelated project "
            f"that also installs a package named `workbench`, over this one's files. Use a "
            f"separate virtualenv for {DISTRIBUTION} (pip uninstall workbench removes files "
            "both share: reinstall this one afterwards).",
            file=sys.stderr,
        )


class _Version(argparse.Action):
    def __init__(self, option_strings, dest=argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(version_text())
        parser.exit()


def build_parser() -> Parser:
    """The ``workbench`` command's parser, every sub-command included."""
    from workbench.run import params

    parser = Parser(prog="workbench", description=DESCRIPTION, epilog=EXAMPLES["workbench"])
    parser.add_argument(
        "--version", action=_Version, help="print the version and where it is installed"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run",
        help="execute every notebook with papermill and build the report",
        description="Execute the numbered notebooks in order with papermill: check the data, "
        "estimate each notebook's time on this machine, run them, write the executed "
        "notebooks, their HTML and the report (reports/index.html).",
        epilog=EXAMPLES["run"],
    )
    run.add_argument(
        "--profile",
        default="full",
        choices=params.profile_names(),
        help="full: each notebook's own parameters; any other: the values in "
        "notebooks/params/PROFILE.yaml (smoke: the quick run the tests use)",
    )
    run.add_argument(
        "notebooks",
        nargs="*",
        metavar="NOTEBOOK",
        help="notebook names to run, e.g. 01-edge-iris-knn (default: all, in order)",
    )
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

    sub.add_parser(
        "report",
        help="rebuild reports/index.html from recorded results",
        description="Rebuild the report of the whole flow (reports/index.html) from what the "
        "notebooks recorded in reports/results/, without running anything.",
        epilog=EXAMPLES["report"],
    )

    from workbench.assess import flow
    from workbench.network import latency

    assess = sub.add_parser(
        "assess",
        help="edge or cloud? compress, compare, split and cascade YOUR Keras image classifier",
        description="Run the whole flow for any Keras image classifier and labelled images; "
        "write assessment.json, figures and an HTML page to --out.",
        epilog=EXAMPLES["assess"],
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
        type=name_list(tuple(latency.LINKS), what="a link"),
        default=None,
        metavar="LINK[,LINK...]",
        help=f"links to compare on, comma-separated, from {', '.join(latency.LINKS)} "
        "(default: all)",
    )
    assess.add_argument(
        "--budget-pp",
        type=float,
        default=None,
        help="accuracy a compressed variant may lose, in percentage points "
        f"(default: the profile's, {flow.PROFILES[flow.DEFAULT_PROFILE].budget_pp})",
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
        "--profile",
        default=flow.DEFAULT_PROFILE,
        choices=list(flow.PROFILES),
        help="how much work each stage does: default (what the Python API uses too), or smoke "
        "(a quick run for tests)",
    )
    assess.add_argument(
        "--threads",
        type=int,
        default=None,
        help="edge interpreter threads "
        f"(default: the profile's, {flow.PROFILES[flow.DEFAULT_PROFILE].variants.threads})",
    )
    assess.add_argument("--quiet", action="store_true", help="no progress bars")
    assess.add_argument(
        "--trust-model",
        action="store_true",
        help="load the model without the safety checks (Lambda byte code, SavedModel ops that "
        "reach files, processes or the network): a model file is code, so only for a file you "
        "trust as you would trust a program from its author",
    )
    assess.add_argument(
        "--max-data-bytes",
        type=int,
        default=None,
        help="refuse data that takes more than this many bytes once decoded (default: a "
        "quarter of this machine's memory), checked from the file headers before decoding",
    )

    serve = sub.add_parser(
        "serve",
        help="serve SavedModels with TensorFlow Serving's REST and gRPC APIs",
        description="Serve the SavedModels under a model base laid out as TensorFlow Serving "
        "expects (<base>/<name>/<version>/) over REST and, with --grpc-port, gRPC, until "
        "interrupted. Endpoints, limits and versions: docs/server.md.",
        epilog=EXAMPLES["serve"],
    )
    from workbench.cloud.serving import options as serve_options

    serve_options.add_arguments(serve)

    from workbench.edge import devices_cli

    devices = sub.add_parser(
        "devices",
        help="edge device classes: the catalog, estimated latency, measured over SSH",
        description="Edge device classes (Raspberry Pi 4 and 5, a Jetson Nano's CPU, phone "
        "cores, a Cortex-M7 microcontroller): list their peak MAC rates and memory, ESTIMATE "
        "the edge models' latency on each from this CPU's efficiency, or MEASURE them on a "
        "real device over SSH. Results: reports/results/devices.json.",
        epilog=devices_cli.EXAMPLES,
    )
    devices_cli.add_arguments(devices)

    course = sub.add_parser(
        "notebooks",
        help="copy the notebooks (and their smoke profile) into a folder to run or edit",
        description="Copy the numbered notebooks this installation ships, and notebooks/params/ "
        "(the smoke profile), into DIR. A file already there with other content (a notebook "
        "you edited) stops the copy unless --force. Then run `workbench run` or `jupyter lab` "
        "in DIR: outputs go to DIR/artifacts and DIR/reports.",
        epilog=EXAMPLES["notebooks"],
    )
    course.add_argument("dir", metavar="DIR", help="the folder to copy them into (created)")
    course.add_argument(
        "--force", action="store_true", help="replace copies that differ from the shipped ones"
    )

    site = sub.add_parser(
        "site",
        help="the executed notebooks and the report as a static site (make docs)",
        description="Render the executed notebooks of the last run (reports/executed/) and its "
        "report as a static site: a page per notebook with its outputs and links to open it "
        "on Binder and in Colab, and an index. Run the notebooks first (workbench run).",
        epilog=EXAMPLES["site"],
    )
    site.add_argument("--out", default=None, help="the site's folder (default: reports/site)")

    return parser


def main(argv: list[str] | None = None) -> int:
    from workbench.cloud.serving import options as serve_options
    from workbench.run import params

    _warn_conflict()
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from workbench.core import paths
        from workbench.core.memory import MemoryLimit
        from workbench.data import datasets
        from workbench.run import notebooks

        available = params.notebook_names()
        unknown = [n for n in args.notebooks if n not in available]
        if not available or unknown:
            print(_no_notebooks(paths.notebooks_dir(), available, unknown), file=sys.stderr)
            return 2
        # Every kernel (and the model server it starts) writes where this process does, even
        # when it runs in another folder or a variable holds a relative path.
        os.environ.update(paths.root_variables())
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
    elif args.command == "notebooks":
        from workbench.run import course

        try:
            written = course.copy_notebooks(args.dir, force=args.force)
        except course.CourseError as err:
            print(f"workbench notebooks: {err}", file=sys.stderr)
            return 2
        print(
            f"{len(written)} file(s) copied into {args.dir} "
            f"({len(course.course_files()) - len(written)} already there). Next: cd {args.dir} "
            "&& workbench run (or jupyter lab)"
        )
    elif args.command == "site":
        from workbench.run import site as static_site

        try:
            print(static_site.build_site(args.out))
        except static_site.SiteError as err:
            print(f"workbench site: {err}", file=sys.stderr)
            return 2
    elif args.command == "devices":
        from workbench.edge import devices_cli

        return devices_cli.run(args)
    elif args.command == "serve":
        from workbench.cloud import serving

        try:
            serving.run_server(serve_options.from_args(args))
        except (ValueError, FileNotFoundError, RuntimeError) as err:
            print(f"workbench serve: {err}", file=sys.stderr)
            return 2
    return 0


def _no_notebooks(folder, available: list[str], unknown: list[str]) -> str:
    """Why ``workbench run`` has nothing to run, and what to do."""
    if not available:
        return (
            f"workbench run: no numbered notebooks (NN-*.ipynb) in {folder}. Copy the course "
            "here first with `workbench notebooks .` (or into a folder of your choice, then cd "
            "there), or set WORKBENCH_NOTEBOOKS to a folder holding them."
        )
    return (
        f"workbench run: no notebook {', '.join(unknown)} in {folder}; choose from "
        f"{', '.join(available)}."
    )


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
        settings = replace(settings, links=args.links)
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
            trust_model=args.trust_model,
            max_data_bytes=args.max_data_bytes,
        )
    except (loading.ContractError, datasets.DatasetError, flow.AssessError) as err:
        print(f"workbench assess: {err}", file=sys.stderr)
        return 2
    print(summary.summary(result, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
