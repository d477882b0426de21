"""Inspect an uploaded model artifact without loading or running it.

Holdout accepts ONNX and skops files only. Everything here reads bytes and metadata: nothing
the uploader wrote is executed, imported or deserialised into live objects.
"""

import bz2
import hashlib
import io
import json
import lzma
import pickletools
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import PurePath
from typing import NoReturn

import onnx
import skops.io
from google.protobuf.message import DecodeError
from onnx.external_data_helper import uses_external_data

from .protobuf_scan import Malformed, TooComplex, message_count

ACCEPTED_EXTENSIONS = {".onnx": "onnx", ".skops": "skops"}
PICKLE_EXTENSIONS = frozenset({".pkl", ".pickle", ".joblib", ".sav"})
STANDARD_ONNX_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})

# skops stores arrays uncompressed by default, so an honest file unpacks to about its own size,
# and even a deflated one to a few times it. skops reads every member into memory while auditing,
# so the unpacked size is bounded before it does: at most MAX_UNPACKED_RATIO times the upload
# (far above any honest compression, far below a zip bomb's thousands) and never more than
# MAX_UNPACKED_BYTES, whatever the upload.
MAX_UNPACKED_RATIO = 200
MAX_UNPACKED_BYTES = 1 << 30
# schema.json is the one member read whole and parsed (skops audits it; the arrays it names are not
# loaded), and JSON parses into up to ~20 times its text in objects. An honest schema takes about
# 21 kB per tree of a forest, a quarter of a skops file: 10.6 MB for 500 deep trees in a 44 MB file,
# so this admits every honest model within the default 100 MB upload limit.
MAX_SCHEMA_BYTES = 32_000_000
# Members are decompressed this much at a time while they are measured, so measuring a member
# costs this much memory however large it unpacks.
_UNPACK_CHUNK = 1 << 20

_EXPORT_ADVICE = (
    'Export the model instead with skops: skops.io.dump(model, "model.skops"), or to ONNX '
    "with skl2onnx: onx = to_onnx(model, X[:1]); "
    'open("model.onnx", "wb").write(onx.SerializeToString()).'
)
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# Protocols 0 and 1 have no header; these opcodes are how such pickles usually begin.
_OLD_PICKLE_OPENERS = frozenset(b"(]}c)")
# joblib compresses its pickles with one of these; the tuples are (magic, name, decompressor).
_COMPRESSIONS = (
    (b"\x1f\x8b", "gzip", lambda: zlib.decompressobj(wbits=31)),
    (b"\x78\x01", "zlib", zlib.decompressobj),
    (b"\x78\x5e", "zlib", zlib.decompressobj),
    (b"\x78\x9c", "zlib", zlib.decompressobj),
    (b"\x78\xda", "zlib", zlib.decompressobj),
    (b"BZh", "bz2", bz2.BZ2Decompressor),
    (b"\xfd7zXZ\x00", "xz", lzma.LZMADecompressor),
    (b"\x5d\x00\x00", "lzma", lzma.LZMADecompressor),
)
_SNIFF_BYTES = 256
# Parsing an ONNX file builds an object per protobuf message, about 150 bytes each however few bytes
# the message took in the file (an empty node takes two), and onnx.checker builds them again: so the
# messages are counted before anything parses them. At the cap, parsing and checking add about 175 MB.
# The largest honest graphs (a transformer's tens of thousands of nodes and their attributes, a
# forest of a million tree nodes, whose numbers are fields, not messages) stay far below this.
MAX_ONNX_MESSAGES = 500_000
# And the fields the count steps over one at a time (names, lone numbers), which bound its time.
MAX_ONNX_FIELDS = 2_000_000


class ArtifactRejected(ValueError):
    """The artifact cannot be accepted; the message is shown to the user verbatim."""


@dataclass(frozen=True)
class ArtifactInfo:
    format: str  # "onnx" | "skops"
    sha256: str
    size_bytes: int


def inspect_artifact(
    data: bytes,
    *,
    filename: str,
    max_bytes: int,
    skops_trusted: Sequence[str],
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES,
) -> ArtifactInfo:
    """Decide the artifact's format from its content and refuse anything Holdout won't run.

    max_unpacked_bytes: the most a skops archive may unpack to, whatever its compression."""
    if not data:
        raise ArtifactRejected(
            f"{filename} is empty. Upload a model saved as ONNX (.onnx) or skops (.skops)."
        )
    if len(data) > max_bytes:
        raise ArtifactRejected(
            f"{filename} is {_megabytes(len(data))} MB, more than the limit of "
            f"{_megabytes(max_bytes)} MB. Submit a smaller model (for example fewer or "
            "shallower trees)."
        )
    extension = PurePath(filename).suffix.lower()
    compression, head = _sniff_compression(data)
    if _is_pickle(head) or extension in PICKLE_EXTENSIONS:
        kind = f"a {compression}-compressed pickle (as joblib writes)" if compression else "a pickle"
        raise ArtifactRejected(
            f"{filename} is {kind}. Loading a pickle or joblib file runs arbitrary code, so "
            f"Holdout never loads one. {_EXPORT_ADVICE}"
        )
    if extension not in ACCEPTED_EXTENSIONS:
        raise ArtifactRejected(
            f"Holdout does not accept {filename}: the accepted formats are ONNX (.onnx) and "
            f"skops (.skops). {_EXPORT_ADVICE}"
        )
    is_zip = data.startswith(_ZIP_MAGIC)
    if extension == ".onnx":
        if is_zip:
            raise ArtifactRejected(
                f"{filename} is named .onnx but is a zip archive, which is what a skops file "
                "is. If it was saved with skops.io.dump, name it .skops; otherwise export it "
                "to ONNX again."
            )
        if compression:
            raise ArtifactRejected(
                f"{filename} is named .onnx but is a {compression}-compressed file. Upload "
                "the uncompressed .onnx file."
            )
        _check_onnx(data, filename)
    else:
        if not is_zip:
            raise ArtifactRejected(
                f"{filename} is named .skops but is not a zip archive, so it is not a skops "
                'file. Save the model with skops.io.dump(model, "model.skops").'
            )
        _check_skops(data, filename, max_unpacked_bytes=max_unpacked_bytes, trusted=skops_trusted)
    return ArtifactInfo(
        format=ACCEPTED_EXTENSIONS[extension],
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
    )


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f}"


def _size_text(size: int) -> str:
    """Megabytes, or kilobytes below one: a small bomb's upload would otherwise read "0.0 MB"."""
    return f"{size / 1_000_000:.1f} MB" if size >= 1_000_000 else f"{size / 1000:.1f} kB"


def _sniff_compression(data: bytes) -> tuple[str | None, bytes]:
    """Name the compression the data starts with, and the first bytes once decompressed."""
    for magic, name, decompressor in _COMPRESSIONS:
        if data.startswith(magic):
            try:
                # max_length bounds the output, so a decompression bomb costs nothing here.
                return name, decompressor().decompress(data[:65536], _SNIFF_BYTES)
            except (zlib.error, OSError, lzma.LZMAError, EOFError, ValueError):
                return None, data[:_SNIFF_BYTES]
    return None, data[:_SNIFF_BYTES]


def _is_pickle(head: bytes) -> bool:
    if head[:1] == b"\x80":  # the PROTO opcode that opens every pickle of protocol 2 and up
        return len(head) > 1 and 2 <= head[1] <= 5
    if not head or head[0] not in _OLD_PICKLE_OPENERS:
        return False
    try:
        # Text can begin with one of those bytes too; a pickle keeps parsing as opcodes.
        for _ in zip(range(4), pickletools.genops(head)):
            pass
    except ValueError:
        return False
    return True


def _check_onnx(data: bytes, filename: str) -> None:
    try:
        message_count(data, onnx.ModelProto.DESCRIPTOR, max_messages=MAX_ONNX_MESSAGES, max_fields=MAX_ONNX_FIELDS)
    except Malformed as error:
        _reject_onnx(filename, f"it cannot be parsed as an ONNX model ({error})")
    except TooComplex as error:
        _reject_onnx(
            filename,
            f"its protobuf holds {error}, far more than a real model's graph has and more than Holdout will "
            "parse (parsing builds an object for every one)",
        )
    try:
        model = onnx.load_model_from_string(data)
    except DecodeError:
        _reject_onnx(filename, "it cannot be parsed as an ONNX model")
    if not model.HasField("graph"):
        _reject_onnx(filename, "it has no graph")
    if not model.graph.node:
        _reject_onnx(filename, "its graph has no nodes")
    external = [tensor.name or "(unnamed)" for tensor in _tensors(model) if uses_external_data(tensor)]
    if external:
        raise ArtifactRejected(
            f"{filename} keeps tensors in external data files ({_listing(external)}), which "
            "Holdout does not accept. Save the model with every tensor inside the one file: "
            'onnx.save_model(model, "model.onnx", save_as_external_data=False).'
        )
    custom = {
        (node.domain, node.op_type)
        for container in _containers(model)
        for node in container.node
        if node.domain not in STANDARD_ONNX_DOMAINS
    }
    if custom:
        operators = [f"{op_type} (domain {domain!r})" for domain, op_type in sorted(custom)]
        raise ArtifactRejected(
            f"{filename} uses operators outside the standard ONNX domains: "
            f"{_listing(operators)}. Holdout runs only the standard operators (domains '', "
            "'ai.onnx' and 'ai.onnx.ml'); export the model without custom or contrib operators."
        )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        _reject_onnx(filename, f"onnx.checker says: {_shorten(str(error))}")


def _reject_onnx(filename: str, reason: str) -> NoReturn:
    raise ArtifactRejected(
        f"{filename} is not a valid ONNX model: {reason}. Export it again, for example with "
        "skl2onnx's to_onnx(model, X[:1]) or torch.onnx.export."
    )


def _containers(model: onnx.ModelProto) -> Iterator[onnx.GraphProto | onnx.FunctionProto]:
    """The main graph, the model's local functions and every subgraph (If, Loop, Scan bodies)."""
    pending = [model.graph, *model.functions]
    while pending:
        container = pending.pop()
        yield container
        for node in container.node:
            for attribute in node.attribute:
                if attribute.HasField("g"):
                    pending.append(attribute.g)
                pending.extend(attribute.graphs)


def _tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    for container in _containers(model):
        if isinstance(container, onnx.GraphProto):
            yield from container.initializer
            for sparse in container.sparse_initializer:
                yield from (sparse.values, sparse.indices)
        for node in container.node:
            for attribute in node.attribute:
                if attribute.HasField("t"):
                    yield attribute.t
                yield from attribute.tensors
                sparse_tensors = list(attribute.sparse_tensors)
                if attribute.HasField("sparse_tensor"):
                    sparse_tensors.append(attribute.sparse_tensor)
                for sparse in sparse_tensors:
                    yield from (sparse.values, sparse.indices)


def _check_skops(data: bytes, filename: str, *, max_unpacked_bytes: int, trusted: Sequence[str]) -> None:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if "schema.json" not in {member.filename for member in members}:
                _reject_skops(filename, "it has no schema.json")
            _check_unpacked_size(archive, members, filename, packed=len(data), cap=max_unpacked_bytes)
            schema = archive.getinfo("schema.json")
            if schema.file_size > MAX_SCHEMA_BYTES:
                _reject_skops(
                    filename,
                    f"its schema.json is {_size_text(schema.file_size)}, more than the {_size_text(MAX_SCHEMA_BYTES)} "
                    "Holdout reads (a 500-tree forest's is about 11 MB)",
                )
            _check_schema(archive.read("schema.json"), filename)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as error:
        _reject_skops(filename, f"it is not a readable zip archive ({_shorten(str(error))})")
    try:
        # Only builds skops' audit tree from schema.json and the arrays: nothing is constructed.
        found = skops.io.get_untrusted_types(data=data)
    except RecursionError:
        _reject_skops(filename, "its schema.json nests objects too deeply for skops to audit")
    except Exception as error:  # any failure to parse untrusted input is a bad file, whatever its type
        _reject_skops(filename, f"skops cannot read it: {_shorten(str(error)) or type(error).__name__}")
    allowed = set(trusted)
    untrusted = [name for name in found if name not in allowed]
    if untrusted:
        raise ArtifactRejected(
            f"{filename} contains types that Holdout does not load: {', '.join(untrusted)}. "
            "Holdout loads scikit-learn estimators and an allowlist of types from skops files; "
            "submit a model built from those, or export it to ONNX with skl2onnx."
        )


def _check_unpacked_size(archive: zipfile.ZipFile, members, filename: str, *, packed: int, cap: int) -> None:
    """Refuse an archive that unpacks to more than MAX_UNPACKED_RATIO times `packed` or more than
    `cap` bytes, before anything reads it whole.

    The sizes the archive declares are checked first (a bomb that states its size costs nothing);
    then every member is decompressed a chunk at a time and counted, so a member that declares
    less than it holds is caught too, in bounded memory and after at most `limit` bytes of work."""
    limit = min(packed * MAX_UNPACKED_RATIO, cap)
    declared = sum(member.file_size for member in members)
    if declared > limit:
        _reject_unpacked(filename, _size_text(declared), packed=packed, limit=limit, cap=cap)
    unpacked = 0
    for member in members:
        with archive.open(member) as stream:
            while chunk := stream.read(_UNPACK_CHUNK):
                unpacked += len(chunk)
                if unpacked > limit:
                    _reject_unpacked(filename, f"more than {_size_text(limit)}", packed=packed, limit=limit, cap=cap)


def _reject_unpacked(filename: str, expands_to: str, *, packed: int, limit: int, cap: int) -> NoReturn:
    _reject_skops(
        filename,
        f"the archive expands to {expands_to} when unpacked, more than the {_size_text(limit)} Holdout "
        f"unpacks for a {_size_text(packed)} upload (at most {MAX_UNPACKED_RATIO} times its size, and never "
        f"more than {_size_text(cap)}); an honest skops file unpacks to about its own size, as skops.io.dump "
        "stores arrays uncompressed",
    )


def _check_schema(schema: bytes, filename: str) -> None:
    """schema.json must be a JSON object; say where it is not, rather than what skops raised."""
    try:
        parsed = json.loads(schema)
    except UnicodeDecodeError as error:
        _reject_skops(filename, f"its schema.json is not UTF-8 text ({error.reason} at byte {error.start})")
    except json.JSONDecodeError as error:
        _reject_skops(
            filename, f"its schema.json is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        )
    except RecursionError:
        _reject_skops(filename, "its schema.json nests arrays or objects too deeply to read")
    if not isinstance(parsed, dict):
        _reject_skops(filename, f"its schema.json holds a JSON {type(parsed).__name__}, not an object")


def _reject_skops(filename: str, reason: str) -> NoReturn:
    raise ArtifactRejected(
        f"{filename} is not a valid skops file: {reason}. Save the model with "
        'skops.io.dump(model, "model.skops").'
    )


def _listing(items: Sequence[str], shown: int = 5) -> str:
    listed = ", ".join(items[:shown])
    return f"{listed} and {len(items) - shown} more" if len(items) > shown else listed


def _shorten(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
