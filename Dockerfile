# One image for every Holdout process (web, workers, beat); compose.yaml runs it with different commands.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_SETTINGS_MODULE=leaderboard.settings
WORKDIR /app
# scikit-learn's OpenMP runtime.
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/*
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN pip install --no-cache-dir --no-deps . && python manage.py collectstatic --noinput --verbosity 0
RUN useradd --create-home holdout && mkdir -p /app/var && chown holdout /app/var
USER holdout
EXPOSE 8000
CMD ["gunicorn", "leaderboard.wsgi", "--bind", "0.0.0.0:8000", "--workers", "4"]
