from django.apps import AppConfig


class WorkersConfig(AppConfig):
    name = "workers"

    def ready(self) -> None:
        # Configures Celery's current app in every process, so the domain can send tasks by name
        # without importing this package.
        import workers.app  # noqa: F401
