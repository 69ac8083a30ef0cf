"""Download public datasets once, check their SHA-256, unpack them and keep them in a cache.

A download goes to a temporary file beside the cache entry, is verified, unpacked into a temporary directory
and only then renamed into place, so an interrupted fetch never leaves a half-written entry behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from rich.progress import DownloadColumn, Progress

from recengine.errors import ConfigError, DataError

_CHUNK = 1 << 20
_MARKER = ".recengine-fetch.json"


@dataclass(frozen=True)
class Source:
    """A registered download: URL, SHA-256 of the file (None = unknown: the caller must pass one), size."""

    url: str
    sha256: str | None
    size: int | None = None


# SHA-256 and sizes as recorded by TensorFlow Datasets (tensorflow_datasets/url_checksums/movielens.txt);
# GroupLens itself publishes only MD5 files. ml-latest-small is a "development" release that GroupLens may
# replace: if its checksum stops matching, pass the new one explicitly.
REGISTRY: dict[str, Source] = {
    "ml-100k": Source("https://files.grouplens.org/datasets/movielens/ml-100k.zip",
                      "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", 4924029),
    "ml-1m": Source("https://files.grouplens.org/datasets/movielens/ml-1m.zip",
                    "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", 5917549),
    "ml-latest-small": Source("https://files.grouplens.org/datasets/movielens/ml-latest-small.zip",
                              "696d65a3dfceac7c45750ad32df2c259311949efec81f0f144fdfb91ebc9e436", 978202),
    "ml-20m": Source("https://files.grouplens.org/datasets/movielens/ml-20m.zip",
                     "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3", 198702078),
    "ml-25m": Source("https://files.grouplens.org/datasets/movielens/ml-25m.zip",
                     "8b21cfb7eb1706b4ec0aac894368d90acf26ebdfb6aced3ebd4ad5bd1eb9c6aa", 261978986),
}


def default_cache_dir() -> Path:
    """$RECENGINE_CACHE, else ~/.cache/recengine."""
    return Path(os.environ.get("RECENGINE_CACHE") or Path.home() / ".cache" / "recengine")


def fetch(
    name_or_url: str,
    *,
    cache_dir: str | Path | None = None,
    sha256: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
    progress: bool = True,
) -> Path:
    """The local path of a dataset, downloading it on first use.

    name_or_url: a REGISTRY name (e.g. "ml-100k") or a URL (http, https or file). sha256: the expected
    checksum; required for a URL or a name whose checksum is unknown, and overriding the registered one.
    A zip is unpacked; the result is the archive's single top-level directory if it has one, else the
    directory it was unpacked into. Any other file is kept as is and its path returned. force: fetch again
    even if cached. progress: show a progress bar while downloading.
    """
    source = REGISTRY.get(name_or_url)
    if source is None:
        if "://" not in name_or_url:
            raise ConfigError(f"unknown dataset {name_or_url!r}: use one of {sorted(REGISTRY)} or a URL")
        source = Source(name_or_url, None)
        key = _name_from_url(name_or_url)
    else:
        key = name_or_url
    expected = (sha256 or source.sha256 or "").lower()
    if not expected:
        raise ConfigError(f"no known SHA-256 for {name_or_url!r}: pass sha256= (the file's published "
                          f"checksum) so the download can be verified")
    if len(expected) != 64 or any(c not in "0123456789abcdef" for c in expected):
        raise ConfigError(f"sha256 must be 64 hexadecimal digits, got {sha256!r}")

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    entry = cache / key
    cached = _cached(entry, expected)
    if cached is not None and not force:
        return cached

    cache.mkdir(parents=True, exist_ok=True)
    filename = Path(urllib.parse.urlparse(source.url).path).name or key
    with tempfile.TemporaryDirectory(dir=cache, prefix=f".{key}-") as tmp:
        download = Path(tmp) / filename
        digest = _download(source.url, download, timeout, progress)
        if digest != expected:
            raise DataError(f"{source.url}: SHA-256 mismatch (expected {expected}, got {digest}); the "
                            f"download is corrupt or the file changed upstream; nothing was cached")
        staged = Path(tmp) / "entry"
        staged.mkdir()
        if zipfile.is_zipfile(download):
            _unzip(download, staged)
        else:
            shutil.move(download, staged / filename)
        result = _result_path(staged)
        (staged / _MARKER).write_text(json.dumps({
            "url": source.url, "sha256": expected, "path": str(result.relative_to(staged)),
        }))
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(staged, entry)  # atomic on one filesystem: the entry is complete or absent
    cached = _cached(entry, expected)
    if cached is None:
        raise DataError(f"{entry}: the cache entry vanished right after it was written; fetch again")
    return cached


def _name_from_url(url: str) -> str:
    name = Path(urllib.parse.urlparse(url).path).name
    for suffix in (".zip", ".gz", ".tgz"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._")
    return name or hashlib.sha256(url.encode()).hexdigest()[:16]


def _cached(entry: Path, expected: str) -> Path | None:
    """The cached result if the entry is complete and came from a file with this checksum."""
    marker = entry / _MARKER
    if not marker.is_file():
        return None
    try:
        meta = json.loads(marker.read_text())
    except ValueError:
        return None
    if meta.get("sha256") != expected:
        return None
    path = entry / meta.get("path", ".")
    return path if path.exists() else None


def _download(url: str, target: Path, timeout: float, progress: bool) -> str:
    """Stream url into target; the SHA-256 of what was written."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out, \
                Progress(*Progress.get_default_columns(), DownloadColumn(), transient=True,
                         disable=not progress) as bar:
            length = response.headers.get("Content-Length") if response.headers else None
            task = bar.add_task(f"fetching {target.name}", total=int(length) if length else None)
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
                bar.advance(task, len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise DataError(f"{url}: download failed ({exc}); check the URL and your connection") from exc
    return digest.hexdigest()


def _unzip(archive: Path, target: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        root = target.resolve()
        for member in zf.namelist():
            # Refuse archives whose members would land outside the target ("zip slip").
            if not (root / member).resolve().is_relative_to(root):
                raise DataError(f"{archive.name}: member {member!r} would be written outside the cache; "
                                f"refusing to unpack")
        zf.extractall(target)
    # macOS archives carry resource forks that are not data.
    shutil.rmtree(target / "__MACOSX", ignore_errors=True)


def _result_path(staged: Path) -> Path:
    children = [p for p in staged.iterdir() if p.name != _MARKER]
    if len(children) == 1:
        return children[0]
    return staged
