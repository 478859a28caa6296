# tracker: one image for every role (migrate, worker, beat); the command picks the role.
#
#   docker build -t tracker .
#   docker run --rm -e TRACKER_DATABASE_URL=... tracker db upgrade
#
# A first stage builds the wheel; the image installs it like any package. The migrations travel
# inside it (pyproject maps the repository's migrations/ to tracker/migrations/), so
# `tracker db upgrade` needs neither the sources nor alembic.ini in the image.
FROM python:3.11-slim AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY . /src
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TRACKER_DATA_DIR=/data

# A fixed uid, so a bind-mounted data folder can be chowned to match.
RUN groupadd --system --gid 10001 tracker \
    && useradd --system --uid 10001 --gid tracker --home-dir /home/tracker --create-home \
        --shell /usr/sbin/nologin tracker \
    && mkdir -p /data \
    && chown tracker:tracker /data

WORKDIR /app
COPY --from=build /wheels /wheels
# Installed as root, so the code stays read-only for the service user. The check fails the
# build if the wheel came without its migrations.
RUN pip install --no-cache-dir /wheels/*.whl \
    && rm -rf /wheels \
    && python -c "from tracker.db import migrate; migrate.alembic_config('sqlite://')"

USER tracker
# /data holds beat's schedule file. No VOLUME here (it would leave an anonymous volume behind
# every one-shot `db upgrade`); mount a named volume where it matters: a new named volume
# mounted on /data copies this folder's owner, so the service user can write to it.

ENTRYPOINT ["tracker"]
CMD ["--help"]
