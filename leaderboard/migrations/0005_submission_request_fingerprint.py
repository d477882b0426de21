from django.db import migrations, models

from leaderboard.metadata import request_fingerprint


def fingerprints_from_stored_requests(apps, schema_editor):
    """Submissions made before fingerprints get one from what they store, so a CI retry with their
    Idempotency-Key still gets them back; only keyed rows can be asked for again."""
    Submission = apps.get_model("leaderboard", "Submission")
    keyed = Submission.objects.filter(idempotency_key__isnull=False, request_fingerprint="")
    for submission in keyed.only("benchmark_id", "artifact_sha256", "name", "description", "metadata").iterator():
        submission.request_fingerprint = request_fingerprint(
            benchmark_id=submission.benchmark_id,
            artifact_sha256=submission.artifact_sha256,
            name=submission.name,
            description=submission.description,
            metadata=submission.metadata or {},
        )
        submission.save(update_fields=["request_fingerprint"])


class Migration(migrations.Migration):
    dependencies = [
        ("leaderboard", "0004_api_tokens_and_quota_help"),
    ]

    operations = [
        migrations.AddField(
            model_name="submission",
            name="request_fingerprint",
            field=models.CharField(blank=True, default="", editable=False, max_length=64),
        ),
        migrations.RunPython(fingerprints_from_stored_requests, migrations.RunPython.noop),
    ]
