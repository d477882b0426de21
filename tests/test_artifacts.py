import gzip
import hashlib
import io
import pickle
import zipfile

import joblib
import pytest

from evaluators.artifacts import ArtifactRejected, inspect_artifact
from tests import model_factories as factories

MAX_BYTES = 10_000_000


def inspect(data: bytes, filename: str, *, trusted=factories.DEFAULT_TRUSTED, max_bytes=MAX_BYTES, **options):
    return inspect_artifact(data, filename=filename, max_bytes=max_bytes, skops_trusted=trusted, **options)


def refusal(data: bytes, filename: str, **options) -> str:
    with pytest.raises(ArtifactRejected) as refused:
        inspect(data, filename, **options)
    return str(refused.value)


@pytest.fixture(scope="module")
def census():
    return factories.census()


@pytest.fixture(scope="module")
def forest_skops(census):
    return factories.skops_bytes(factories.random_forest(*census))


def test_it_accepts_an_onnx_pipeline_with_one_input_per_column_and_hashes_it(census):
    data = factories.onnx_from_pipeline(factories.logistic_pipeline(*census), census[0])
    info = inspect(data, "model.onnx")
    assert (info.format, info.size_bytes) == ("onnx", len(data))
    assert info.sha256 == hashlib.sha256(data).hexdigest()


def test_it_accepts_an_onnx_model_with_a_single_float_input(census):
    data = factories.onnx_from_numeric_model(factories.numeric_logistic(*census), census[0])
    assert inspect(data, "MODEL.ONNX").format == "onnx"


@pytest.mark.parametrize(
    "build", [factories.logistic_pipeline, factories.random_forest, factories.hist_gradient_boosting]
)
def test_it_accepts_common_skops_models_with_the_default_allowlist(census, build):
    data = factories.skops_bytes(build(*census))
    info = inspect(data, "model.skops")
    assert (info.format, info.size_bytes) == ("skops", len(data))


def test_it_refuses_an_empty_file():
    assert "model.onnx is empty" in refusal(b"", "model.onnx")


def test_it_refuses_a_file_over_the_size_limit_and_gives_both_sizes_in_mb():
    message = refusal(b"\x08" * 2_500_000, "model.onnx", max_bytes=2_000_000)
    assert "2.5 MB" in message and "limit of 2.0 MB" in message


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_it_refuses_a_pickle_and_says_why_whatever_the_file_is_called(protocol):
    message = refusal(pickle.dumps({"coef": [1.0]}, protocol=protocol), "model.onnx")
    assert "is a pickle" in message
    assert "runs arbitrary code" in message and "never loads" in message
    assert 'skops.io.dump(model, "model.skops")' in message and "to_onnx(model, X[:1])" in message


@pytest.mark.parametrize("protocol", [0, 1])
def test_it_recognises_old_protocol_pickles_by_their_opening_opcodes(protocol):
    assert "is a pickle" in refusal(pickle.dumps([{"coef": 1.0}], protocol=protocol), "model.bin")


@pytest.mark.parametrize("compression", ["gzip", "zlib", "bz2", "xz", "lzma"])
def test_it_refuses_a_compressed_joblib_file_by_its_content(compression):
    buffer = io.BytesIO()
    joblib.dump({"coef": [1.0]}, buffer, compress=(compression, 3))
    message = refusal(buffer.getvalue(), "model.bin")
    assert f"{compression}-compressed pickle (as joblib writes)" in message
    assert "runs arbitrary code" in message


@pytest.mark.parametrize("extension", [".pkl", ".pickle", ".joblib", ".sav"])
def test_it_refuses_pickle_extensions_without_reading_further(forest_skops, extension):
    assert "runs arbitrary code" in refusal(forest_skops, f"model{extension}")


def test_it_refuses_an_unknown_format_and_lists_the_accepted_ones(forest_skops):
    message = refusal(forest_skops, "model.h5")
    assert "ONNX (.onnx) and skops (.skops)" in message


def test_it_refuses_an_onnx_name_on_a_zip_archive(forest_skops):
    message = refusal(forest_skops, "model.onnx")
    assert "named .onnx but is a zip archive" in message and "name it .skops" in message


def test_it_refuses_an_onnx_name_on_a_compressed_file():
    message = refusal(gzip.compress(factories.regressor_reading("age")), "model.onnx")
    assert "named .onnx but is a gzip-compressed file" in message


def test_it_refuses_a_skops_name_on_something_that_is_not_a_zip_archive():
    message = refusal(factories.regressor_reading("age"), "model.skops")
    assert "named .skops but is not a zip archive" in message


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"\x08\x07this is not protobuf\xff\xff", "cannot be parsed as an ONNX model"),
        (factories.model_without_graph(), "it has no graph"),
        (factories.model_without_nodes(), "its graph has no nodes"),
        (factories.model_reading_an_undefined_tensor(), "onnx.checker says"),
    ],
)
def test_it_refuses_a_corrupt_onnx_model_and_says_what_is_wrong(data, reason):
    message = refusal(data, "model.onnx")
    assert "model.onnx is not a valid ONNX model" in message and reason in message


def test_it_refuses_a_custom_operator_naming_its_domain_and_type():
    message = refusal(factories.custom_operator_model(), "model.onnx")
    assert "FastGelu (domain 'com.microsoft')" in message


def test_it_finds_a_custom_operator_hidden_in_a_subgraph():
    message = refusal(factories.custom_operator_model(inside_subgraph=True), "model.onnx")
    assert "FastGelu (domain 'com.microsoft')" in message


def test_it_refuses_tensors_kept_in_external_data_files():
    message = refusal(factories.external_data_model(), "model.onnx")
    assert "external data files (weights)" in message and "save_as_external_data=False" in message


def zip_archive(members: dict[str, bytes], compression=zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_it_refuses_a_zip_without_a_skops_schema():
    message = refusal(zip_archive({"weights.npy": b"\x00" * 10}), "model.skops")
    assert "not a valid skops file: it has no schema.json" in message


def test_it_refuses_a_skops_file_whose_schema_skops_cannot_read():
    message = refusal(zip_archive({"schema.json": b"{not json"}), "model.skops")
    assert "not a valid skops file: its schema.json is not valid JSON: Expecting property name" in message


def test_it_refuses_a_zip_bomb_before_skops_reads_it():
    bomb = zip_archive({"schema.json": b"{}", "0.npy": bytes(30_000_000)}, zipfile.ZIP_DEFLATED)
    message = refusal(bomb, "model.skops", max_bytes=1_000_000)
    assert "the archive expands to 30.0 MB when unpacked, more than the 5.9 MB Holdout unpacks for a" in message


def test_it_refuses_skops_types_outside_the_allowlist_and_names_them(forest_skops):
    message = refusal(forest_skops, "model.skops", trusted=["numpy.dtype"])
    assert "types that Holdout does not load: sklearn.tree._tree.Tree" in message


def test_it_compares_allowlisted_type_names_exactly(forest_skops):
    message = refusal(forest_skops, "model.skops", trusted=["sklearn.tree._tree.tree", "Tree"])
    assert "sklearn.tree._tree.Tree" in message
