-- The application's seeded admin user (admin/admin123) gets the stack's generated password, as the seed's
-- own `UPDATE users SET password = <bcrypt> WHERE username = 'admin'`. Run by psql as the superuser in the
-- application's database once its users table exists (components/postgres.py). Variable: admin_bcrypt.
\set ON_ERROR_STOP on
SET log_statement = 'none';
UPDATE public.users SET password = :'admin_bcrypt'
 WHERE username = 'admin' AND password IS DISTINCT FROM :'admin_bcrypt';
