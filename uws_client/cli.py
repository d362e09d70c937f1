"""The ``uws`` command: submit, follow and fetch jobs of a UWS 1.1 service.

Exit status: 0 on success; 1 when a job ends in ERROR or ABORTED (its error printed) or
is still running when ``--timeout`` passes; 2 for a usage, configuration or HTTP error.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from uws_client.client import PROVENANCE_FORMATS, Client, Job, Progress, UWSClientError
from uws_client.config import ConfigError, load_config
from uws_client.documents import JobInfo

EXIT_OK, EXIT_JOB_FAILED, EXIT_USAGE = 0, 1, 2


class ProgressBar:
    """One line redrawn in place on a terminal; one line per change otherwise (logs)."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.started = time.monotonic()
        self.last = ""

    def update(self, info: JobInfo, progress: Progress | None) -> None:
        fraction = progress.fraction if progress else None
        if info.phase == "COMPLETED":
            fraction = 1.0
        elapsed = int(time.monotonic() - self.started)
        if fraction is None:
            bar = "[" + "." * self.width + "]     "
        else:
            fraction = min(max(fraction, 0.0), 1.0)
            filled = int(round(fraction * self.width))
            bar = "[" + "#" * filled + "-" * (self.width - filled) + f"] {fraction:4.0%}"
        message = progress.message if progress and progress.message else ""
        line = f"{bar} {info.phase:<9} {elapsed:>4d}s {message}"[:120]
        if line == self.last:
            return
        if self.tty:
            self.stream.write("\r" + line.ljust(len(self.last)))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
        self.last = line

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


def _pairs(items: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{what} must be NAME=VALUE, not {item!r}")
        out[key] = value
    return out


def _finish(job: Job, out: TextIO, err: TextIO) -> int:
    info = job.info(refresh=False)
    if info.phase == "COMPLETED":
        print(f"{job.url} COMPLETED", file=out)
        return EXIT_OK
    print(f"{job.url} {info.phase}" + (f": {info.error}" if info.error else ""), file=err)
    return EXIT_JOB_FAILED


def _wait(job: Job, timeout: float | None, quiet: bool, err: TextIO) -> None:
    bar = None if quiet else ProgressBar(err)
    try:
        job.wait(timeout=timeout, on_update=bar.update if bar else None)
    finally:
        if bar:
            bar.close()


def _download(job: Job, directory: str, out: TextIO) -> None:
    for path in job.download(directory):
        print(path, file=out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="uws", description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", help="the service (default: $UWS_URL or the config file)")
    parser.add_argument("--token", help="bearer token (default: $UWS_TOKEN or the config file)")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("definitions", help="list the job definitions")

    p = sub.add_parser("submit", help="create a job: uws submit NAME k=v ...")
    p.add_argument("name")
    p.add_argument("params", nargs="*", metavar="NAME=VALUE")
    p.add_argument("--file", action="append", default=[], metavar="NAME=PATH", help="upload a file")
    p.add_argument("--run", action="store_true", help="start the job at once")
    p.add_argument("--wait", action="store_true", help="start it and wait until it ends")
    p.add_argument("--download", metavar="DIR", help="start, wait, and save the results in DIR")
    p.add_argument("--timeout", type=float, help="give up waiting after this many seconds")
    p.add_argument("--no-check", action="store_true", help="do not check parameters first")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("list", help="list jobs")
    p.add_argument("--name", help="only this job list (definition)")
    p.add_argument("--phase", action="append", default=[], help="only jobs in this phase")
    p.add_argument("--last", type=int, help="the N most recent jobs of each list")

    p = sub.add_parser("show", help="a job's phase, parameters, results and error")
    p.add_argument("job", help="job URL, NAME/ID or ID")

    p = sub.add_parser("wait", help="wait until a job ends, with a progress bar")
    p.add_argument("job")
    p.add_argument("--timeout", type=float)
    p.add_argument("-q", "--quiet", action="store_true")

    p = sub.add_parser("run", help="start a PENDING job")
    p.add_argument("job")

    p = sub.add_parser("set", help="change parameters of a PENDING job")
    p.add_argument("job")
    p.add_argument("params", nargs="+", metavar="NAME=VALUE")

    p = sub.add_parser("results", help="list a job's results, or save them with -o DIR")
    p.add_argument("job")
    p.add_argument("-o", "--output", metavar="DIR")

    p = sub.add_parser("prov", help="a job's provenance document")
    p.add_argument("job")
    p.add_argument("--format", choices=PROVENANCE_FORMATS, default="json")
    p.add_argument("-o", "--output", metavar="FILE")

    for name, text in (("abort", "abort a job"), ("delete", "delete a job")):
        sub.add_parser(name, help=text).add_argument("job")
    return parser


def run(argv: Sequence[str], out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The command line without ``sys.exit`` (tests call this)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    try:
        config = load_config(args.url, args.token)
        client = Client(config.url, config.token)
        return _command(args, client, out, err)
    except (ConfigError, UWSClientError) as exc:
        print(f"uws: {exc}", file=err)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("uws: interrupted", file=err)
        return 130


def _command(args: argparse.Namespace, client: Client, out: TextIO, err: TextIO) -> int:
    cmd = args.command
    if cmd == "definitions":
        for d in client.definitions():
            first_line = (d.get("description") or "").strip().split("\n", 1)[0]
            print(f"{d.get('name', ''):<24} {first_line}", file=out)
        return EXIT_OK
    if cmd == "submit":
        files = {k: Path(v) for k, v in _pairs(args.file, "--file").items()}
        for key, path in files.items():
            if not path.is_file():
                raise ConfigError(f"--file {key}={path}: no such file")
        start = args.run or args.wait or bool(args.download)
        job = client.submit(
            args.name,
            _pairs(args.params, "a parameter"),
            files=files,
            run=start,
            check=not args.no_check,
        )
        print(job.url, file=out)
        if not (args.wait or args.download):
            return EXIT_OK
        _wait(job, args.timeout, args.quiet, err)
        status = _finish(job, out, err)
        if args.download and status == EXIT_OK:
            _download(job, args.download, out)
        return status
    if cmd == "list":
        for name, ref in client.jobs(args.name, phases=args.phase, last=args.last):
            print(
                f"{ref.job_id:<24} {name:<20} {ref.phase:<10} {ref.creation_time or ''}", file=out
            )
        return EXIT_OK
    job = client.job(args.job)
    if cmd == "show":
        info = job.info()
        print(f"job       {job.url}\nphase     {info.phase}", file=out)
        for label, value in (
            ("owner", info.owner),
            ("created", info.creation_time),
            ("started", info.start_time),
            ("ended", info.end_time),
            ("duration", info.execution_duration),
            ("destruction", info.destruction),
            ("error", info.error),
        ):
            if value not in (None, ""):
                print(f"{label:<9} {value}", file=out)
        for k, v in info.parameters.items():
            print(f"param     {k} = {v}", file=out)
        for r in info.results:
            size = "" if r.size is None else r.size
            print(f"result    {r.id} {r.mime_type or ''} {size} {r.href}", file=out)
        progress = job.progress() if info.phase in ("QUEUED", "EXECUTING") else None
        if progress is not None and progress.fraction is not None:
            print(f"progress  {progress.fraction:.0%} {progress.message}", file=out)
        return EXIT_OK
    if cmd == "wait":
        _wait(job, args.timeout, args.quiet, err)
        return _finish(job, out, err)
    if cmd == "run":
        job.run()
        return EXIT_OK
    if cmd == "set":
        job.set_parameters(_pairs(args.params, "a parameter"))
        return EXIT_OK
    if cmd == "results":
        if args.output:
            _download(job, args.output, out)
        else:
            for r in job.results():
                print(f"{r.id:<24} {r.mime_type or '':<24} {r.href}", file=out)
        return EXIT_OK
    if cmd == "prov":
        data = job.provenance(args.format)
        if args.output:
            Path(args.output).write_bytes(data)
        else:
            out.write(data.decode("utf-8", "replace"))
        return EXIT_OK
    if cmd == "abort":
        job.abort()
        return EXIT_OK
    if cmd == "delete":
        job.delete()
        return EXIT_OK
    raise ConfigError(f"unknown command {cmd}")  # argparse refuses it first


def main() -> None:
    sys.exit(run(sys.argv[1:]))


if __name__ == "__main__":
    main()
