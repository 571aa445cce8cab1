"""Where the published weights live, how they are fetched and verified.

The published weight files are not ours to bundle, so they are installed on
demand into a cache and verified by sha256.  A model's weights are found, in
this order:

1. an explicit path (``weights=`` / ``--weights PATH``);
2. the directory named by ``$CONVFEAT_WEIGHTS_DIR`` (as ``DIR/<subdir>/<file>``
   or ``DIR/<file>``);
3. the user cache (``$CONVFEAT_CACHE_DIR`` or the platform cache dir), where
   ``convfeat weights fetch`` installs them.

Files found through 2. or 3. must match their registered sha256.  An explicit
path is the user's own file: any Keras HDF5 file of the right shape is
accepted, and its checksum is recorded in provenance.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..fileio import sha256_of
from .keras_import import WeightFileError, check_hdf5
from ..errors import ConvfeatError, UnknownNameError

ENV_WEIGHTS_DIR = "CONVFEAT_WEIGHTS_DIR"
ENV_CACHE_DIR = "CONVFEAT_CACHE_DIR"


@dataclass(frozen=True)
class WeightSpec:
    """A published weight file: where it comes from and what it must hash to."""

    name: str
    model: str
    filename: str
    subdir: str
    sha256: str
    url: str
    licence: str
    note: str


WEIGHTS: dict[str, WeightSpec] = {
    spec.name: spec for spec in (
        WeightSpec(
            "choi2017", "choi2017", "weights_theano.hdf5", "choi2017",
            "caf89f811415691fbb245be7eef394b9cebd787d7e3f78e29695972141cf2a08",
            "https://github.com/keunwoochoi/music-auto_tagging-keras/raw/"
            "a3e105d0c4c529c512cc197ad8770ff1cc52aa32/compact_cnn/weights_theano.hdf5",
            "MIT", "complete: features and the 50-tag head (Theano kernel layout)"),
        WeightSpec(
            "choi2017-tf", "choi2017", "weights_tensorflow.hdf5", "choi2017",
            "42e791b8c1b41ffe82c74d0501d8216eaee94d0b727b44de39ccc83ef810aed3",
            "https://github.com/keunwoochoi/music-auto_tagging-keras/raw/"
            "a3e105d0c4c529c512cc197ad8770ff1cc52aa32/compact_cnn/weights_tensorflow.hdf5",
            "MIT", "same parameters, TF layout; features only (the file has no tag head)"),
        WeightSpec(
            "choi2017-k2", "choi2017-k2", "model_best.hdf5", "choi2017-keras2",
            "b5042bd44de1fdd9d757b764d9246e6934f47c8bdc5c15bf13566495f3439d48",
            "https://github.com/keunwoochoi/transfer_learning_music/raw/"
            "e1f83c389ff32ce48551f916414ae869cbe7f6e6/keras2_model/model_best.hdf5",
            "no licence file: download on demand only", "Keras-2 retrain, stored BN statistics"),
    )
}


class WeightsNotFound(ConvfeatError, FileNotFoundError):
    """No installed weights for a model; the message says how to get them."""


class FetchError(ConvfeatError, RuntimeError):
    """A download or copy failed verification; nothing was installed."""


def cache_dir() -> Path:
    """Directory where fetched weights are installed."""
    env = os.environ.get(ENV_CACHE_DIR)
    if env:
        return Path(env).expanduser() / "weights"
    import platformdirs

    return Path(platformdirs.user_cache_dir("convfeat")) / "weights"


def get_spec(name: str) -> WeightSpec:
    try:
        return WEIGHTS[name]
    except KeyError:
        raise UnknownNameError(f"unknown weights {name!r}; known: {', '.join(WEIGHTS)}") from None


def candidates(spec: WeightSpec) -> list[Path]:
    """Paths searched for ``spec``, in resolution order (explicit path excluded)."""
    paths = []
    env = os.environ.get(ENV_WEIGHTS_DIR)
    if env:
        root = Path(env).expanduser()
        paths += [root / spec.subdir / spec.filename, root / spec.filename]
    paths.append(cache_dir() / spec.subdir / spec.filename)
    return paths


def resolve(name: str, weights: str | Path | None = None) -> Path:
    """Path of the weight file to use for registered weights ``name``.

    An explicit ``weights`` path wins (it must exist).  Otherwise the first
    existing candidate is used, and it must match the registered sha256.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFound(f"weights file not found: {path}")
        return path
    spec = get_spec(name)
    for path in candidates(spec):
        if path.is_file():
            digest = sha256_of(path)
            if digest != spec.sha256:
                raise WeightFileError(
                    f"{path} does not match the published sha256 of {name} "
                    f"(got {digest[:12]}…, expected {spec.sha256[:12]}…); "
                    f"delete it and run: convfeat weights fetch {name}")
            return path
    raise WeightsNotFound(
        f"weights for {name!r} are not installed; run `convfeat weights fetch {name}` "
        f"(or `--from PATH` for a local copy), set ${ENV_WEIGHTS_DIR}, or pass --weights PATH")


def status() -> list[dict]:
    """One row per registered weight file: where it is found and whether it verifies."""
    rows = []
    for spec in WEIGHTS.values():
        found = next((p for p in candidates(spec) if p.is_file()), None)
        verified = None if found is None else sha256_of(found) == spec.sha256
        rows.append({"name": spec.name, "model": spec.model, "path": str(found) if found else None,
                     "verified": verified, "licence": spec.licence, "note": spec.note})
    return rows


def _open_source(source: str):
    """A readable binary stream for a local path, ``file://`` or ``http(s)://`` URL."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https", "file"):
        return urllib.request.urlopen(source, timeout=60)  # noqa: S310 - schemes checked above
    if parsed.scheme and len(parsed.scheme) > 1:
        raise FetchError(f"unsupported source {source!r}: use a path, file://, http:// or https://")
    path = Path(source).expanduser()
    if path.is_dir():
        raise FetchError(f"{path} is a directory; give the weight file itself")
    if not path.is_file():
        raise FetchError(f"source not found: {path}")
    return open(path, "rb")


def fetch(name: str, source: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Install registered weights ``name`` into the cache, verified by sha256.

    ``source``: a local path, ``file://`` URL or mirror URL; default the
    canonical URL.  The file is written to a temporary name beside its target
    and renamed only after its sha256 matches and it opens as HDF5, so a
    failed fetch installs nothing and leaves any earlier good copy in place.
    Returns the installed path.
    """
    spec = get_spec(name)
    target = cache_dir() / spec.subdir / spec.filename
    if target.is_file() and not force and sha256_of(target) == spec.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.filename}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        src = os.fspath(source) if source else spec.url
        try:
            with os.fdopen(fd, "wb") as out, _open_source(src) as stream:
                shutil.copyfileobj(stream, out, length=1 << 20)
        except FetchError:
            raise
        except OSError as exc:  # URLError is an OSError
            raise FetchError(f"could not read {src}: {exc}") from exc
        digest = sha256_of(tmp)
        if digest != spec.sha256:
            try:
                check_hdf5(tmp)
                why = "the file differs from the published one (truncated or modified?)"
            except WeightFileError as exc:
                why = str(exc).replace(str(tmp), "the downloaded file")
            raise FetchError(f"{name}: sha256 mismatch (got {digest[:12]}…, expected "
                             f"{spec.sha256[:12]}…): {why}; nothing installed")
        try:
            check_hdf5(tmp)
        except WeightFileError as exc:
            raise FetchError(f"{name}: " + str(exc).replace(str(tmp), "the downloaded file")
                             + "; nothing installed") from exc
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a shared cache should be readable
        os.replace(tmp, target)
        return target
    finally:
        tmp.unlink(missing_ok=True)
