import io

import pandas as pd
import pytest
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command

from leaderboard.errors import Rejected
from leaderboard.models import Benchmark
from leaderboard.services import benchmark_create


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def frames():
    train = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "group": ["a", "b", "a", "b"], "y": [0, 1, 0, 1]})
    test = pd.DataFrame({"x": [1.5, 2.5, 3.5], "group": ["a", "b", "b"], "y": [1, 0, 1]})
    return train, test


def create(**overrides):
    train, test = frames()
    arguments = {
        "slug": "toy",
        "name": "Toy",
        "task": "binary",
        "target_column": "y",
        "train_data": csv_bytes(train),
        "train_filename": "train.csv",
        "test_data": csv_bytes(test),
        "test_filename": "test.csv",
        "sensitive_columns": ["group"],
    }
    arguments.update(overrides)
    return benchmark_create(**arguments)


def stored_files() -> list[str]:
    if not default_storage.exists("benchmarks"):
        return []
    folders, _ = default_storage.listdir("benchmarks")
    return sorted(
        f"{folder}/{name}" for folder in folders for name in default_storage.listdir(f"benchmarks/{folder}")[1]
    )


def test_it_creates_a_benchmark_with_every_other_column_as_features(db):
    benchmark = create()
    assert benchmark.feature_columns == ["x", "group"]
    assert benchmark.class_labels == [0, 1]
    assert benchmark.positive_label == 1
    assert benchmark.primary_metric == "accuracy"
    assert benchmark.test_rows == 3 and benchmark.train_rows == 4
    assert benchmark.objectives["accuracy"] == 1.0 and benchmark.objectives["roc_auc"] == 0.0


def test_it_reads_parquet_as_well_as_csv(db):
    train, test = frames()
    buffer = io.BytesIO()
    test.to_parquet(buffer)
    benchmark = create(test_data=buffer.getvalue(), test_filename="test.parquet")
    assert benchmark.test_rows == 3


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"target_column": "income"}, "target_column", "has no column 'income'"),
        ({"feature_columns": ["x", "x"]}, "feature_columns", "more than once: x"),
        ({"feature_columns": ["x", "nope"]}, "feature_columns", "has no column 'nope'"),
        ({"sensitive_columns": ["gender"]}, "sensitive_columns", "has no column 'gender'"),
        ({"train_data": b""}, "train_data", "is empty"),
        ({"test_data": b"x,group,y\n"}, "test_data", "no rows"),
        ({"task": "ranking"}, "task", "unknown task 'ranking'"),
        ({"train_data": b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe"}, "train_data", "neither Parquet nor UTF-8 CSV"),
        ({"test_data": b"PAR1 broken parquet"}, "test_data", "not a readable Parquet file"),
        ({"train_data": b"x,x,y\n1,2,0\n3,4,1\n"}, "train_data", "duplicated column names: x"),
        ({"train_data": b"x,group,y\n1,a,0\n2,b,0\n"}, "target_column", "only one class in train_data"),
        ({"task": "regression", "test_data": b"x,group,y\n1,a,low\n2,b,high\n"}, "target_column", "must be numeric"),
        ({"positive_label": "yes"}, "positive_label", "not a class of the target"),
        ({"primary_metric": "rmse"}, "primary_metric", "does not apply to a binary task"),
        ({"time_column": "group", "feature_columns": ["x", "group"]}, "feature_columns", "cannot also be a feature"),
        ({"slug": "Not A Slug"}, "slug", "lowercase letters"),
    ],
)
def test_it_refuses_bad_input_naming_the_problem_and_keeps_nothing(db, overrides, field, message):
    files_before = stored_files()
    with pytest.raises(Rejected) as caught:
        create(**overrides)
    assert caught.value.field == field
    assert message in caught.value.message
    assert not Benchmark.objects.exists()
    assert stored_files() == files_before


def test_it_refuses_a_second_benchmark_with_the_same_slug(db):
    create()
    with pytest.raises(Rejected, match="already exists"):
        create()


def test_a_binary_target_with_text_labels_needs_the_positive_label_named(db):
    train = pd.DataFrame({"x": [1, 2, 3, 4], "y": ["no", "yes", "no", "yes"]})
    with pytest.raises(Rejected, match="name the positive label"):
        create(train_data=csv_bytes(train), test_data=csv_bytes(train), sensitive_columns=[])
    benchmark = create(
        train_data=csv_bytes(train), test_data=csv_bytes(train), sensitive_columns=[], positive_label="yes"
    )
    assert benchmark.positive_label == "yes"


def test_the_command_creates_a_benchmark_from_files(db, tmp_path):
    train, test = frames()
    (tmp_path / "train.csv").write_bytes(csv_bytes(train))
    test.to_parquet(tmp_path / "test.parquet")
    out = io.StringIO()
    call_command(
        "create_benchmark", "toy", "--name", "Toy", "--task", "binary", "--target", "y",
        "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.parquet"),
        "--sensitive", "group", stdout=out,
    )
    assert "Created benchmark 'toy': 4 training rows, 3 test rows, 2 features." in out.getvalue()
    assert Benchmark.objects.get(slug="toy").sensitive_columns == ["group"]


def test_the_command_says_what_is_wrong(db, tmp_path):
    train, test = frames()
    (tmp_path / "train.csv").write_bytes(csv_bytes(train))
    (tmp_path / "test.csv").write_bytes(csv_bytes(test))
    with pytest.raises(CommandError, match="has no column 'label'"):
        call_command(
            "create_benchmark", "toy", "--name", "Toy", "--task", "binary", "--target", "label",
            "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
        )
    with pytest.raises(CommandError, match="no such file"):
        call_command(
            "create_benchmark", "toy", "--name", "Toy", "--task", "binary", "--target", "y",
            "--train", str(tmp_path / "missing.csv"), "--test", str(tmp_path / "test.csv"),
        )


def upload(name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


def api_payload(**overrides):
    train, test = frames()
    payload = {
        "slug": "toy",
        "name": "Toy",
        "task": "binary",
        "target_column": "y",
        "sensitive_columns": "group",
        "train_data": upload("train.csv", csv_bytes(train)),
        "test_data": upload("test.csv", csv_bytes(test)),
    }
    payload.update(overrides)
    return payload


def test_the_api_creates_benchmarks_for_staff_only(api_client, user):
    response = api_client.post("/api/v1/benchmarks/", api_payload(), format="multipart")
    assert response.status_code == 403
    assert "staff" in response.json()["detail"]
    user.is_staff = True
    user.save()
    response = api_client.post("/api/v1/benchmarks/", api_payload(), format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["slug"] == "toy" and body["sensitive_columns"] == ["group"]
    assert {"key": "accuracy", "label": "Accuracy", "direction": "higher", "default_weight": 1.0} in body["objectives"]
    assert body["warnings"] == []


def test_the_api_answers_the_copied_rows_warning_with_the_new_benchmark(api_client, user):
    user.is_staff = True
    user.save()
    train, test = leaky_frames()
    payload = api_payload(train_data=upload("train.csv", csv_bytes(train)), test_data=upload("test.csv", csv_bytes(test)))
    response = api_client.post("/api/v1/benchmarks/", payload, format="multipart")
    assert response.status_code == 201, response.json()
    assert len(response.json()["warnings"]) == 1 and response.json()["warnings"][0].startswith(LEAK_WARNING)


def test_the_api_names_the_field_of_a_refused_benchmark(api_client, user):
    user.is_staff = True
    user.save()
    response = api_client.post("/api/v1/benchmarks/", api_payload(target_column="label"), format="multipart")
    assert response.status_code == 400
    assert "has no column 'label'" in response.json()["target_column"][0]
    response = api_client.post("/api/v1/benchmarks/", api_payload(task="ranking"), format="multipart")
    assert response.status_code == 400 and "task" in response.json()


def test_staff_create_a_benchmark_in_the_admin(client, user):
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    page = client.get("/admin/leaderboard/benchmark/add/")
    assert page.status_code == 200 and b"Create a benchmark" in page.content
    payload = api_payload(target_column="label")
    response = client.post("/admin/leaderboard/benchmark/add/", payload)
    assert response.status_code == 200 and b"has no column" in response.content
    response = client.post("/admin/leaderboard/benchmark/add/", api_payload())
    assert response.status_code == 302
    assert Benchmark.objects.get(slug="toy").feature_columns == ["x", "group"]


def test_the_training_split_is_served_but_never_the_test_split(client, db):
    benchmark = create()
    response = client.get(f"/api/v1/benchmarks/{benchmark.slug}/train-data/")
    assert response.status_code == 200
    served = pd.read_csv(io.BytesIO(response.content))
    assert len(served) == benchmark.train_rows
    web = client.get(f"/benchmarks/{benchmark.slug}/train.csv")
    assert web.content == response.content
    detail = client.get(f"/api/v1/benchmarks/{benchmark.slug}/").json()
    assert "test_data" not in detail


def leaky_frames():
    """A test split of five rows, the first two copies of training rows. Its x column is float (it has
    a gap) where the training split's is int: 1.0 and 1 are the same value. The third row differs
    from a training row in the target only, so it is no copy."""
    train = pd.DataFrame({"x": [1, 2, 3, 4], "group": ["a", "b", "a", "b"], "y": [0, 1, 0, 1]})
    test = pd.DataFrame({"x": [1.0, 2.0, 3.0, 9.5, None], "group": ["a", "b", "a", "b", "b"], "y": [0, 1, 1, 1, 0]})
    return train, test


LEAK_WARNING = (
    "2 of 5 test rows (40.0%) are exact copies of training rows (the same value in every feature column and "
    "the target, x, group, y): a model can score on them by remembering its training data."
)


def test_test_rows_copied_from_the_training_split_are_counted_in_a_warning_not_refused(db):
    train, test = leaky_frames()
    benchmark = create(train_data=csv_bytes(train), test_data=csv_bytes(test))
    assert Benchmark.objects.filter(slug="toy").exists()
    assert len(benchmark.creation_warnings) == 1
    assert benchmark.creation_warnings[0].startswith(LEAK_WARNING)


def test_disjoint_splits_create_without_a_warning(db):
    assert create().creation_warnings == []


def test_the_command_prints_the_copied_rows_warning(db, tmp_path):
    train, test = leaky_frames()
    (tmp_path / "train.csv").write_bytes(csv_bytes(train))
    (tmp_path / "test.csv").write_bytes(csv_bytes(test))
    out = io.StringIO()
    call_command(
        "create_benchmark", "toy", "--name", "Toy", "--task", "binary", "--target", "y",
        "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"), stdout=out,
    )
    assert "Created benchmark 'toy'" in out.getvalue()
    assert f"Warning: {LEAK_WARNING}" in out.getvalue()


def test_the_admin_shows_the_copied_rows_warning(client, user):
    user.is_staff = user.is_superuser = True
    user.save()
    client.force_login(user)
    train, test = leaky_frames()
    payload = {
        **api_payload(),
        "train_data": upload("train.csv", csv_bytes(train)),
        "test_data": upload("test.csv", csv_bytes(test)),
    }
    response = client.post("/admin/leaderboard/benchmark/add/", payload, follow=True)
    assert response.status_code == 200
    shown = [str(message) for message in response.context["messages"]]
    assert any(message.startswith(LEAK_WARNING) for message in shown), shown


def guarded_frames(rows: int = 200):
    import numpy as np

    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"x": rng.normal(size=rows), "group": rng.choice(["a", "b"], rows)})
    frame["y"] = (rng.random(rows) < 0.25).astype(int)
    return frame.iloc[: rows // 2], frame.iloc[rows // 2 :]


def test_a_guarded_benchmark_draws_its_public_part_once_and_stores_it(db):
    train, test = guarded_frames()
    benchmark = create(train_data=csv_bytes(train), test_data=csv_bytes(test), holdout_policy="guarded")
    stored = Benchmark.objects.get(pk=benchmark.pk)
    public = stored.public_positions
    assert stored.is_guarded and stored.public_fraction == 0.3 and len(public) == 30
    labels = test["y"].to_numpy()
    assert abs(labels[public].mean() - labels.mean()) <= 1 / 30, "stratified by the target"
    assert open_benchmark_positions() == 0


def open_benchmark_positions() -> int:
    benchmark = create(slug="open-toy")
    assert not benchmark.is_guarded and benchmark.holdout_policy == "open"
    return len(benchmark.public_positions)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"holdout_policy": "secret"}, "is not one of open, guarded"),
        ({"holdout_policy": "guarded", "public_fraction": 0.99}, "from 0.05 to 0.95"),
        ({"holdout_policy": "guarded", "public_fraction": 0.1}, "leaves one side empty"),
    ],
)
def test_a_holdout_policy_that_cannot_be_made_says_why(db, overrides, message):
    with pytest.raises(Rejected, match=message) as caught:
        create(**overrides)  # three test rows: a tenth of them is no row at all
    assert caught.value.field in ("holdout_policy", "public_fraction")
    assert not Benchmark.objects.exists()


def test_the_command_and_the_api_create_guarded_benchmarks(db, tmp_path, api_client, user):
    train, test = guarded_frames()
    (tmp_path / "train.csv").write_bytes(csv_bytes(train))
    (tmp_path / "test.csv").write_bytes(csv_bytes(test))
    out = io.StringIO()
    call_command(
        "create_benchmark", "toy", "--name", "Toy", "--task", "binary", "--target", "y",
        "--train", str(tmp_path / "train.csv"), "--test", str(tmp_path / "test.csv"),
        "--holdout-policy", "guarded", "--public-fraction", "0.4", stdout=out,
    )
    assert "Guarded: 40 public test rows (40%)" in out.getvalue() and "60 private rows" in out.getvalue()
    user.is_staff = True
    user.save()
    payload = api_payload(
        slug="toy-api",
        train_data=upload("train.csv", csv_bytes(train)),
        test_data=upload("test.csv", csv_bytes(test)),
        holdout_policy="guarded",
    )
    response = api_client.post("/api/v1/benchmarks/", payload, format="multipart")
    assert response.status_code == 201, response.json()
    holdout = response.json()["holdout"]
    assert holdout["policy"] == "guarded" and holdout["public_rows"] == 30 and holdout["private_rows"] == 70
    assert holdout["ladder"] == "parameter-free" and holdout["final_selections"] == 2 and holdout["budget_cap"] is None
    opened = api_client.get("/api/v1/benchmarks/toy/").json()["holdout"]
    assert opened["public_rows"] == 40
    refused = api_client.post(
        "/api/v1/benchmarks/", api_payload(slug="toy-bad", holdout_policy="secret"), format="multipart"
    )
    assert refused.status_code == 400 and "holdout_policy" in refused.json()
