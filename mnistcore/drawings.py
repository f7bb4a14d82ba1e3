"""The drawings store: your own labelled digits, kept as the original PNG + label + the prepared 28x28.

Layout: <root>/<collection>/<drawing-id>/{original.png, prepared.png, meta.json}. The root is
$MNIST_DRAWINGS_DIR, else <data dir>/drawings. The command line uses the collection "default"; the
dashboard gives each browser its own. A drawing is written into a temporary folder and renamed into place
(all or nothing); a relabel rewrites meta.json through a temporary file. Everything read back (the store
itself or a zip to import) is validated first: regular files only, bounded sizes, PNGs of the right
shape, labels 0..9. An import that fails any check writes nothing.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from mnistcore.data import MnistData, default_data_dir
from mnistcore.fileio import FileTooLargeError, NotRegularFileError, atomic_write, atomic_write_json, read_bounded
from mnistcore.owners import QuotaError
from mnistcore.preprocess import ImageReadError, PreparedDigit, prepare_digit

DEFAULT_COLLECTION = "default"
ORIGINAL, PREPARED, META = "original.png", "prepared.png", "meta.json"
FORMAT_VERSION = 1
MAX_IMAGE_BYTES = 10 * 1024 * 1024  # an image file to add (a phone photo is 2-5 MB)
MAX_IMAGE_PIXELS = 40_000_000  # width x height of an image to add, checked before it is decoded
MAX_STORED_SIDE = 1024  # larger originals are stored shrunk (prepare_digit shrinks them anyway)
MAX_META_BYTES = 4096
MAX_PREPARED_BYTES = 16 * 1024  # a 28x28 greyscale PNG is under 1 kB
MAX_DRAWINGS = 5000  # per collection
MAX_ZIP_BYTES = 200 * 1024 * 1024  # the zip file itself
MAX_ZIP_MEMBERS = 3 * MAX_DRAWINGS + 16
MAX_ZIP_UNCOMPRESSED = 256 * 1024 * 1024  # all members together, as actually decompressed
ZIP_FOLDER = "drawings"
_COLLECTION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_ID_RE = re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}")
# What an exported zip holds: [drawings/]<id>/<file>, and folder entries for those folders.
_MEMBER_RE = re.compile(rf"(?:{ZIP_FOLDER}/)?(\d{{8}}-\d{{6}}-[0-9a-f]{{6}})/({ORIGINAL}|{PREPARED}|{META})")
_FOLDER_RE = re.compile(rf"(?:{ZIP_FOLDER}/)?(?:\d{{8}}-\d{{6}}-[0-9a-f]{{6}}/)?")


# Parsed listings per collection folder, with the signature they were read at (see DrawingStore.list).
_LISTS: dict[Path, tuple[tuple[tuple[str, int], ...], tuple[Drawing, ...]]] = {}
MAX_CACHED_LISTS = 256


class DrawingError(ValueError):
    """A drawing or zip that cannot be stored or read; the message is meant for the user. Nothing changed."""


class DrawingQuotaError(DrawingError, QuotaError):
    """Adding these drawings would pass the person's quota; nothing was written."""


@dataclass(frozen=True)
class Drawing:
    """One stored drawing: its label, where it lives and what it came from."""

    drawing_id: str
    path: Path
    label: int
    created: str  # ISO 8601, UTC
    predicted: int | None  # what the model said when it was saved (None when unknown)
    source: str  # "draw", "upload", "cli", "import"

    def pixels(self) -> np.ndarray:
        """The prepared 28x28 uint8 image (what the network sees)."""
        return _read_prepared(self.path / PREPARED)

    def original_png(self) -> bytes:
        """The original picture, as PNG bytes."""
        return _read_regular(self.path / ORIGINAL, MAX_IMAGE_BYTES)


@dataclass(frozen=True)
class ImportReport:
    """What an import did."""

    added: int
    skipped: int  # drawings already in the collection (same id)


def default_drawings_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The drawings root: $MNIST_DRAWINGS_DIR if set, else <data dir>/drawings."""
    env = os.environ.get("MNIST_DRAWINGS_DIR")
    if env:
        return Path(env)
    return (Path(data_dir) if data_dir is not None else default_data_dir()) / "drawings"


def check_label(label: Any) -> int:
    """A digit label 0..9 as int, or DrawingError."""
    if isinstance(label, bool) or not isinstance(label, int | np.integer) or not 0 <= int(label) <= 9:
        raise DrawingError(f"a label must be a digit 0..9, got {label!r}")
    return int(label)


def check_collection(name: str) -> str:
    """A collection name: 1-64 letters, digits, '-' or '_' (it becomes a folder name)."""
    if not isinstance(name, str) or not _COLLECTION_RE.fullmatch(name):
        raise DrawingError(f"{name!r} is not a valid collection name (letters, digits, '-' and '_', at most 64)")
    return name


def _read_regular(path: Path, limit: int) -> bytes:
    """The bytes of a regular file (not a link, device or FIFO) of at most `limit` bytes."""
    try:
        return read_bounded(path, limit)
    except NotRegularFileError:
        raise DrawingError(f"{path} is not a regular file") from None
    except FileTooLargeError as exc:
        if exc.size is None:
            raise DrawingError(f"{path} is more than the {limit:,} bytes allowed") from None
        raise DrawingError(f"{path} is {exc.size:,} bytes, more than the {limit:,} allowed") from None
    except OSError as exc:
        raise DrawingError(f"{path} cannot be read ({exc.strerror or exc})") from None


def read_image_file(path: str | os.PathLike) -> bytes:
    """An image file's bytes, refusing what is not a regular file or is too large."""
    return _read_regular(Path(path), MAX_IMAGE_BYTES)


def _open_image(data: bytes) -> Image.Image:
    """Decode image bytes, refusing pictures too large to decode safely."""
    try:
        img = Image.open(io.BytesIO(data), formats=["PNG", "JPEG"])  # what the pages accept; nothing exotic
        w, h = img.size
        if w * h > MAX_IMAGE_PIXELS:
            raise DrawingError(f"the image is {w}x{h} pixels, more than {MAX_IMAGE_PIXELS:,} allowed")
        img.load()
    except DrawingError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DrawingError(f"not a readable image: {exc}") from None
    return img


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _original_png(source: bytes | np.ndarray) -> bytes:
    """The picture as PNG bytes (re-encoded, so the store only ever holds PNGs), at most MAX_STORED_SIDE px."""
    if isinstance(source, np.ndarray):
        arr = np.ascontiguousarray(source)
        if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
            raise DrawingError(f"expected a uint8 greyscale/RGB/RGBA array, got {arr.dtype} {arr.shape}")
        img = Image.fromarray(arr)
    else:
        img = _open_image(source)
        if img.mode not in ("L", "LA", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.getbands() or "transparency" in img.info else "RGB")
    if max(img.size) > MAX_STORED_SIDE:
        img = img.copy()
        img.thumbnail((MAX_STORED_SIDE, MAX_STORED_SIDE))
    return _png_bytes(img)


def _prepared_u8(prepared: PreparedDigit | np.ndarray) -> np.ndarray:
    """The prepared digit as 28x28 uint8."""
    pixels = prepared.pixels if isinstance(prepared, PreparedDigit) else prepared
    if pixels is None:
        raise DrawingError(getattr(prepared, "message", "") or "nothing drawn")
    arr = np.asarray(pixels)
    if arr.shape != (28, 28):
        raise DrawingError(f"a prepared digit is 28x28, got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr.copy()
    arr = np.nan_to_num(arr.astype(np.float32))
    return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)


def _decode_prepared(data: bytes, where: str) -> np.ndarray:
    try:
        img = Image.open(io.BytesIO(data), formats=["PNG"])
        if img.format != "PNG" or img.size != (28, 28) or img.mode != "L":
            raise DrawingError(f"{where} must be a 28x28 greyscale PNG, got {img.format} {img.size} {img.mode}")
        arr = np.asarray(img, dtype=np.uint8)
    except DrawingError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DrawingError(f"{where} is not a readable PNG ({exc})") from None
    return arr.copy()


def _read_prepared(path: Path) -> np.ndarray:
    return _decode_prepared(_read_regular(path, MAX_PREPARED_BYTES), str(path))


def _parse_meta(data: bytes, where: str) -> dict[str, Any]:
    """A drawing's meta.json, validated: format, label 0..9, created, optional predicted and source."""
    try:
        meta = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise DrawingError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DrawingError(f"{where} must hold a JSON object")
    if meta.get("format") != FORMAT_VERSION:
        raise DrawingError(f"{where} has format {meta.get('format')!r}; this version reads {FORMAT_VERSION}")
    try:
        label = check_label(meta.get("label"))
    except DrawingError as exc:
        raise DrawingError(f"{where}: {exc}") from None
    predicted = meta.get("predicted")
    if predicted is not None:
        try:
            predicted = check_label(predicted)
        except DrawingError:
            raise DrawingError(f"{where}: predicted must be a digit 0..9 or null, got {predicted!r}") from None
    created = meta.get("created")
    try:
        if not isinstance(created, str):
            raise TypeError(created)
        datetime.fromisoformat(created)
    except (TypeError, ValueError):
        raise DrawingError(f"{where}: created must be an ISO 8601 time, got {created!r}") from None
    source = meta.get("source", "")
    if not isinstance(source, str) or len(source) > 32:
        raise DrawingError(f"{where}: source must be a short string")
    return {"format": FORMAT_VERSION, "label": label, "predicted": predicted, "created": created, "source": source}


def _new_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class DrawingStore:
    """Add, list, relabel, delete, export and import the drawings of one collection."""

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        collection: str = DEFAULT_COLLECTION,
        max_drawings: int | None = None,
    ) -> None:
        """`max_drawings`: the person's quota on a server with sign-in (None: only the store's own cap)."""
        self.root = Path(root) if root is not None else default_drawings_dir()
        self.collection = check_collection(collection)
        self.path = self.root / self.collection
        self.max_drawings = max_drawings

    # ---------------------------------------------------------------- writing
    def _write_drawing(self, drawing_id: str, original: bytes, prepared: np.ndarray, meta: dict[str, Any]) -> None:
        """Write one drawing's three files into a temp folder, then rename it into place (all or nothing)."""
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{drawing_id}-", dir=self.path))
        try:
            (tmp / ORIGINAL).write_bytes(original)
            (tmp / PREPARED).write_bytes(_png_bytes(Image.fromarray(prepared, mode="L")))
            (tmp / META).write_text(json.dumps(meta))
            for name in (ORIGINAL, PREPARED, META):
                with open(tmp / name, "rb") as f:
                    os.fsync(f.fileno())
            os.chmod(tmp, 0o755)
            os.rename(tmp, self.path / drawing_id)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _check_room(self, adding: int) -> None:
        have = len(self._ids())
        if self.max_drawings is not None and have + adding > min(self.max_drawings, MAX_DRAWINGS):
            raise DrawingQuotaError(
                f"you keep {have} drawings and the most one person may keep on this server is {self.max_drawings}; "
                f"adding {adding} would pass that. Nothing was saved: delete some of yours (export them first "
                "to keep a copy) on My drawings"
            )
        if have + adding > MAX_DRAWINGS:
            raise DrawingError(
                f"a collection holds at most {MAX_DRAWINGS} drawings; it has {have}, adding {adding} would pass that"
            )

    def _pending(
        self,
        image: bytes | np.ndarray,
        label: int,
        prepared: PreparedDigit | np.ndarray | None,
        predicted: int | None,
        source: str,
    ) -> tuple[bytes, np.ndarray, dict[str, Any]]:
        """Validate and prepare one drawing in memory: (original PNG, prepared uint8, meta)."""
        label = check_label(label)
        if predicted is not None:
            predicted = check_label(predicted)
        if isinstance(image, bytes | bytearray) and len(image) > MAX_IMAGE_BYTES:
            raise DrawingError(f"the image is {len(image):,} bytes, more than the {MAX_IMAGE_BYTES:,} allowed")
        original = _original_png(bytes(image) if isinstance(image, bytearray) else image)
        if prepared is None:
            try:
                # Checked for size above; prepare_digit decodes the caller's own bytes, as Draw does.
                prepared = prepare_digit(image if isinstance(image, np.ndarray) else bytes(image))
            except ImageReadError as exc:
                raise DrawingError(str(exc)) from None
        pixels = _prepared_u8(prepared)
        if not pixels.any():
            raise DrawingError("nothing drawn: the prepared image is empty")
        meta = {
            "format": FORMAT_VERSION,
            "label": label,
            "predicted": predicted,
            "created": datetime.now(UTC).isoformat(timespec="microseconds"),
            "source": source[:32],
        }
        return original, pixels, meta

    def _unused_id(self) -> str:
        drawing_id = _new_id()
        while (self.path / drawing_id).exists():
            drawing_id = _new_id()
        return drawing_id

    def add(
        self,
        image: bytes | np.ndarray,
        label: int,
        *,
        prepared: PreparedDigit | np.ndarray | None = None,
        predicted: int | None = None,
        source: str = "cli",
    ) -> Drawing:
        """Store a drawing (PNG/JPEG bytes or a canvas array); prepared like Draw does unless given."""
        pending = self._pending(image, label, prepared, predicted, source)
        self._check_room(1)
        drawing_id = self._unused_id()
        self._write_drawing(drawing_id, *pending)
        return self.get(drawing_id)

    def add_many(self, images: Iterable[bytes | np.ndarray], label: int, source: str = "cli") -> list[Drawing]:
        """Store several pictures with one label: all are checked and prepared before any is written."""
        pending = [self._pending(image, label, None, None, source) for image in images]
        self._check_room(len(pending))
        ids = []
        for item in pending:
            ids.append(self._unused_id())
            self._write_drawing(ids[-1], *item)
        return [self.get(i) for i in ids]

    def relabel(self, drawing_id: str, label: int) -> Drawing:
        """Change a drawing's label (meta.json rewritten atomically)."""
        label = check_label(label)
        d = self.get(drawing_id)
        meta = _parse_meta(_read_regular(d.path / META, MAX_META_BYTES), str(d.path / META))
        meta["label"] = label
        atomic_write_json(d.path / META, meta)
        return self.get(drawing_id)

    def delete(self, drawing_id: str) -> None:
        """Delete a drawing; renamed away first, so a half-deleted drawing is never listed."""
        d = self.get(drawing_id)
        trash = self.path / f".del-{d.drawing_id}-{int(time.time() * 1000)}"
        os.rename(d.path, trash)
        shutil.rmtree(trash, ignore_errors=True)

    # ---------------------------------------------------------------- reading
    def _ids(self) -> list[str]:
        if not self.path.is_dir():
            return []
        ids = []
        for p in self.path.iterdir():
            # Only real folders with our id pattern: temp folders, stray files and links are not drawings.
            if _ID_RE.fullmatch(p.name) and not p.is_symlink() and p.is_dir():
                ids.append(p.name)
        return sorted(ids)

    def get(self, drawing_id: str) -> Drawing:
        """One drawing by id, validated."""
        if not isinstance(drawing_id, str) or not _ID_RE.fullmatch(drawing_id):
            raise DrawingError(f"{drawing_id!r} is not a drawing id")
        path = self.path / drawing_id
        if path.is_symlink() or not path.is_dir():
            raise DrawingError(f"no drawing {drawing_id!r} in {self.path}")
        meta = _parse_meta(_read_regular(path / META, MAX_META_BYTES), str(path / META))
        return Drawing(
            drawing_id=drawing_id,
            path=path,
            label=meta["label"],
            created=meta["created"],
            predicted=meta["predicted"],
            source=meta["source"],
        )

    def _signature(self) -> tuple[tuple[str, int], ...]:
        """Each drawing folder's name and modification time: any add, delete or relabel changes it."""
        try:
            entries = list(os.scandir(self.path))
        except OSError:  # no collection yet, or not a folder
            return ()
        sig = []
        for e in entries:
            if _ID_RE.fullmatch(e.name) and e.is_dir(follow_symlinks=False):
                try:
                    sig.append((e.name, e.stat(follow_symlinks=False).st_mtime_ns))
                except OSError:
                    continue  # deleted meanwhile
        return tuple(sorted(sig))

    def list(self) -> list[Drawing]:
        """Valid drawings, oldest first; damaged ones are skipped.

        Draw shows the counts per digit after every stroke: the parsed list is reused for as long as no
        drawing folder changed (a relabel rewrites meta.json inside its folder, which changes the folder's
        time), so a stroke costs one directory scan instead of reading every drawing's meta.json.
        """
        sig = self._signature()
        cached = _LISTS.get(self.path)
        if cached is not None and cached[0] == sig:
            return list(cached[1])
        out = []
        for drawing_id, _ in sig:
            try:
                out.append(self.get(drawing_id))
            except DrawingError:
                continue
        out.sort(key=lambda d: (d.created, d.drawing_id))
        if len(_LISTS) >= MAX_CACHED_LISTS:
            _LISTS.clear()
        _LISTS[self.path] = (sig, tuple(out))
        return out

    def arrays(
        self, drawings: Iterable[Drawing] | None = None
    ) -> tuple[np.ndarray, np.ndarray, builtins.list[Drawing]]:
        """(uint8 images (N,28,28), int64 labels (N,), the drawings) of readable drawings, oldest first."""
        images, labels, kept = [], [], []
        for d in self.list() if drawings is None else drawings:
            try:
                images.append(d.pixels())
            except DrawingError:
                continue
            labels.append(d.label)
            kept.append(d)
        x = np.stack(images) if images else np.zeros((0, 28, 28), np.uint8)
        return x, np.asarray(labels, dtype=np.int64), kept

    def counts(self) -> np.ndarray:
        """Number of drawings of each digit 0..9."""
        return np.bincount([d.label for d in self.list()], minlength=10).astype(np.int64)

    # ---------------------------------------------------------------- zip
    def export_zip(self, out: str | os.PathLike | None = None) -> bytes | int:
        """Write every drawing to a zip (drawings/<id>/{original.png,prepared.png,meta.json}).

        With a path it is written atomically and the number of drawings is returned; with None the
        zip's bytes are returned (for a download button).
        """
        buf = io.BytesIO()
        drawings = self.list()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for d in drawings:
                for name in (ORIGINAL, PREPARED, META):
                    limit = {ORIGINAL: MAX_IMAGE_BYTES, PREPARED: MAX_PREPARED_BYTES, META: MAX_META_BYTES}[name]
                    zf.writestr(f"{ZIP_FOLDER}/{d.drawing_id}/{name}", _read_regular(d.path / name, limit))
        data = buf.getvalue()
        if out is None:
            return data
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data)
        return len(drawings)

    def import_zip(self, source: str | os.PathLike | bytes) -> ImportReport:
        """Add the drawings of an exported zip; any bad member refuses the whole zip and nothing is written."""
        data = _read_regular(Path(source), MAX_ZIP_BYTES) if not isinstance(source, bytes | bytearray) else source
        if len(data) > MAX_ZIP_BYTES:
            raise DrawingError(f"the zip is {len(data):,} bytes, more than the {MAX_ZIP_BYTES:,} allowed")
        parsed = _read_zip(bytes(data))
        existing = set(self._ids())
        new = {i: v for i, v in parsed.items() if i not in existing}
        self._check_room(len(new))
        for drawing_id, (original, prepared, meta) in sorted(new.items()):
            self._write_drawing(drawing_id, original, prepared, meta)
        return ImportReport(added=len(new), skipped=len(parsed) - len(new))


def _read_zip(data: bytes) -> dict[str, tuple[bytes, np.ndarray, dict[str, Any]]]:
    """Validate a whole zip and read its drawings into memory: {id: (original png, 28x28 uint8, meta)}."""
    if not zipfile.is_zipfile(io.BytesIO(data)):
        raise DrawingError("not a zip file: export your drawings from MNIST Lab and import that zip")
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DrawingError(f"not a readable zip file ({exc})") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise DrawingError(f"the zip holds {len(infos):,} entries, more than the {MAX_ZIP_MEMBERS:,} allowed")
        files: dict[str, dict[str, zipfile.ZipInfo]] = {}
        for info in infos:
            name = info.filename
            # Names are matched whole against what an export writes: no '..', no absolute paths, no
            # backslashes, no stray files. (Nothing is ever extracted by its own name anyway.)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise DrawingError(f"the zip entry {name!r} is a symbolic link; links are not accepted")
            if name.endswith("/") and _FOLDER_RE.fullmatch(name):
                continue
            m = _MEMBER_RE.fullmatch(name)
            if m is None:
                raise DrawingError(
                    f"the zip entry {name!r} is not part of a drawings export "
                    f"(expected {ZIP_FOLDER}/<id>/{ORIGINAL}, {PREPARED} or {META})"
                )
            if info.flag_bits & 0x1:
                raise DrawingError(f"the zip entry {name!r} is encrypted")
            if m.group(2) in files.setdefault(m.group(1), {}):
                raise DrawingError(f"the zip holds {name!r} twice")
            files[m.group(1)][m.group(2)] = info
        if len(files) > MAX_DRAWINGS:
            raise DrawingError(f"the zip holds {len(files):,} drawings, more than the {MAX_DRAWINGS:,} allowed")
        if not files:
            raise DrawingError("the zip holds no drawings")
        budget = MAX_ZIP_UNCOMPRESSED
        out: dict[str, tuple[bytes, np.ndarray, dict[str, Any]]] = {}
        for drawing_id, members in sorted(files.items()):
            for required in (ORIGINAL, META):
                if required not in members:
                    raise DrawingError(f"drawing {drawing_id} in the zip has no {required}")
            raw: dict[str, bytes] = {}
            for name, info in members.items():
                limit = {ORIGINAL: MAX_IMAGE_BYTES, PREPARED: MAX_PREPARED_BYTES, META: MAX_META_BYTES}[name]
                limit = min(limit, budget)
                # Read at most limit + 1 bytes whatever the header claims: a bomb's header can lie.
                try:
                    with zf.open(info) as f:
                        content = f.read(limit + 1)
                except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
                    raise DrawingError(f"the zip entry {info.filename!r} cannot be read ({exc})") from None
                if len(content) > limit:
                    raise DrawingError(
                        f"the zip entry {info.filename!r} decompresses to more than {limit:,} bytes "
                        f"(entries are capped, and all together at {MAX_ZIP_UNCOMPRESSED:,} bytes): refused"
                    )
                budget -= len(content)
                raw[name] = content
            where = f"{drawing_id}/{META} in the zip"
            meta = _parse_meta(raw[META][:MAX_META_BYTES], where)
            img = _open_image(raw[ORIGINAL])
            if img.format != "PNG":
                raise DrawingError(f"{drawing_id}/{ORIGINAL} in the zip is not a PNG")
            if PREPARED in raw:
                prepared = _decode_prepared(raw[PREPARED], f"{drawing_id}/{PREPARED} in the zip")
            else:
                try:
                    prepared = _prepared_u8(prepare_digit(raw[ORIGINAL]))
                except (ImageReadError, DrawingError) as exc:
                    raise DrawingError(f"{drawing_id}/{ORIGINAL} in the zip: {exc}") from None
            if not prepared.any():
                raise DrawingError(f"{drawing_id} in the zip is an empty drawing")
            out[drawing_id] = (raw[ORIGINAL], prepared, meta)
    return out


# Drawings make up about this share of the training images when mixed into MNIST: a few dozen drawings
# next to 60 000 MNIST images would otherwise be ~0.05 % of every epoch and change nothing. On
# bench/finetune_drawings.py 10 % lifted held-out handwriting more than 5 % (+7.7 against +6.3 points)
# with MNIST test unchanged either way.
DRAWINGS_SHARE = 0.1
MAX_REPEATS = 200  # a handful of drawings is not copied more often than this


def drawings_checksum(images: np.ndarray, labels: np.ndarray) -> str:
    """md5 of the drawings' prepared pixels and labels (recorded with a run trained on them)."""
    import hashlib

    h = hashlib.md5()
    h.update(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
    h.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return h.hexdigest()


def mix_drawings(
    data: MnistData, images: np.ndarray, labels: np.ndarray, share: float = DRAWINGS_SHARE
) -> tuple[MnistData, dict[str, Any]]:
    """MNIST with the drawings put before its training split, each repeated so they make ~`share` of it.

    First, not last: the last training images are the validation split training holds out to calibrate
    (mnistcore.calibration), which stays MNIST's own. The test split is MNIST's, unchanged. Returns the new
    data and what was mixed in (for meta.json).
    """
    import torch

    images = np.asarray(images)
    labels = np.asarray(labels)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DrawingError(f"drawings must be uint8 (N, 28, 28), got {images.dtype} {images.shape}")
    if len(images) != len(labels) or not len(images):
        raise DrawingError(f"need at least one drawing with one label each, got {len(images)} and {len(labels)}")
    for label in labels.tolist():
        check_label(label)
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), got {share}")
    n = len(data.train_labels)
    repeats = int(min(MAX_REPEATS, max(1, round(share * n / ((1 - share) * len(images))))))
    x = torch.from_numpy(np.repeat(images, repeats, axis=0))
    y = torch.from_numpy(np.repeat(labels.astype(np.int64), repeats))
    mixed = MnistData(
        train_images=torch.cat([x, data.train_images]),
        train_labels=torch.cat([y, data.train_labels]),
        test_images=data.test_images,
        test_labels=data.test_labels,
        checksums={**data.checksums, "drawings": drawings_checksum(images, labels)},
    )
    info = {
        "count": len(images),
        "repeats": repeats,
        "share": round(len(x) / (n + len(x)), 4),
        "checksum": drawings_checksum(images, labels),
    }
    return mixed, info


def evaluate_drawings(model: Any, store: DrawingStore) -> tuple[Any, list[Drawing]]:
    """The model's Evaluation (mnistcore.evaluate) on the store's drawings, and the drawings in that order."""
    import torch

    from mnistcore.evaluate import evaluate

    images, labels, drawings = store.arrays()
    if not drawings:
        raise DrawingError(
            f"there are no drawings in {store.path}; add some first "
            f"(python -m mnistcore drawings add --label N IMAGE...)"
        )
    return evaluate(model, torch.from_numpy(images), torch.from_numpy(labels), drawn=True), drawings


@dataclass(frozen=True)
class FineTuneResult:
    """A fine-tuned run and how it compares with the run it continued, on the drawings and on MNIST test."""

    run: Any  # RunInfo of the new run (its parent is the run fine-tuned)
    parent: Any  # RunInfo of the run fine-tuned
    count: int  # drawings used
    drawings_before: float  # accuracy on the drawings
    drawings_after: float
    mnist_before: float  # MNIST test accuracy
    mnist_after: float
    unsaved: str | None = None  # why the run is in a temp dir instead of the runs dir (None: saved there)


def fine_tune_on_drawings(
    runs: Any,
    run_id: str,
    data: MnistData,
    drawings: DrawingStore,
    epochs: int = 1,
    on_event: Any = None,
    stop: Any = None,
    report_every: int = 10,
    source: str | None = None,
) -> FineTuneResult | None:
    """Continue a saved run for `epochs` epochs on MNIST with the drawings mixed in; save it as a new run.

    The same as `train --resume RUN --epochs N --with-drawings`. None when stopped (nothing is saved).
    """
    from mnistcore.train import train

    images, labels, kept = drawings.arrays()
    if not kept:
        raise DrawingError("there are no drawings to fine-tune on")
    init, parent = runs.load_state(run_id)
    before = evaluate_drawings(init.model, drawings)[0].accuracy
    config = parent.config.with_(epochs=epochs, report_every=report_every)
    runs.check_writable(config)  # fail before training, not after
    mixed, info = mix_drawings(data, images, labels)
    result = train(config, mixed, on_event=on_event, stop=stop, init=init)
    if result.stopped:
        return None
    from mnistcore.runs import save_result

    saved, unsaved = save_result(
        runs,
        result,
        dataset=mixed.checksums,
        source=source,
        parent=parent.run_id,
        name=f"fine-tuned on {len(kept)} drawings",
        extra={"drawings": {**info, "collection": drawings.collection}},
    )
    after = evaluate_drawings(result.model, drawings)[0].accuracy
    return FineTuneResult(
        run=saved,
        parent=parent,
        count=len(kept),
        drawings_before=before,
        drawings_after=after,
        mnist_before=parent.test_accuracy,
        mnist_after=result.test_accuracy,
        unsaved=unsaved,
    )
