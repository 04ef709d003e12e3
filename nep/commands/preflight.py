"""Check what the configured run needs, without doing any of it, before paying for any of it.

    nep preflight                 # the workspace's params.yaml
    nep preflight --preset paper  # a preset's configuration, before applying it

Checks: params.yaml against its schema; hub datasets and models reachable, or cached when
HF_HUB_OFFLINE is set (short timeouts); an API key in each `api_key_env` of a chosen LLM backend
(label, judge, openai predictors; the key itself is never printed); a CUDA GPU and an installed
unsloth / vllm where chosen; each S3 remote's bucket (dvc remote list) reachable, its
`connect_timeout`, `read_timeout` and `verify` set and `AWS_MAX_ATTEMPTS` in the environment (a
warning otherwise: with the defaults a stalled endpoint hangs a push for about 7 minutes, and a
changed object is pulled without a word; docs/operations.md). Prints
one row per check (pass / warn / fail / skip, what, which param, what to do) and exits 1 on any
failure.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nep.commands.config import check
from nep.config.params import load_yaml, parse_yaml
from nep.config.presets import committed_text, render
from nep.config.schema import ParamsError, section
from nep.data.sources.base import source_for
from nep.llm.secrets import header_problem
from nep.predictors.kinds import build_predictor
from nep.train.gguf import check_gguf
from nep.util import device
from nep.util.errors import NepError

HUB_TIMEOUT_S = 5.0
S3_TIMEOUT_S = 5.0
GPU_EXTRA = "pip install -r requirements-gpu.txt (Linux, CUDA)"
HUB_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


# What docs/operations.md ("Remote storage on S3") recommends for an S3 remote: seconds to connect,
# seconds to wait for each response, re-hashing every downloaded object; and in the environment,
# botocore's attempts per call (s3fs keeps its own 5 retries around each).
S3_REMOTE_SETTINGS = {"connect_timeout": "5", "read_timeout": "15", "verify": "true"}
S3_ATTEMPTS = "1"


@dataclass
class Check:
    status: str  # pass | warn | fail | skip
    what: str
    param: str
    note: str = ""  # what to do (fail), or what was found


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in ("1", "ON", "YES", "TRUE")


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0][:120] if text else ''}".rstrip(": ")


# ---------------------------------------------------------------- hub
def hub_check(repo_id: str, *, repo_type: str, revision: str | None, param: str, env: Mapping[str, str],
              files: list[str] | None = None) -> Check:
    """A hub repo is reachable (online) or cached (HF_HUB_OFFLINE). A local directory passes.
    Within a run, a repo asked for twice is looked up once."""
    key = (repo_id, repo_type, revision, tuple(files or ()), tuple(sorted(env.items())))
    if key not in _HUB_SEEN:
        _HUB_SEEN[key] = _hub_check(repo_id, repo_type=repo_type, revision=revision, env=env, files=files)
    found = _HUB_SEEN[key]
    return Check(found.status, found.what, param, found.note)


_HUB_SEEN: dict[tuple, Check] = {}


def _hub_check(repo_id: str, *, repo_type: str, revision: str | None, env: Mapping[str, str],
               files: list[str] | None) -> Check:
    param = ""
    what = f"hub {repo_type} {repo_id}" + (f"@{revision[:12]}" if revision else "")
    if Path(repo_id).exists():
        return Check("pass", f"local {repo_type} {repo_id}", param, "a local directory")
    if not HUB_ID.match(repo_id):
        return Check("fail", what, param, "neither a local path nor a hub id (owner/name)")
    cache_dir = env.get("HF_HUB_CACHE") or (Path(env["HF_HOME"]) / "hub" if env.get("HF_HOME") else None)
    if repo_type == "model":
        files = files or ["config.json"]
    cached = _cached(repo_id, repo_type, revision, files, cache_dir)
    if _truthy(env.get("HF_HUB_OFFLINE")):
        if cached:
            return Check("pass", what, param, "cached (HF_HUB_OFFLINE)")
        return Check("fail", what, param, "HF_HUB_OFFLINE is set and it is not cached: unset "
                     "HF_HUB_OFFLINE and fetch it once, or point the param at a local copy")
    from huggingface_hub import HfApi

    api = HfApi(endpoint=env.get("HF_ENDPOINT") or None, token=env.get("HF_TOKEN") or None)
    try:
        info = api.dataset_info if repo_type == "dataset" else api.model_info
        info(repo_id, revision=revision, timeout=HUB_TIMEOUT_S)
        return Check("pass", what, param, "reachable")
    except Exception as e:  # noqa: BLE001 - any hub failure is reported, not raised
        if cached:
            return Check("pass", what, param, f"hub unreachable ({_short(e)}); cached copy (set HF_HUB_OFFLINE=1)")
        if type(e).__name__ in ("RepositoryNotFoundError", "RevisionNotFoundError", "GatedRepoError"):
            return Check("fail", what, param, f"{_short(e)}: check the id/revision, or set HF_TOKEN for a gated repo")
        return Check("fail", what, param, f"hub unreachable ({_short(e)}): connect, or cache it and set "
                     "HF_HUB_OFFLINE=1, or use a local directory")


def _cached(repo_id: str, repo_type: str, revision: str | None, files: list[str] | None, cache_dir: Any) -> bool:
    from huggingface_hub import try_to_load_from_cache

    if not files:
        return False
    for name in files:
        found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir, revision=revision, repo_type=repo_type)
        if not isinstance(found, str):
            return False
    return True


def _pipeline_output(path: str) -> bool:
    return path.split("/")[0] in ("models", "data")


def model_check(model: str, param: str, env: Mapping[str, str]) -> Check:
    if model == "tiny-random":
        return Check("skip", "model tiny-random", param, "built offline")
    if _pipeline_output(model) and not Path(model).exists():
        return Check("skip", f"model {model}", param, "made by the pipeline (finetune)")
    if model.lower().endswith(".gguf"):

        try:
            check_gguf(model, param)
        except NepError as e:
            return Check("fail", f"model {model}", param, e.message + (f" ({e.hint})" if e.hint else ""))
        return Check("pass", f"model {model}", param, "local .gguf file, sha256 checked")
    return hub_check(model, repo_type="model", revision=None, param=param, env=env)


# ---------------------------------------------------------------- keys, GPU, S3
def key_check(var: str, param: str, used_by: str, env: Mapping[str, str]) -> Check:
    if not var:
        return Check("skip", f"API key for {used_by}", param, 'api_key_env is "" (no authentication)')
    if (env.get(var) or "").strip(" \t"):

        if problem := header_problem(env[var].strip(" \t")):  # the key itself is never printed
            return Check("fail", f"API key for {used_by}", param, f"{var} holds {problem}, which an HTTP header "
                         "cannot carry: export the key alone (no CR/LF from a CRLF .env file)")
        return Check("pass", f"API key for {used_by}", param, f"{var} is set")
    return Check("fail", f"API key for {used_by}", param, f"export {var}=... (or set {param} to the variable "
                 "that holds the key)")


def cuda_check(param: str, used_by: str) -> Check:
    try:

        ok = device.cuda_available()
    except Exception as e:  # noqa: BLE001 - a broken torch is a failed check
        return Check("fail", f"CUDA GPU for {used_by}", param, f"torch: {_short(e)}")
    if ok:
        return Check("pass", f"CUDA GPU for {used_by}", param, "available")
    return Check("fail", f"CUDA GPU for {used_by}", param, "no CUDA GPU: run on a GPU machine, or choose a CPU "
                 "backend (finetune.backend: hf; predictor kind: hf or finetuned)")


def package_check(package: str, param: str) -> Check:
    if importlib.util.find_spec(package) is not None:
        return Check("pass", f"package {package}", param, "installed")
    return Check("fail", f"package {package}", param, f"not installed: {GPU_EXTRA}")


def s3_remotes(root: Path) -> dict[str, dict[str, Any]]:
    """DVC remotes (repo + local config) whose url is s3://, by name."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        remotes = dict(repo.config.get("remote", {}))
    return {name: dict(conf) for name, conf in remotes.items() if str(conf.get("url", "")).startswith("s3://")}


def bucket_check(name: str, conf: dict[str, Any]) -> Check:
    url = conf["url"]
    bucket = url.removeprefix("s3://").split("/")[0]
    what = f"S3 bucket of remote '{name}' ({url})"
    try:
        import boto3
        from botocore.config import Config as BotoConfig

        session = boto3.session.Session(profile_name=conf.get("profile"), region_name=conf.get("region"))
        client = session.client(
            "s3", endpoint_url=conf.get("endpointurl"),
            config=BotoConfig(connect_timeout=S3_TIMEOUT_S, read_timeout=S3_TIMEOUT_S, retries={"max_attempts": 1}),
        )
        client.head_bucket(Bucket=bucket)
        return Check("pass", what, ".dvc/config", "reachable")
    except Exception as e:  # noqa: BLE001 - reported as a failed check
        code = str(getattr(e, "response", {}).get("Error", {}).get("Code", "")) if hasattr(e, "response") else ""
        endpoint = f" --endpoint-url {conf['endpointurl']}" if conf.get("endpointurl") else ""
        if code in ("404", "NoSuchBucket"):
            return Check("fail", what, ".dvc/config", f"no such bucket: create it (aws{endpoint} s3 mb s3://{bucket})")
        if code in ("403", "AccessDenied") or type(e).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
            return Check("fail", what, ".dvc/config", f"{_short(e)}: export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY "
                         "or AWS_PROFILE (never in a file in the repo)")
        return Check("fail", what, ".dvc/config", f"unreachable ({_short(e)}): check the url and endpointurl")


def remote_settings_check(name: str, conf: dict[str, Any], env: Mapping[str, str]) -> Check:
    """Warn when an S3 remote lacks what bounds a stalled transfer (timeouts in its config, botocore's
    attempts in the environment) and what verifies downloads."""
    what = f"timeouts and verify of remote '{name}'"
    missing = [k for k in ("connect_timeout", "read_timeout") if not conf.get(k)]
    stall = bool(missing)
    if not (env.get("AWS_MAX_ATTEMPTS") or "").strip():
        missing.append("AWS_MAX_ATTEMPTS")
        stall = True
    if not _truthy(str(conf.get("verify", ""))):
        missing.append("verify")
    if not missing:
        found = ", ".join(f"{k}={conf[k]}" for k in S3_REMOTE_SETTINGS)
        return Check("pass", what, ".dvc/config", f"{found}, AWS_MAX_ATTEMPTS={env['AWS_MAX_ATTEMPTS']}")
    fix = "; ".join(f"export AWS_MAX_ATTEMPTS={S3_ATTEMPTS}" if k == "AWS_MAX_ATTEMPTS"
                    else f"dvc remote modify {name} {k} {S3_REMOTE_SETTINGS[k]}" for k in missing)
    why = [text for cond, text in ((stall, "a stalled endpoint hangs push/pull for minutes"),
                                   ("verify" in missing, "a changed object is pulled without error")) if cond]
    return Check("warn", what, ".dvc/config", f"{', '.join(missing)} unset ({'; '.join(why)}): {fix}")


# ---------------------------------------------------------------- the run's needs
def checks(params: dict[str, Any], *, root: Path = Path("."), env: Mapping[str, str] | None = None) -> Iterator[Check]:
    """Every check the configuration `params` (validated, defaults filled in) calls for."""
    env = dict(os.environ if env is None else env)
    _HUB_SEEN.clear()
    ingest, split, finetune = params["ingest"], params["split"], params["finetune"]
    source = source_for(section("ingest", ingest))
    if (hub := source.hub_dataset()) is not None:
        dataset, revision, files = hub
        yield hub_check(dataset, repo_type="dataset", revision=revision, param=f"{source.param}.dataset",
                        env=env, files=files)
    else:
        yield Check("skip", "hub dataset", "ingest.source", f"source is {ingest['source']}")
    yield from (Check(*row) for row in source.check())
    if split["strategy"] == "external":
        for key in ("external_test", "external_train"):
            value = split.get(key) or ""
            if value and not Path(value).exists() and HUB_ID.match(value):
                yield hub_check(value, repo_type="dataset", revision=split.get("external_revision") or None,
                                param=f"split.{key}", env=env)
    yield model_check(finetune["base_model"], "finetune.base_model", env)
    if finetune["backend"] == "unsloth":
        yield cuda_check("finetune.backend", "finetune (unsloth)")
        yield package_check("unsloth", "finetune.backend")
    else:
        yield Check("skip", "CUDA GPU for finetune", "finetune.backend",
                    f"{finetune['backend']}: runs on the CPU without one")
    if finetune.get("precision") == "fp16":
        yield cuda_check("finetune.precision", "finetune (fp16)")
    for name, entry in params["generate"]["predictors"].items():
        param = f"generate.predictors.{name}"
        kind = entry.get("kind")
        if kind in ("hf", "vllm") and entry.get("model"):
            yield model_check(entry["model"], f"{param}.model", env)
        if kind == "vllm":
            for check in (cuda_check(f"{param}.kind", f"generate@{name} (vllm)"), package_check("vllm", f"{param}.kind")):
                if check.status == "fail" and entry.get("fallback") == "hf":  # runs through transformers instead
                    check = Check("skip", check.what, f"{param}.fallback", f"missing here: hf generates instead ({check.note})")
                yield check
        elif kind in ("hf", "finetuned") and str(entry.get("device", "")).startswith("cuda"):
            yield cuda_check(f"{param}.device", f"generate@{name}")
        elif kind == "openai":
            api_key_env = build_predictor(name, entry).backend_options()["api_key_env"]  # the entry's, else the schema's
            yield key_check(api_key_env, f"{param}.api_key_env", f"generate@{name}", env)
    for stage in ("label", "judge"):
        if params[stage]["backend"] == "openai":
            yield key_check(params[stage]["api_key_env"], f"{stage}.api_key_env", stage, env)
        else:
            yield Check("skip", f"API key for {stage}", f"{stage}.backend", f"{params[stage]['backend']}: offline")
    try:
        remotes = s3_remotes(root)
    except Exception as e:  # noqa: BLE001 - no DVC repo here, or a broken config
        yield Check("fail", "DVC remotes", ".dvc/config", f"cannot read them ({_short(e)})")
        return
    if not remotes:
        yield Check("skip", "S3 remote", ".dvc/config", "none configured (dvc remote list)")
    for name, conf in remotes.items():
        yield bucket_check(name, conf)
        yield remote_settings_check(name, conf, env)


def table(rows: list[Check]) -> str:
    header = Check("STATUS", "CHECK", "PARAM", "WHAT TO DO / FOUND")
    cells = [(r.status.upper() if r is not header else r.status, r.what, r.param, r.note) for r in [header, *rows]]
    widths = [max(len(c[i]) for c in cells) for i in range(3)]
    return "\n".join(
        "  ".join(c[i].ljust(widths[i]) for i in range(3)) + "  " + c[3] for c in cells
    )


def configuration(params_path: Path, preset: str | None) -> dict[str, Any]:
    """The configuration to check, checked as `nep config` checks it (every predictor's options too)."""
    if not preset:
        return check(load_yaml(params_path), params_path)
    return check(parse_yaml(render(preset, committed_text(params_path))), f"preset {preset}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nep preflight", description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--preset", help="check this preset (over the committed params.yaml) instead")
    args = parser.parse_args(argv)


    try:
        params = configuration(args.params, args.preset)
    except (ParamsError, NepError) as e:
        rows = [Check("fail", "params schema", line.split(": ")[1] if ": " in line else "params.yaml", line)
                for line in str(e).splitlines()]
    else:
        rows = [Check("pass", "params schema", "params.yaml", "nep config"),
                *checks(params, root=args.params.resolve().parent)]
    print(table(rows))
    failed = sum(r.status == "fail" for r in rows)
    warned = sum(r.status == "warn" for r in rows)
    warnings = f", {warned} warning(s)" if warned else ""
    print(f"\n{failed} check(s) failed{warnings}" if failed else f"\nall checks passed (or skipped){warnings}")
    return 1 if failed else 0

