"""Read a person's labelled images: a folder or a ZIP with one subfolder per class (`cat/001.jpg`), or a
`filename,label` CSV beside the images, or files whose names carry the label (`cat_01.jpg`).

Archives are checked whole from their central directory before any member is read: more entries than the limit,
entries that overlap or repeat (one member counted many times: a zip bomb), more images or more declared bytes
than the limits refuse the archive as a whole (`DatasetError`). Members are never extracted, and each is read
only when it is decoded (`LabelledImage.load`), with a hard cap while it decompresses, so the archive and one
member are all that is held at a time. A member whose name escapes the archive (`..`, an absolute path), a link,
an encrypted member, a nested archive, a file that is not an image by its name, one larger than the limit or
compressed suspiciously well becomes that file's problem, listed in the report. Every name and problem is cut
to a bounded length before it is kept: they end up in signed reports and PDFs.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
import stat
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from models.cifar10 import CLASS_NAMES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
SYNONYMS = {
    "plane": "airplane", "aeroplane": "airplane", "aircraft": "airplane", "jet": "airplane",
    "car": "automobile", "auto": "automobile", "vehicle": "automobile",
    "kitten": "cat", "kitty": "cat", "puppy": "dog", "toad": "frog", "pony": "horse",
    "boat": "ship", "lorry": "truck",
}
IGNORED = ("__MACOSX/", ".DS_Store", "Thumbs.db", "desktop.ini")
MAX_NAME_CHARS = 200  # a file's name as kept, shown and signed
MAX_PROBLEM_CHARS = 200  # a file's problem, likewise
MAX_CSV_BYTES = 5_000_000
RATIO_CHECKED_ABOVE = 64 * 1024  # smaller members cannot amplify much, whatever their ratio
# Stored and deflated members are read with a hard cap while they decompress; Python's zipfile inflates bzip2 and
# LZMA members in one call, whatever is asked for (1.5 kB of bzip2 became 2 GB), so they are not read at all.
READABLE_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflated"}
DIRECTORY_BYTES_PER_ENTRY = 1024  # a central-directory entry: 46 bytes, its name (cut to 200 here), extras


class DatasetError(ValueError):
    """The input as a whole cannot be evaluated (unknown class folders, too many images, not a ZIP...)."""


@dataclass(frozen=True)
class Limits:
    """None means no limit (the command line); the web app and the API set them all."""

    max_images: int | None = None
    max_file_bytes: int | None = None
    max_total_bytes: int | None = None  # all members uncompressed, as declared
    max_ratio: float | None = None  # uncompressed / compressed, per member
    max_members: int | None = None  # entries in an archive's central directory, all kinds
    max_pixels: int | None = None  # decoded pixels, all images of one evaluation together
    max_seconds: float | None = None  # one evaluation's time: decoding, classifying, maps; the rest become problems


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


@dataclass
class LabelledImage:
    name: str  # the path inside the folder or archive, for display only
    label: int | None = None
    data: bytes | None = None  # the file's bytes, or None until `load` reads them through `reader`
    problem: str | None = None
    reader: Callable[[], bytes] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.name = clip(self.name, MAX_NAME_CHARS)

    def fail(self, problem: str) -> None:
        self.problem, self.label, self.data, self.reader = clip(problem, MAX_PROBLEM_CHARS), None, None, None

    @property
    def usable(self) -> bool:
        """Labelled and not (yet) found wrong: its bytes are here or can be read."""
        return self.problem is None and self.label is not None and (self.data is not None or self.reader is not None)

    def load(self) -> bytes | None:
        """The bytes (read now, once, if they come from an archive or a folder), or None with `problem` set."""
        if self.data is None and self.reader is not None and self.problem is None:
            try:
                self.data = self.reader()
            except MemberProblem as exc:
                self.fail(str(exc))
            self.reader = None
        return self.data if self.problem is None else None


class MemberProblem(ValueError):
    """What is wrong with one file, found when it is read."""


@dataclass
class LabelledSet:
    items: list[LabelledImage] = field(default_factory=list)
    layout: str = ""
    limits: Limits = field(default_factory=Limits)

    @property
    def problems(self) -> list[LabelledImage]:
        return [item for item in self.items if item.problem]


def class_for(name: str) -> int | None:
    """The CIFAR-10 class a folder or label names, case-insensitively, allowing plurals and a few synonyms."""
    word = name.strip().lower().replace(" ", "").replace("-", "").replace("_", "")
    for candidate in (word, word[:-1] if word.endswith("s") else word, word[:-2] if word.endswith("es") else word):
        candidate = SYNONYMS.get(candidate, candidate)
        if candidate in CLASS_NAMES:
            return CLASS_NAMES.index(candidate)
    return None


def valid_names() -> str:
    return ", ".join(CLASS_NAMES) + " (also: " + ", ".join(f"{k} → {v}" for k, v in SYNONYMS.items()) + ")"


def label_from_filename(filename: str) -> int | None:
    """`cat_01.jpg`, `Dog-3.png`, `airplane 2.jpg` -> the class named before the first separator or digit."""
    match = re.match(r"[A-Za-z]+", PurePosixPath(filename.replace("\\", "/")).name)
    return class_for(match.group(0)) if match else None


def _assign_labels(paths: list[str], read_csv: callable) -> tuple[dict[str, int | None], str]:
    """path -> class index (None: unlabelled), and the layout's name. A labels CSV wins; otherwise the first
    folder below a common top folder names the class."""
    csvs = [p for p in paths if p.lower().endswith(".csv")]
    if csvs:
        chosen = min(csvs, key=lambda p: (p.count("/"), p.lower() != "labels.csv"))
        base = str(PurePosixPath(chosen).parent)
        try:  # splitlines: CR-only (old Mac) and mixed line endings too
            rows = list(csv.reader(read_csv(chosen).splitlines()))
        except csv.Error as exc:
            raise DatasetError(f"{clip(chosen, 100)}: the labels CSV cannot be read ({clip(str(exc), 80)})") from None
        if rows and [c.strip().lower() for c in rows[0][:2]] == ["filename", "label"]:
            rows = rows[1:]
        labels: dict[str, int | None] = {}
        unknown = sorted({clip(row[1].strip(), 40) for row in rows if len(row) >= 2 and class_for(row[1]) is None})
        if unknown:
            raise DatasetError(f"{clip(chosen, 100)}: unknown labels {', '.join(unknown[:10])}; use the CIFAR-10 "
                               f"classes: {valid_names()}")
        for row in rows:
            if len(row) >= 2:
                path = str(PurePosixPath(base) / row[0].strip()) if base != "." else row[0].strip()
                labels[path] = class_for(row[1])
        return labels, f"CSV ({chosen})"
    images = [p for p in paths if p.lower().endswith(IMAGE_SUFFIXES)]
    parts = [PurePosixPath(p).parts for p in images]
    depth = 0
    # A folder that wraps everything (mypets/cat/1.jpg) and is not itself a class is skipped.
    while parts and all(len(q) > depth + 2 for q in parts) and len({q[depth] for q in parts}) == 1 \
            and class_for(parts[0][depth]) is None:
        depth += 1
    folders = {q[depth] for q in parts if len(q) > depth + 1}
    unknown = sorted(clip(f, 40) for f in folders if class_for(f) is None)
    if unknown or not folders:
        found = ", ".join(unknown[:10]) if unknown else "no class folders"
        raise DatasetError(f"expected one folder per class (cat/001.jpg) or a labels CSV (filename,label); found "
                           f"{found}. Valid class names: {valid_names()}")
    return {p: (class_for(q[depth]) if len(q) > depth + 1 else None) for p, q in zip(images, parts, strict=True)}, \
        "one folder per class"


def _checked_name(name: str) -> str | None:
    """The member name if it stays inside the archive, else None."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean) or ".." in PurePosixPath(clean).parts:
        return None
    return clean


def read_zip(archive: bytes | Path, limits: Limits = Limits()) -> LabelledSet:
    """The archive checked whole; its members are read one at a time, when `LabelledImage.load` asks."""
    source = io.BytesIO(archive) if isinstance(archive, bytes) else open(archive, "rb")  # noqa: SIM115
    try:
        _check_entry_count(source, limits)
        zf = zipfile.ZipFile(source)  # kept open by the members' readers until the set is dropped
    except DatasetError:
        raise
    except (zipfile.BadZipFile, zlib.error, NotImplementedError, UnicodeDecodeError, ValueError, EOFError, OSError,
            IndexError, KeyError, struct.error):  # what zipfile raises on a damaged directory (tests/test_fuzz.py)
        raise DatasetError("the file is not a ZIP archive (or it is damaged)") from None
    return _read_members(zf, limits)


END_RECORD = struct.Struct("<4s4H2LH")  # signature, disks, entries here and in all, directory size and offset, comment
ZIP64_LOCATOR = struct.Struct("<4sLQL")  # signature, disk, offset of the ZIP64 end record, disks
ZIP64_END = struct.Struct("<4sQ2H2L4Q")  # signature, its size, versions, disks, entries here and in all, size, offset
MAX_COMMENT = 0xFFFF


def directory_extent(tail: bytes) -> tuple[int, int] | None:
    """(entries, bytes) of the central directory an archive's end record declares, from the archive's last
    22 + 65,535 bytes (or all of a shorter one), found as zipfile finds it: the record without a comment at the
    very end, else the last signature (ZIP64's record where the classic one says to look there); None if there
    is none. Hand-written because the standard library's parser of it is private (zipfile._EndRecData): it reads
    only fixed fields and is fuzzed (tests/test_fuzz.py)."""
    start = len(tail) - END_RECORD.size
    if start < 0 or tail[start:start + 4] != b"PK\x05\x06" or tail[-2:] != b"\0\0":
        start = tail.rfind(b"PK\x05\x06")
        if start < 0 or len(tail) - start < END_RECORD.size:
            return None
    *_, entries, size, _, _ = END_RECORD.unpack_from(tail, start)
    locator = start - ZIP64_LOCATOR.size
    if locator >= 0 and tail[locator:locator + 4] == b"PK\x06\x07":
        end64 = locator - ZIP64_END.size  # the ZIP64 end record sits just before its locator
        if end64 >= 0 and tail[end64:end64 + 4] == b"PK\x06\x06":
            *_, entries, size, _ = ZIP64_END.unpack_from(tail, end64)
    return entries, size


def _check_entry_count(source: io.BufferedIOBase, limits: Limits) -> None:
    """Refuse an archive with too many entries from its end record, before zipfile builds an object per entry
    (a 50 MB ZIP can list a million)."""
    if limits.max_members is None:
        return
    length = source.seek(0, io.SEEK_END)
    source.seek(max(0, length - END_RECORD.size - MAX_COMMENT))
    extent = directory_extent(source.read())
    if extent is None:
        raise zipfile.BadZipFile
    entries, size = extent
    if entries > limits.max_members:
        raise DatasetError(f"the archive lists {entries:,} entries; the limit is {limits.max_members:,}")
    # zipfile parses the directory by its size, whatever the count says: bound the size too.
    if size > limits.max_members * DIRECTORY_BYTES_PER_ENTRY:
        raise DatasetError(f"the archive's directory is {size / 1e6:.1f} MB: far more than "
                           f"{limits.max_members:,} entries need")
    source.seek(0)


def _check_layout(infos: list[zipfile.ZipInfo]) -> None:
    """Each entry must own its own bytes: two entries naming the same member, or overlapping, let a small
    archive unpack the same data many times over."""
    names = set()
    for info in infos:
        if not info.filename:
            raise DatasetError("the archive has an entry without a name (it is damaged)")
        if info.filename in names:
            raise DatasetError(f"the archive lists {clip(info.filename, 80)} twice (a zip bomb?)")
        names.add(info.filename)
    spans = sorted((i.header_offset, i.header_offset + 30 + len(_raw_name(i)) + i.compress_size) for i in infos)
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        if next_start < end:
            raise DatasetError("the archive's entries overlap (a zip bomb?)")


def _raw_name(info: zipfile.ZipInfo) -> bytes:
    """The name as the archive stores it (UTF-8 when flagged, else code page 437): its length in the header."""
    return info.orig_filename.encode("utf-8" if info.flag_bits & 0x800 else "cp437", "replace")


def _member_reader(zf: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int | None) -> Callable[[], bytes]:
    def read() -> bytes:
        try:
            with zf.open(info) as member:  # the declared size may lie: read at most one byte past the cap
                data = member.read(cap + 1) if cap is not None else member.read()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
            raise MemberProblem(f"it is damaged or compressed in a way this reader does not know "
                                f"({type(exc).__name__})") from None
        if cap is not None and len(data) > cap:
            raise MemberProblem(f"larger than {cap / 1e6:.0f} MB uncompressed")
        if data[:4] == b"PK\x03\x04":
            raise MemberProblem("nested archives are not opened")
        return data

    return read


def _read_members(zf: zipfile.ZipFile, limits: Limits) -> LabelledSet:
    _check_layout(zf.infolist())
    infos = [i for i in zf.infolist() if not i.is_dir() and not any(x in i.filename for x in IGNORED)
             and not PurePosixPath(i.filename).name.startswith(".")]
    if not infos:
        raise DatasetError("the archive holds no files")
    declared = sum(i.file_size for i in infos)
    if limits.max_total_bytes is not None and declared > limits.max_total_bytes:
        raise DatasetError(f"the archive unpacks to {declared / 1e6:.0f} MB; the limit is "
                           f"{limits.max_total_bytes / 1e6:.0f} MB")
    files = sum(1 for i in infos if not i.filename.lower().endswith(".csv"))
    if limits.max_images is not None and files > limits.max_images:
        raise DatasetError(f"{files} files; the limit is {limits.max_images} images per evaluation")
    names = {i.filename: _checked_name(i.filename) for i in infos}

    def read_text(name: str) -> str:
        info = next(i for i in infos if names[i.filename] == name)
        if info.compress_type not in READABLE_METHODS:
            raise DatasetError(f"{clip(name, 80)}: the labels CSV is compressed with a method this reader does not "
                               f"take; use deflate (what every ZIP tool writes by default)")
        try:
            with zf.open(info) as member:
                data = member.read(MAX_CSV_BYTES + 1)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError):
            raise DatasetError(f"{clip(name, 80)}: the labels CSV is damaged") from None
        if len(data) > MAX_CSV_BYTES:
            raise DatasetError(f"{clip(name, 80)}: the labels CSV is larger than {MAX_CSV_BYTES / 1e6:.0f} MB")
        return data.decode("utf-8-sig", errors="replace")

    labels, layout = _assign_labels([n for n in names.values() if n], read_text)
    result = LabelledSet(layout=f"ZIP, {layout}", limits=limits)
    for info in infos:
        name = names[info.filename]
        item = LabelledImage(name=name or info.filename)
        if name is not None and name.lower().endswith(".csv"):
            continue
        mode = info.external_attr >> 16
        if name is None:
            item.fail("its name points outside the archive (absolute path or '..')")
        elif stat.S_ISLNK(mode):
            item.fail("it is a symbolic link")
        elif info.flag_bits & 0x1:
            item.fail("it is encrypted")
        elif info.compress_type not in READABLE_METHODS:
            item.fail("it is compressed with a method this reader does not take (bzip2, LZMA...); use deflate")
        elif name.lower().endswith((".zip", ".tar", ".gz", ".7z", ".rar")):
            item.fail("nested archives are not opened")
        elif not name.lower().endswith(IMAGE_SUFFIXES):
            item.fail("not an image file (" + clip(PurePosixPath(name).suffix or "no extension", 20) + ")")
        elif labels.get(name) is None:
            item.fail("no label: it is not in a class folder or in the labels CSV")
        elif limits.max_ratio is not None and info.file_size > RATIO_CHECKED_ABOVE and \
                info.file_size > limits.max_ratio * max(info.compress_size, 1):
            item.fail(f"compressed more than {limits.max_ratio:.0f}:1 (a zip bomb?)")
        elif limits.max_file_bytes is not None and info.file_size > limits.max_file_bytes:
            item.fail(f"larger than {limits.max_file_bytes / 1e6:.0f} MB uncompressed")
        else:
            item.label, item.reader = labels[name], _member_reader(zf, info, limits.max_file_bytes)
        result.items.append(item)
    _check_count(result, limits)
    return result


def read_folder(folder: Path, limits: Limits = Limits()) -> LabelledSet:
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
                   and not any(part.startswith(".") or part == "__MACOSX" for part in p.relative_to(folder).parts))
    paths = [p.relative_to(folder).as_posix() for p in files]
    labels, layout = _assign_labels(paths, lambda name: (folder / name).read_text(encoding="utf-8-sig"))
    result = LabelledSet(layout=f"folder, {layout}", limits=limits)
    for path, rel in zip(files, paths, strict=True):
        if rel.lower().endswith(".csv"):
            continue
        item = LabelledImage(name=rel)
        if not rel.lower().endswith(IMAGE_SUFFIXES):
            item.fail("not an image file (" + clip(path.suffix or "no extension", 20) + ")")
        elif labels.get(rel) is None:
            item.fail("no label: it is not in a class folder or in the labels CSV")
        else:
            item.label, item.reader = labels[rel], path.read_bytes
        result.items.append(item)
    _check_count(result, limits)
    return result


def read_named_files(files: list[tuple[str, bytes]], chosen: list[str] | None = None,
                     limits: Limits = Limits()) -> LabelledSet:
    """Uploaded images labelled by a chosen class per file (`chosen`, same order; blank: use the name) or by their
    name (`cat_01.jpg`)."""
    result = LabelledSet(layout="files labelled by name or by choice", limits=limits)
    chosen = list(chosen or [])
    if len(chosen) > len(files):
        raise DatasetError(f"{len(chosen)} classes were chosen for {plural(len(files), 'file')}")
    unknown = sorted({clip(pick.strip(), 40) for pick in chosen if pick.strip() and class_for(pick) is None})
    if unknown:
        raise DatasetError(f"not one of the 10 classes: {', '.join(unknown[:5])} (the classes: "
                           f"{', '.join(CLASS_NAMES)})")
    for i, (filename, data) in enumerate(files):
        item = LabelledImage(name=filename)
        pick = chosen[i].strip() if i < len(chosen) else ""
        label = class_for(pick) if pick else label_from_filename(filename)
        if label is None:
            item.fail("no label: choose one, or name the file after its class (cat_01.jpg)")
        elif limits.max_file_bytes is not None and len(data) > limits.max_file_bytes:
            item.fail(f"larger than {limits.max_file_bytes / 1e6:.0f} MB")
        else:
            item.label, item.data = label, data
        result.items.append(item)
    _check_count(result, limits)
    return result


def plural(count: int, noun: str) -> str:
    """"1 file", "2 files"."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def _check_count(result: LabelledSet, limits: Limits) -> None:
    images = sum(1 for item in result.items if item.usable)
    if limits.max_images is not None and len(result.items) > limits.max_images:
        raise DatasetError(f"{len(result.items)} files; the limit is {limits.max_images} images per evaluation")
    if not images:
        detail = "; ".join(f"{item.name}: {item.problem}" for item in result.problems[:5])
        if any((item.problem or "").startswith("no label") for item in result.problems):
            detail += f". The class names: {', '.join(CLASS_NAMES)}"  # once, not once per file
        raise DatasetError("no usable labelled image" + (f" ({detail})" if detail else ""))


def read_path(path: Path, limits: Limits = Limits()) -> LabelledSet:
    """A folder or a .zip file on disk (the command line)."""
    path = Path(path)
    if path.is_dir():
        return read_folder(path, limits)
    if path.is_file():
        return read_zip(path, limits)
    raise DatasetError(f"{path} is neither a folder nor a ZIP file")

