"""Locate the serving PostgreSQL: the configured server or an embedded ``pgserver``.

The embedded server runs as the ``pgserver`` system user when started by root; the
package makes the data directory's parents traversable and, when the data directory
is too deep for a unix socket path (about 107 bytes), puts the socket in a short
per-user runtime directory instead. The URI it returns names that socket directory.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from personalization_pipeline.config import Settings

_URI_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://", "postgresql+psycopg2://")


def normalize_url(url: str) -> str:
    """Return ``url`` as a psycopg 3 URI (``postgresql://``), accepting ``postgres://`` and
    SQLAlchemy forms; a libpq ``key=value`` string is returned unchanged."""
    for scheme in _URI_SCHEMES:
        if url.startswith(scheme):
            return "postgresql://" + url[len(scheme) :]
    if "://" not in url and "=" in url:
        return url
    scheme = url.split("://", 1)[0] if "://" in url else "no scheme"
    raise ValueError(f"not a PostgreSQL URL (expected postgresql://..., got {scheme}://...)")  # no password echoed


def with_database(url: str, dbname: str) -> str:
    """Return ``url`` pointing at database ``dbname`` on the same server."""
    url = normalize_url(url)
    if not url.startswith("postgresql://"):
        return make_conninfo(url, dbname=dbname)
    return urlunsplit(urlsplit(url)._replace(path="/" + dbname))


def with_user(url: str, user: str) -> str:
    """Return libpq conninfo for ``url``'s server and database logged in as ``user``.

    The password is dropped (it belongs to the original user); a password file
    (``passfile``, ``~/.pgpass``) or trust authentication can still let ``user`` in.
    """
    params = conninfo_to_dict(normalize_url(url))
    params.pop("password", None)
    return make_conninfo("", **{**params, "user": user})


def login_summary(url: str) -> str:
    """``user@host/dbname`` of ``url`` for log lines (never the password)."""
    params = conninfo_to_dict(normalize_url(url))
    host = params.get("host") or "localhost"
    port = f":{params['port']}" if params.get("port") else ""
    return f"{params.get('user', '(default user)')}@{host}{port}/{params.get('dbname', '')}"


def _pgserver() -> ModuleType:
    """Import ``pgserver`` on first use, quietly: it resolves a runtime directory at import
    and warns when ``XDG_RUNTIME_DIR`` is unset (its ``/tmp`` fallback is fine)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module="platformdirs")
        import pgserver
    return pgserver


def start_embedded_server(pg_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in ``pg_dir`` and return its URI.

    The server is left running when this process exits so later commands reuse it.
    """
    pg_dir = Path(pg_dir).expanduser().resolve()
    pg_dir.parent.mkdir(parents=True, exist_ok=True)
    try:
        server = _pgserver().get_server(pg_dir, cleanup_mode=None)
        server.ensure_postgres_running()  # a handle cached in this process may name a server stopped since
    except Exception as exc:
        log = pg_dir / "log"
        raise RuntimeError(
            f"could not start the embedded PostgreSQL in {pg_dir} ({exc}); see {log} "
            "or set PERSONALIZATION_DATABASE_URL to use an existing server"
        ) from exc
    return normalize_url(server.get_uri())


def stop_embedded_server(pg_dir: Path) -> None:
    """Stop the embedded PostgreSQL running in ``pg_dir`` (no-op when it is not running)."""
    pg_dir = Path(pg_dir).expanduser().resolve()
    if not (pg_dir / "postmaster.pid").exists():
        return
    user = "pgserver" if os.name == "posix" and os.geteuid() == 0 else None
    _pgserver().pg_ctl(["-w", "-m", "fast", "stop"], pgdata=pg_dir, user=user)


def resolve_database_url(settings: Settings) -> str:
    """``settings.database_url`` when set, else the embedded server's URI (started on demand)."""
    if settings.database_url:
        return normalize_url(settings.database_url)
    return start_embedded_server(settings.embedded_pg_dir)
