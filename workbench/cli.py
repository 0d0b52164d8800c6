"""Command line: ``python -m workbench {run,serve,report}`` (also installed as ``workbench``)."""

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

    sub.add_parser("report", help="rebuild reports/index.html from recorded results")

    serve = sub.add_parser("serve", help="serve SavedModels with TensorFlow Serving's REST API")
    serve.add_argument(
        "--model-base", default=None, help="model base path (<base>/<name>/<version>/)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    serve.add_argument(
        "--port", type=int, default=8501, help="port (TF Serving's REST default: 8501)"
    )
    serve.add_argument(
        "--max-body-bytes", type=int, default=None, help="reject larger requests (413)"
    )
    serve.add_argument("--log-level", default="warning")

    args = parser.parse_args(argv)
    if args.command == "run":
        from workbench import runner

        try:
            cap = args.memory_cap_mib * 2**20 if args.memory_cap_mib else None
            if cap and runner.MemoryLimit.unavailable():
                print(f"--memory-cap-mib: {runner.MemoryLimit.unavailable()}", file=sys.stderr)
                return 2
            runner.run_all(args.profile, args.notebooks or None, memory_cap_bytes=cap)
        except runner.NotebookFailed as err:
            print(err, file=sys.stderr)
            return 1
    elif args.command == "report":
        from workbench import report

        print(report.build_index())
    elif args.command == "serve":
        from workbench import serve

        serve.run_server(
            model_base=args.model_base,
            host=args.host,
            port=args.port,
            max_body_bytes=args.max_body_bytes,
            log_level=args.log_level,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
