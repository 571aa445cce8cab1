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
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..fileio import describe_os_error, fsync_file, one_line, sha256_of, temporary_beside
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

    An explicit ``weights`` path wins: it must exist and be a readable HDF5 file
    (a truncated or damaged one is refused here with one line, as
    :class:`WeightFileError`).  Otherwise the first existing candidate is used,
    and it must match the registered sha256.
    """
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsNotFound(f"weights file not found: {path}")
        check_readable_hdf5(path, name)
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


def check_readable_hdf5(path: Path, name: str | None = None) -> None:
    """Raise :class:`WeightFileError` (one line) unless ``path`` is an HDF5 file that
    opens: not HDF5 at all (HTML page, pickle, empty), truncated, damaged or unreadable."""
    import h5py

    check_hdf5(path)
    try:
        with h5py.File(path, "r"):
            pass
    except OSError as exc:
        if isinstance(exc, PermissionError) or exc.errno:
            raise WeightFileError(describe_os_error(exc, path, "read")) from None
        fetch_hint = (f", or install the published file with `convfeat weights fetch {name}`"
                      if name in WEIGHTS else "")
        raise WeightFileError(f"{path} is not a readable HDF5 file ({one_line(exc)}); it is probably truncated "
                              f"or damaged: copy or download it again{fetch_hint}") from None


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
        raise _Unreadable(f"source not found: {path}")
    return open(path, "rb")


def fetch(name: str, source: str | os.PathLike | None = None, force: bool = False, *,
          strict_source: bool = False) -> Path:
    """Install registered weights ``name`` into the cache, verified by sha256.

    ``source``: a local path, ``file://`` URL or mirror URL; default the
    canonical URL.  The file is written to a temporary name beside its target
    and renamed only after its sha256 matches and it opens as HDF5, so a
    failed fetch installs nothing and leaves any earlier good copy in place.

    A given ``source`` is always verified, also when a verified copy is installed
    already (the copy is then kept as it is): a source that is not the published
    file raises :class:`FetchError`.  Only a source that cannot be read at all is
    passed over in that case, keeping the installed copy, unless
    ``strict_source`` (the command line's choice): then it raises too.  Without
    ``source``, an installed verified copy is returned at once (unless ``force``).

    Returns the installed path.
    """
    spec = get_spec(name)
    target = cache_dir() / spec.subdir / spec.filename
    installed = target.is_file() and sha256_of(target) == spec.sha256
    if installed and not force and source is None:
        return target
    src = os.fspath(source) if source else spec.url
    try:
        with temporary_beside(target, suffix=".part") as tmp:  # removed unless renamed into place
            try:
                _copy_verified(name, spec, src, Path(tmp))
            except _Unreadable as exc:
                if installed and not force and not strict_source:
                    return target        # nothing to verify; the installed copy is the published file
                raise FetchError(str(exc) + _kept(installed, target)) from None
            except FetchError as exc:
                raise FetchError(str(exc) + _kept(installed, target)) from None
            if installed and not force:
                return target            # the source verifies; the installed copy stays untouched
            fsync_file(tmp)
            os.replace(tmp, target)
    except FetchError:
        raise
    except OSError as exc:
        if not target.parent.exists() or not os.access(target.parent, os.W_OK):
            raise FetchError(f"{describe_os_error(exc, target.parent, 'write')}; nothing installed (the cache is "
                             f"${ENV_CACHE_DIR} or the platform cache folder)") from None
        raise FetchError(f"{describe_os_error(exc, target, 'write')}; nothing installed") from None
    return target


def _kept(installed: bool, target: Path) -> str:
    return f" (the verified copy installed at {target} is unchanged)" if installed else ""


class _Unreadable(FetchError):
    """The source could not be read at all (missing, offline, refused)."""


def _copy_verified(name: str, spec: WeightSpec, src: str, tmp: Path) -> None:
    """Copy ``src`` into ``tmp`` and check it is the published file (sha256, HDF5);
    raise :class:`_Unreadable` when ``src`` cannot be read, :class:`FetchError` when
    it is not the published file."""
    remote = urllib.parse.urlparse(src).scheme in ("http", "https")

    def unreadable(exc: OSError) -> _Unreadable:
        reason = getattr(exc, "reason", None) or exc
        advice = (f"; without network access, download {spec.url} on another machine and install it with "
                  f"`convfeat weights fetch {name} --from PATH_OR_URL` (a local copy or a mirror)"
                  if remote else "")
        return _Unreadable(f"could not read {src}: {one_line(reason)}{advice}; nothing installed")

    try:
        stream = _open_source(src)
    except FetchError:
        raise
    except OSError as exc:  # URLError is an OSError
        raise unreadable(exc) from None
    with stream, open(tmp, "wb") as out:   # an error writing tmp is the cache's: the caller says so
        while True:
            try:
                block = stream.read(1 << 20)
            except OSError as exc:
                raise unreadable(exc) from None
            if not block:
                break
            out.write(block)
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
