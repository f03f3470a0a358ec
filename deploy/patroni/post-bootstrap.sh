#!/bin/sh
# Patroni runs this once, on the node that initialised the cluster, with a superuser connection string.
set -eu
psql "$1" -v ON_ERROR_STOP=1 -v pw="$TASKDECK_DB_PASSWORD" <<'SQL'
CREATE ROLE taskdeck LOGIN PASSWORD :'pw';
CREATE DATABASE taskdeck OWNER taskdeck;
SQL
