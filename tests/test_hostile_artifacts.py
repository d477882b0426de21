"""Uploads built to hurt the process that inspects them (issue 12): zip bombs dressed as skops
files, broken skops schemas, and ONNX protobufs that parse into far more memory than they take.

Each is refused at upload, quickly and in bounded memory, with a message that says what is wrong.
"""

import io
import os
import struct
import time
import tracemalloc
import zipfile

import onnx
import pytest

from evaluators import artifacts
from evaluators.protobuf_scan import message_count
from leaderboard.models import Submission
from tests import model_factories as factories
from tests.test_artifacts import inspect, refusal, zip_archive

GIB = 1 << 30
CHUNK = 1 << 20


def zip_bomb(expanded: int, *, member: str = "0.npy", level: int = 6) -> bytes:
    """A skops-shaped archive whose one array member is `expanded` zero bytes, deflated: written a
    megabyte at a time, so building a 1 GiB bomb holds only its compressed output."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        archive.writestr("schema.json", b'{"protocol": 2}')
        with archive.open(member, "w", force_zip64=expanded >= 0xFFFFFFFF) as stream:
            zeros = bytes(CHUNK)
            for _ in range(expanded // CHUNK):
                stream.write(zeros)
            stream.write(bytes(expanded % CHUNK))
    return buffer.getvalue()


def understated(archive: bytes, member: str, stated: int) -> bytes:
    """The archive with `member`'s uncompressed size rewritten to `stated` in both its local and
    central headers: a bomb that lies about its size (no zip64, so the sizes are in the headers)."""
    data = bytearray(archive)
    name = member.encode()
    # (signature, offset of the uncompressed size, of the name's length, of the name)
    for signature, size_at, length_at, name_at in ((b"PK\x03\x04", 22, 26, 30), (b"PK\x01\x02", 24, 28, 46)):
        start = 0
        while (start := data.find(signature, start)) >= 0:
            length = struct.unpack_from("<H", data, start + length_at)[0]
            if data[start + name_at : start + name_at + length] == name:
                struct.pack_into("<I", data, start + size_at, stated)
            start += 4
    return bytes(data)


def traced(call):
    """(what call() returned, the peak of Python's allocations meanwhile in bytes, seconds taken)."""
    tracemalloc.start()
    try:
        started = time.monotonic()
        value = call()
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return value, peak, elapsed


@pytest.fixture(scope="module")
def gib_bomb() -> bytes:
    # zlib's fastest level writes it in a quarter of the time (about 5 s rather than 20 on a shared
    # core) at about 230 times smaller: 4.7 MB; level 6 would make it 1 MB.
    bomb = zip_bomb(GIB, level=1)
    assert len(bomb) < 6_000_000
    return bomb


def test_a_1_gib_zip_bomb_posted_as_skops_is_refused_in_seconds_with_what_was_wrong(
    api_client, adult_benchmark, gib_bomb
):
    from django.core.files.uploadedfile import SimpleUploadedFile

    started = time.monotonic()
    response = api_client.post(
        f"/api/v1/benchmarks/{adult_benchmark.slug}/submissions/",
        {"name": "bomb", "artifact": SimpleUploadedFile("model.skops", gib_bomb)},
        format="multipart",
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 400, response.content
    message = " ".join(response.json()["artifact"])
    assert "not a valid skops file: the archive expands to 1073.7 MB when unpacked" in message
    assert "at most 200 times its size" in message
    assert "JSONDecodeError" not in message
    assert elapsed < 10, f"refusing the bomb took {elapsed:.1f} s"
    assert not Submission.objects.exists()


def test_refusing_a_zip_bomb_holds_a_tiny_fraction_of_what_it_expands_to(gib_bomb):
    message, peak, elapsed = traced(lambda: refusal(gib_bomb, "model.skops"))
    assert "expands to 1073.7 MB" in message
    assert peak < 20_000_000, f"peak {peak / 1e6:.1f} MB while refusing a 1 GiB bomb"
    assert elapsed < 5


def test_a_bomb_that_understates_its_size_is_refused_without_unpacking_it():
    # 200 MB of zeros whose headers say 1,000 bytes: zipfile stops at the stated size and the
    # checksum of those bytes fails, so nothing near 200 MB is ever decompressed.
    bomb = understated(zip_bomb(200_000_000), "0.npy", 1000)
    message, peak, elapsed = traced(lambda: refusal(bomb, "model.skops"))
    assert "not a valid skops file: it is not a readable zip archive (Bad CRC-32 for file '0.npy')" in message
    assert peak < 20_000_000 and elapsed < 5


def test_measuring_a_large_member_streams_it_in_bounded_memory():
    # Within the limits, every member is still decompressed and counted: a megabyte at a time.
    archive = zipfile.ZipFile(io.BytesIO(zip_bomb(300_000_000)))
    _, peak, _ = traced(
        lambda: artifacts._check_unpacked_size(archive, archive.infolist(), "model.skops", packed=GIB, cap=GIB)
    )
    assert peak < 10_000_000, f"peak {peak / 1e6:.1f} MB while streaming 300 MB"


def test_the_absolute_cap_holds_whatever_the_ratio_allows():
    bomb = zip_bomb(5_000_000)
    assert "expands to 5.0 MB" in refusal(bomb, "model.skops", max_unpacked_bytes=1_000_000)
    assert "more than 1.0 MB)" in refusal(bomb, "model.skops", max_unpacked_bytes=1_000_000)


def test_a_schema_larger_than_any_honest_one_is_refused_before_it_is_parsed():
    text = os.urandom(16_500_000).hex()  # 33 MB that deflate cannot shrink much: inside the ratio
    bomb = zip_archive({"schema.json": f'{{"protocol": 2, "x": "{text}"}}'.encode()}, compression=zipfile.ZIP_DEFLATED)
    message = refusal(bomb, "model.skops", max_bytes=100_000_000)
    assert "its schema.json is 33.0 MB, more than the 32.0 MB Holdout reads" in message


def test_an_honest_skops_file_is_well_inside_the_limits():
    model = factories.skops_bytes(factories.random_forest(*factories.census()))
    archive = zipfile.ZipFile(io.BytesIO(model))
    unpacked = sum(member.file_size for member in archive.infolist())
    assert unpacked < 5 * len(model)
    assert inspect(model, "model.skops").format == "skops"


@pytest.mark.parametrize(
    "schema, says",
    [
        (b"{not json", "is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2"),
        (b'{"protocol": 2,\n "a": }', "its schema.json is not valid JSON: Expecting value at line 2 column 7"),
        (b"{\"protocol\": \"\xff\"}", "its schema.json is not UTF-8 text"),
        (b"[1, 2]", "its schema.json holds a JSON list, not an object"),
        (b"[" * 100_000 + b"]" * 100_000, "its schema.json nests arrays or objects too deeply to read"),
        (b'{"protocol": "two"}', "skops cannot read it: Invalid skops protocol 'two' in schema.json"),
    ],
)
def test_a_broken_skops_schema_says_what_is_wrong(schema, says):
    message = refusal(zip_archive({"schema.json": schema}), "model.skops")
    assert says in message
    assert "JSONDecodeError" not in message and "RecursionError" not in message


# --- ONNX protobufs that parse into far more memory than they take -------------------------------


def varint(value: int) -> bytes:
    encoded = bytearray()
    while value > 0x7F:
        encoded.append(value & 0x7F | 0x80)
        value >>= 7
    return bytes(encoded) + bytes([value])


def onnx_of_empty_nodes(nodes: int) -> bytes:
    """A ModelProto whose graph (field 7) holds `nodes` empty NodeProtos (field 1): two bytes each
    in the file, an object of some 160 bytes each once parsed."""
    graph = b"\x0a\x00" * nodes
    return b"\x3a" + varint(len(graph)) + graph


def test_an_8_mb_onnx_of_empty_nodes_is_refused_before_it_is_parsed():
    bomb = onnx_of_empty_nodes(4_000_000)
    _, peak, _ = traced(lambda: refusal(bomb, "model.onnx"))
    started = time.monotonic()
    message = refusal(bomb, "model.onnx")
    elapsed = time.monotonic() - started  # timed apart: tracing slows every allocation
    assert "not a valid ONNX model: its protobuf holds more than 500,000 messages" in message
    assert "parsing builds an object for every one" in message
    assert peak < 5_000_000, f"peak {peak / 1e6:.1f} MB while counting"
    assert elapsed < 5, f"refusing took {elapsed:.1f} s"


def test_fields_the_schema_does_not_know_are_bounded_too():
    # Field 1000 as a varint, 3 bytes each: parsed as unknown fields, counted as fields not messages.
    bomb = b"\xc0\x3e\x01" * 3_000_000
    started = time.monotonic()
    message = refusal(bomb, "model.onnx")
    elapsed = time.monotonic() - started
    assert "its protobuf holds more than 2,000,000 fields outside runs of numbers" in message
    assert elapsed < 10, f"refusing took {elapsed:.1f} s"


@pytest.mark.parametrize(
    "data, says",
    [
        (b"\x3a\x10\x0a\x00", "a field runs past the end of its message"),
        (b"\x08\xff\xff", "a number is cut short"),
        (b"\x0b\x00", "field 1 has wire type 3"),
        (b"\x3a\x00", "its graph has no nodes"),
    ],
)
def test_a_broken_protobuf_says_where_it_breaks(data, says):
    assert says in refusal(data, "model.onnx")


def test_nesting_deeper_than_any_graph_is_refused():
    # An If node's then_branch (attribute field 6, a GraphProto) inside a node inside a graph, 200 times.
    body = b""
    for _ in range(200):
        attribute = b"\x32" + varint(len(body)) + body
        node = b"\x2a" + varint(len(attribute)) + attribute
        body = b"\x0a" + varint(len(node)) + node
    bomb = b"\x3a" + varint(len(body)) + body
    assert "messages nest more than 100 deep" in refusal(bomb, "model.onnx")


def test_a_large_honest_onnx_forest_is_counted_in_well_under_a_second():
    features, labels = factories.census(n_rows=3000)
    forest = factories.random_forest(features, labels, trees=100, max_depth=None)
    model = factories.onnx_from_pipeline(forest, features)
    started = time.monotonic()
    inspect(model, "model.onnx")
    elapsed = time.monotonic() - started
    count = message_count(model, onnx.ModelProto.DESCRIPTOR, max_messages=10**9, max_fields=10**9)
    assert count < 1000, "a forest's tree nodes are numbers in a few attributes, not messages"
    assert elapsed < 2, f"inspecting a {len(model) / 1e6:.1f} MB forest took {elapsed:.1f} s"
