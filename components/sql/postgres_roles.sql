-- PostgreSQL roles of the platform, applied by psql as the superuser on every start of the database
-- container (components/postgres.py), so rotated secrets reach existing data. Idempotent.
-- Variables (psql -v): database, app_role, app_password, exporter_role, exporter_password,
-- exporter_connections, backup_role, backup_database, backup_password, backup_connections, superuser_password.
\set ON_ERROR_STOP on
-- Passwords are in these statements: never in the server log.
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
SET log_min_duration_statement = -1;

SELECT format('CREATE ROLE %I', :'app_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'app_role') \gexec
SELECT format('CREATE ROLE %I', :'exporter_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'exporter_role') \gexec
SELECT format('CREATE ROLE %I', :'backup_role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'backup_role') \gexec

-- The application: logs in, owns its schema, nothing else.
ALTER ROLE :"app_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    PASSWORD :'app_password';
-- The exporter: reads the statistics views (pg_monitor), a few connections at most.
ALTER ROLE :"exporter_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT :exporter_connections PASSWORD :'exporter_password';
GRANT pg_monitor TO :"exporter_role";
-- The backup job (pgBackRest from its own container, over TCP): what a non-superuser backup needs, and no
-- more. pgBackRest reads data_directory, archive_mode and archive_command from pg_settings
-- (pg_read_all_settings), asks for the immediate checkpoint of start-fast (pg_checkpoint, PostgreSQL 15), starts
-- and stops the backup, switches the WAL segment and, for `check`, writes a restore point. Tried on PostgreSQL
-- 15 with pgBackRest 2.45 (stanza-create, full and incr backup; `check` fails without pg_create_restore_point).
-- The data files it reads from the volume as the postgres OS user, not through this role.
ALTER ROLE :"backup_role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
    CONNECTION LIMIT :backup_connections PASSWORD :'backup_password';
GRANT pg_read_all_settings, pg_checkpoint TO :"backup_role";
-- The superuser is for administration only, with its own secret.
ALTER ROLE CURRENT_USER WITH PASSWORD :'superuser_password';

-- No database is open to every role; the application and the exporter enter only the application's, the
-- backup job only pgBackRest's.
SELECT format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', datname)
  FROM pg_database WHERE datallowconn \gexec
GRANT CONNECT, TEMPORARY ON DATABASE :"database" TO :"app_role";
GRANT CONNECT ON DATABASE :"database" TO :"exporter_role";
GRANT CONNECT ON DATABASE :"backup_database" TO :"backup_role";

-- Functions belong to a database: the backup functions are granted where pgBackRest calls them.
\connect :"backup_database"
GRANT EXECUTE ON FUNCTION pg_backup_start(text, boolean), pg_backup_stop(boolean), pg_switch_wal(),
    pg_create_restore_point(text) TO :"backup_role";

\connect :"database"
SET log_statement = 'none';
ALTER SCHEMA public OWNER TO :"app_role";
REVOKE ALL ON SCHEMA public FROM PUBLIC;
