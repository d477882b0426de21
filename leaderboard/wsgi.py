import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
application = get_wsgi_application()

# Load the URLconf, the views and the chart library (matplotlib) while the process starts, not
# during the first request a visitor makes: that request would otherwise take ~0.4 s longer.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns
from leaderboard import charts  # noqa: E402, F401
