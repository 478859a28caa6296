# tracker: one image for every role (migrate, worker, beat); the command picks the role.
#
#   docker build -t tracker .
#   docker run --rm -e TRACKER_DATABASE_URL=... tracker db upgrade
#
# The repository is copied to /app and installed in editable mode: `tracker db upgrade` finds
# alembic.ini and migrations/ next to the package (tracker/migrate.py: PROJECT_ROOT is the
# parent of the tracker package), which a plain `pip install .` into site-packages would lose.
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
COPY . /app
# Installed as root, so the code and its egg-info stay read-only for the service user.
RUN pip install --no-cache-dir -e . \
    && test -f /app/alembic.ini \
    && test -d /app/migrations \
    && python -c "from tracker import migrate; migrate.alembic_config('sqlite://')"

USER tracker
# /data holds beat's schedule file. No VOLUME here (it would leave an anonymous volume behind
# every one-shot `db upgrade`); mount a named volume where it matters: a new named volume
# mounted on /data copies this folder's owner, so the service user can write to it.

ENTRYPOINT ["tracker"]
CMD ["--help"]
