"""How long `dvc push` hangs on a stalled S3 endpoint, by remote settings.

    python -m benchmarks.s3_stall                                    # every row of the table below
    python -m benchmarks.s3_stall --only "5 15 1"                    # one: connect, read timeout, attempts

In a scratch DVC project with one small tracked file and an S3 remote whose `endpointurl` is a
socket on 127.0.0.1 that accepts connections and never answers (as a server that died mid-push or
a black-holed proxy can), runs `dvc push -j 4` and reports the seconds until it fails. Each setting
is `connect_timeout read_timeout AWS_MAX_ATTEMPTS`, `-` leaving it at its default (dvc-s3 goes
through s3fs, whose defaults are 5 s and 15 s with 5 retries of its own; botocore retries each
call up to 5 attempts inside them). Runs take minutes: the point is how long they take.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SETTINGS = ["- - -", "10 30 -", "5 10 -", "10 30 1", "5 15 2", "5 15 1", "2 2 -"]


def stalled_push(connect: str, read: str, attempts: str, limit_s: float) -> tuple[float, str]:
    """(seconds, dvc's last error line) of one push to a silent endpoint."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(128)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIAFAKE", "AWS_SECRET_ACCESS_KEY": "fake",
           "AWS_DEFAULT_REGION": "us-east-1"}
    env.pop("AWS_MAX_ATTEMPTS", None)
    if attempts != "-":
        env["AWS_MAX_ATTEMPTS"] = attempts
    try:
        with tempfile.TemporaryDirectory() as tmp:
            project = Path(tmp)

            def run(*args: str) -> None:
                subprocess.run(args, cwd=project, env=env, check=True, capture_output=True)

            run("git", "init", "-q")
            run("dvc", "init", "-q")
            (project / "data.txt").write_text("data\n")
            run("dvc", "add", "-q", "data.txt")
            run("dvc", "remote", "add", "-d", "s3", "s3://nep-bucket/cache")
            run("dvc", "remote", "modify", "s3", "endpointurl", f"http://127.0.0.1:{silent.getsockname()[1]}")
            for key, value in (("connect_timeout", connect), ("read_timeout", read)):
                if value != "-":
                    run("dvc", "remote", "modify", "s3", key, value)
            start = time.perf_counter()
            try:
                done = subprocess.run(["dvc", "push", "-j", "4"], cwd=project, env=env, capture_output=True,
                                      text=True, timeout=limit_s)
            except subprocess.TimeoutExpired:
                return time.perf_counter() - start, f"still hanging after {limit_s:.0f} s"
            errors = [line for line in done.stderr.splitlines() if "ERROR" in line] or ["no error"]
            return time.perf_counter() - start, f"rc {done.returncode}: {errors[-1].strip()[:90]}"
    finally:
        silent.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help='one setting, e.g. "5 15 1"')
    parser.add_argument("--limit-s", type=float, default=1800)
    args = parser.parse_args()
    print("| connect_timeout | read_timeout | AWS_MAX_ATTEMPTS | push fails after | error |")
    print("|---|---|---|---:|---|")
    for setting in [args.only] if args.only else SETTINGS:
        connect, read, attempts = setting.split()
        seconds, error = stalled_push(connect, read, attempts, args.limit_s)
        print(f"| {connect} | {read} | {attempts} | {seconds:.0f} s | {error} |", flush=True)


if __name__ == "__main__":
    main()
