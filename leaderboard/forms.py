from django import forms

from leaderboard.errors import Rejected
from leaderboard.metadata import MAX_METADATA_BYTES, metadata_parse
from leaderboard.objectives import TASKS
from leaderboard.services import MAX_NAME_LENGTH, MAX_TOKEN_NAME_LENGTH
from leaderboard.tables import column_names_parse


class SubmissionForm(forms.Form):
    artifact = forms.FileField(help_text="An .onnx or .skops file. Pickle and joblib files are refused.")
    name = forms.CharField(max_length=MAX_NAME_LENGTH)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=5000)
    # The size is checked with the other limits in leaderboard.metadata, which says how large it is.
    metadata = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}),
        required=False,
        help_text='Optional JSON object, e.g. {"git_sha": "abc123", "training_cutoff": "2023-12-31"}, '
        f"at most {MAX_METADATA_BYTES // 1024} KB; training_cutoff is the last day of the training data.",
    )

    def clean_metadata(self) -> dict:
        try:
            return metadata_parse(self.cleaned_data["metadata"])
        except Rejected as rejection:
            raise forms.ValidationError(rejection.message) from None


class ApiTokenForm(forms.Form):
    # The length is checked by the service, which says how long the name is; the browser stops at the limit too.
    name = forms.CharField(
        required=False,
        strip=False,
        widget=forms.TextInput(attrs={"maxlength": MAX_TOKEN_NAME_LENGTH, "placeholder": "e.g. github-actions"}),
        help_text=f"Where the token is used, at most {MAX_TOKEN_NAME_LENGTH} characters.",
    )


class BenchmarkForm(forms.Form):
    slug = forms.SlugField(max_length=64)
    name = forms.CharField(max_length=120)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=5000)
    task = forms.ChoiceField(choices=[(task, task) for task in TASKS])
    target_column = forms.CharField(max_length=200)
    feature_columns = forms.CharField(
        required=False, help_text="Comma-separated; empty means every column but the target and the time column."
    )
    sensitive_columns = forms.CharField(required=False, help_text="Comma-separated, e.g. sex,race.")
    time_column = forms.CharField(required=False, max_length=200)
    positive_label = forms.CharField(required=False, max_length=200)
    primary_metric = forms.CharField(
        required=False, max_length=32, help_text="Empty: accuracy, or rmse for regression."
    )
    holdout_policy = forms.ChoiceField(
        choices=[("open", "open: every score released"), ("guarded", "guarded: public part through the Ladder")],
        initial="open",
        required=False,
    )
    public_fraction = forms.FloatField(
        required=False, min_value=0.05, max_value=0.95, help_text="Guarded: share of test rows shown; empty: 0.3."
    )
    train_data = forms.FileField(help_text="Public training split, CSV or Parquet.")
    test_data = forms.FileField(help_text="Hidden test split, CSV or Parquet. Its labels are never served.")

    def service_arguments(self) -> dict:
        data = dict(self.cleaned_data)
        train, test = data.pop("train_data"), data.pop("test_data")
        data["feature_columns"] = column_names_parse(data["feature_columns"])
        data["sensitive_columns"] = column_names_parse(data["sensitive_columns"])
        return {
            **data,
            "train_data": train.read(),
            "train_filename": train.name,
            "test_data": test.read(),
            "test_filename": test.name,
        }
