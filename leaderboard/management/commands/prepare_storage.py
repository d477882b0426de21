"""Make sure the file storage can be written: on an S3-compatible store, create the bucket if it is missing.

Run once per deployment, with migrate (compose.yaml's init service does). A local disk needs nothing.
"""

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Create the object store's bucket if it is missing, and check a file can be written and read."

    def handle(self, *args, **options):
        if settings.FILE_STORAGE.endswith("S3Storage"):
            self._bucket_ensure()
        probe = default_storage.save("holdout-storage-check.txt", ContentFile(b"ok"))
        try:
            with default_storage.open(probe, "rb") as handle:
                if handle.read() != b"ok":
                    raise CommandError(f"the storage {settings.FILE_STORAGE} did not give back what was written.")
        finally:
            default_storage.delete(probe)
        self.stdout.write(f"Storage ready: {settings.FILE_STORAGE}")

    def _bucket_ensure(self) -> None:
        from botocore.exceptions import ClientError

        client = default_storage.connection.meta.client
        bucket = settings.S3_OPTIONS["bucket_name"]
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("404", "NoSuchBucket", "NotFound"):
                raise CommandError(f"the bucket {bucket!r} cannot be reached: {error}") from None
            client.create_bucket(Bucket=bucket)
            self.stdout.write(f"Created the bucket {bucket!r}.")
