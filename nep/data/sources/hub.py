"""CommitPackFT (or a dataset with its layout) on the Hugging Face hub, or a local copy of it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nep.config.schema import IngestHf, default
from nep.data.sources.base import Source, checked_record
from nep.data.sources.files import read_records_file
from nep.util.errors import NepError

# CommitPackFT on the hub: one JSONL file per language config (lowercase language name).
COMMITPACKFT_FILES = default(IngestHf, "files")  # "data/{config}/data.jsonl"


def hf_files(*, dataset: str, revision: str, languages: Iterable[str], files: str = COMMITPACKFT_FILES,
             split: str = default(IngestHf, "split")) -> list[tuple[str, str]]:
    """(name, local path) of each language config's data file, in `languages` order.

    `dataset` is a hub id, read at `revision` (downloaded once into the Hugging Face cache; a commit
    sha is served from the cache without network), or a local directory with the same layout; the
    name is `hf://datasets/<id>@<revision>/<file>` or the local path."""
    if split != "train":
        raise NepError(f"ingest.hf.split: CommitPackFT's data files hold only the 'train' split, not {split!r}")
    local = Path(dataset)
    out = []
    for lang in languages:
        config = lang.lower()
        file = files.format(config=config)
        if local.is_dir():
            path = local / file
            if not path.is_file():
                raise NepError(f"{dataset}: no data for language config '{config}' ({path})")
            out.append((str(path), str(path)))
            continue
        out.append((f"hf://datasets/{dataset}@{revision}/{file}", hub_file(dataset, revision, file, config)))
    return out


HUB_PROBE_TIMEOUT_S = 5.0  # one request that says whether the hub answers at all, before any download


def hub_unreachable(endpoint: str | None = None, timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the hub does not answer (None when it does): one request with a short timeout and no
    retries, so an offline machine learns it in seconds rather than after a download's retries."""
    from huggingface_hub import constants, get_session

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = (endpoint or constants.ENDPOINT).rstrip("/")
    try:
        get_session().head(f"{url}/api/datasets", timeout=timeout)
    except Exception as e:  # noqa: BLE001 - any transport failure means unreachable
        return f"{url} does not answer ({type(e).__name__})"
    return None


def hub_file(dataset: str, revision: str, file: str, config: str = "") -> str:
    """The local copy of one file of a hub dataset (downloaded on first use; a cached copy is used
    without asking the hub). An unreachable hub is one line saying so, after one quick probe."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    cached = try_to_load_from_cache(dataset, file, revision=revision, repo_type="dataset")
    if isinstance(cached, str):
        return cached
    why = hub_unreachable()
    if why:
        raise NepError(
            f"the hub is unreachable ({why}) and {dataset}@{revision[:12]}/{file} is not cached",
            param="ingest.hf.dataset",
            hint="connect and run once to cache it, or point ingest.hf.dataset at a local copy")
    try:
        return hf_hub_download(dataset, file, repo_type="dataset", revision=revision)
    except RemoteEntryNotFoundError as e:
        raise NepError(f"{dataset}: no data for language config '{config}' ({file})") from e
    except LocalEntryNotFoundError as e:  # the hub stopped answering after the probe
        raise NepError(f"the hub is unreachable and {dataset}@{revision[:12]}/{file} is not cached",
                                  param="ingest.hf.dataset",
                                  hint="connect and run once to cache it, or point ingest.hf.dataset at a local copy") from e
    except Exception as e:  # no such dataset or revision
        raise NepError(f"ingest.hf: cannot fetch {file} of {dataset}@{revision} ({type(e).__name__}: {e}); "
                         "check ingest.hf.dataset/revision, or point ingest.hf.dataset at a local copy") from e


def local_path(name: str) -> str:
    """The local file behind a name that `hf_files` or the jsonl source recorded."""
    if not name.startswith("hf://datasets/"):
        return name
    dataset, _, rest = name.removeprefix("hf://datasets/").partition("@")
    revision, _, file = rest.partition("/")
    return hub_file(dataset, revision, file)


def hf_records(
    *,
    dataset: str,
    revision: str,
    languages: Iterable[str],
    split: str = default(IngestHf, "split"),
    files: str = COMMITPACKFT_FILES,
    max_records_per_language: int = 0,
    drops: Counter,
) -> Iterator[dict[str, Any]]:
    """CommitPackFT records, one language config after the other (see `hf_files`)."""
    for _, path in hf_files(dataset=dataset, revision=revision, languages=languages, files=files, split=split):
        kept = 0
        for obj in read_records_file(path, drops):
            if max_records_per_language and kept >= max_records_per_language:
                break
            record = checked_record(obj, None, drops)
            if record is not None:
                kept += 1
                yield record


class HfSource(Source):
    """`ingest.source: hf`: CommitPackFT's per-language data files (downloaded once into the Hugging
    Face cache at `ingest.hf.revision`), or a local directory with the same layout."""

    name = "hf"
    require_records = False  # a language may have no record after the cap
    filters_languages = False  # each file is one language config of ingest.languages
    empty_hint = "language configs that do not exist, or max_records_per_language"

    def describe(self) -> str:
        return f"{self.params.dataset}@{self.params.revision[:12]}, {len(self.cfg.languages)} languages"

    def files(self) -> list[tuple[str, str]]:
        p = self.params
        return hf_files(dataset=p.dataset, revision=p.revision, languages=self.cfg.languages, files=p.files,
                        split=p.split)

    @property
    def cap_per_language(self) -> int:
        return self.params.max_records_per_language

    def hub_dataset(self) -> tuple[str, str, list[str]] | None:
        p = self.params
        return p.dataset, p.revision, [p.files.format(config=lang.lower()) for lang in self.cfg.languages]

