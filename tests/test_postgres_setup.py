"""Starting the app on a PostgreSQL database that is reached but refuses what the schema needs: a
role that may not create the pg_trgm extension. The app starts (only a malformed URL, a missing
secret key or a server older than 14 stop it), says in its log what the operator must fix, and
answers 503, never 500, until the schema can be made; then it serves without a restart."""
import logging
import uuid

import psycopg
from postgres_server import create_database, database_url, drop_database

from screening import create_app
from screening.store import engine_postgres


def test_a_role_that_cannot_create_the_extension_gets_503s_and_a_log_line_until_it_is_allowed(
        postgres_url, caplog):
    role, name = f"weak_{uuid.uuid4().hex[:8]}", f"weak_{uuid.uuid4().hex[:8]}"
    create_database(postgres_url, name)
    admin = database_url(postgres_url, name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"GRANT CREATE, USAGE ON SCHEMA public TO {role}")     # tables, not extensions
    url = admin.replace("postgres@", f"{role}@", 1) if "postgres@" in admin else admin + f"?user={role}"
    caplog.set_level(logging.INFO)
    app = create_app({"TESTING": True, "SECRET_KEY": "k" * 40, "DATABASE_URL": url,
                      "DATABASE_WAIT_SECONDS": 2})
    try:
        assert "pg_trgm" in caplog.text and "cannot be made" in caplog.text
        client = app.test_client()
        for _ in range(2):      # each request tries again, and fails alike
            assert client.get("/healthz").status_code == 503
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"GRANT CREATE ON DATABASE {name} TO {role}")  # what the README asks for
        assert client.get("/healthz").status_code == 200
        with psycopg.connect(admin, autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'").fetchone() == (1,)
    finally:
        engine_postgres.close_pools(url)
        drop_database(postgres_url, name)
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(f"DROP ROLE IF EXISTS {role}")
