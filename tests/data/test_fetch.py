import hashlib
import zipfile
from pathlib import Path

import pytest

from recengine.data.fetch import REGISTRY, fetch
from recengine.errors import ConfigError, DataError


def make_zip(path: Path, members: dict[str, str]) -> tuple[str, str]:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path.as_uri(), hashlib.sha256(path.read_bytes()).hexdigest()


def test_fetch_unpacks_verifies_and_reuses_the_cache(tmp_path):
    members = {"toy/ratings.csv": "userId,movieId\n1,2\n", "toy/README": "hi"}
    url, digest = make_zip(tmp_path / "toy.zip", members)
    cache = tmp_path / "cache"
    path = fetch(url, cache_dir=cache, sha256=digest, progress=False)
    assert path == cache / "toy" / "toy"  # the archive's single top-level folder
    assert (path / "ratings.csv").read_text() == "userId,movieId\n1,2\n"
    # The cache answers without the source: remove it and fetch again.
    (tmp_path / "toy.zip").unlink()
    assert fetch(url, cache_dir=cache, sha256=digest, progress=False) == path
    # force goes back to the (now missing) source.
    with pytest.raises(DataError, match="download failed"):
        fetch(url, cache_dir=cache, sha256=digest, force=True, progress=False)
    assert (path / "README").read_text() == "hi"  # a failed refetch leaves the entry intact


def test_wrong_checksum_is_an_error_and_caches_nothing(tmp_path):
    url, digest = make_zip(tmp_path / "toy.zip", {"a.txt": "a"})
    wrong = "0" * 64
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match=f"SHA-256 mismatch \\(expected {wrong}, got {digest}\\)"):
        fetch(url, cache_dir=cache, sha256=wrong, progress=False)
    assert list(cache.iterdir()) == []  # no entry, no leftover temporary files


def test_cached_entry_of_another_checksum_is_refetched(tmp_path):
    cache = tmp_path / "cache"
    url, digest = make_zip(tmp_path / "toy.zip", {"a.txt": "one"})
    assert (fetch(url, cache_dir=cache, sha256=digest, progress=False)).read_text() == "one"
    url, digest2 = make_zip(tmp_path / "toy.zip", {"a.txt": "two"})
    assert digest2 != digest
    assert (fetch(url, cache_dir=cache, sha256=digest2, progress=False)).read_text() == "two"


def test_archive_with_several_top_level_entries_returns_the_folder(tmp_path):
    url, digest = make_zip(tmp_path / "multi.zip", {"a.txt": "a", "b/c.txt": "c"})
    path = fetch(url, cache_dir=tmp_path / "cache", sha256=digest, progress=False)
    assert path == tmp_path / "cache" / "multi" and (path / "b" / "c.txt").read_text() == "c"


def test_plain_files_are_kept_as_is(tmp_path):
    src = tmp_path / "data.csv"
    src.write_text("x\n1\n")
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    path = fetch(src.as_uri(), cache_dir=tmp_path / "cache", sha256=digest, progress=False)
    assert path.name == "data.csv" and path.read_text() == "x\n1\n"


def test_archives_escaping_the_cache_are_refused(tmp_path):
    url, digest = make_zip(tmp_path / "evil.zip", {"../escape.txt": "x"})
    with pytest.raises(DataError, match="outside the cache"):
        fetch(url, cache_dir=tmp_path / "cache", sha256=digest, progress=False)
    assert not (tmp_path / "escape.txt").exists()


def test_bad_requests(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset 'ml-7k'"):
        fetch("ml-7k", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="no known SHA-256.*pass sha256="):
        fetch("file:///nowhere/x.zip", cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="64 hexadecimal digits"):
        fetch("file:///nowhere/x.zip", cache_dir=tmp_path, sha256="abc")


def test_registry_has_grouplens_urls_with_checksums():
    assert {"ml-100k", "ml-1m", "ml-latest-small", "ml-20m", "ml-25m"} <= set(REGISTRY)
    for name, source in REGISTRY.items():
        assert source.url.startswith("https://files.grouplens.org/") and source.url.endswith(f"{name}.zip")
        assert source.sha256 is not None and len(source.sha256) == 64
