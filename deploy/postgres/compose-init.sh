#!/bin/sh
# First-start initialisation for the compose PostgreSQL: roles, passwords, the database.
set -eu
psql -v ON_ERROR_STOP=1 -U postgres -f /bootstrap/bootstrap-roles.sql
psql -v ON_ERROR_STOP=1 -U postgres \
  -v owner_pw="$RAMPART_OWNER_PASSWORD" -v app_pw="$RAMPART_APP_PASSWORD" <<'SQL'
ALTER ROLE rampart_owner PASSWORD :'owner_pw';
ALTER ROLE rampart_app PASSWORD :'app_pw';
CREATE DATABASE rampart OWNER rampart_owner;
SQL
