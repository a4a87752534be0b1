// The script of the aws data job (programs/aws/data-job.ts), mounted from a ConfigMap and run in
// two containers of one pod: `dump` (an init container with the MySQL client tools) takes the
// dump, loads it into the target on a move, and counts rows and runs CHECKSUM TABLE per table on
// both sides; `upload` (the AWS CLI) writes the backup to the region's bucket (SSE-KMS) and then
// the result the worker waits for. The result is written last and always: a failure says so in it.
//
// Credentials come as MySQL option files (`/credentials/source.cnf`, `target.cnf`), never as
// arguments or environment values; messages are static (a failed load's server message may quote
// tenant rows, so it goes to the pod's log only, never into the result).

export const DATA_JOB_SCRIPT_KEY = "data-job.sh";

export const DATA_JOB_SCRIPT = String.raw`#!/bin/sh
# Stackrail data job (issue 16, item 4): phase "dump" or "upload". See programs/aws/data-job-script.ts.
set -u
# The pod's mounts; another place only where the script runs outside its pod (its tests).
W=$(printenv WORK_DIR || echo /work)
C=$(printenv CREDENTIALS_DIR || echo /credentials)
# Options of the server's flavour: Aurora MySQL 8 keeps GTIDs, which a tenant's user may not set.
FLAVOUR=$(printenv DUMP_FLAVOUR_OPTIONS || echo --set-gtid-purged=OFF)
TAB=$(printf '\t')
BT=$(printf '\140')

# The dump phase ends here on failure: the upload phase reports it.
fail() {
  printf '%s' "$1" > "$W/reason"
  echo failed > "$W/status"
  echo "data job: $1" >&2
  head_json
  exit 0
}

need() {
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || fail "the image has no $tool"
  done
}

# tables <option file> <database>: one line per base table: name, rows, checksum (tab-separated).
tables() {
  mysql --defaults-extra-file="$1" -N -B -e "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = '$2' AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME" > "$W/names" || return 1
  while IFS= read -r t; do
    q=$(printf '%s' "$t" | sed "s/$BT/$BT$BT/g")
    rows=$(mysql --defaults-extra-file="$1" -N -B -D "$2" -e "SELECT COUNT(*) FROM $BT$q$BT") || return 1
    sum=$(mysql --defaults-extra-file="$1" -N -B -D "$2" -e "CHECKSUM TABLE $BT$q$BT" | cut -f2) || return 1
    printf '%s\t%s\t%s\n' "$t" "$rows" "$sum"
  done < "$W/names"
}

json_tables() {
  printf '['
  sep=''
  if [ -f "$1" ]; then
    while IFS="$TAB" read -r t rows sum; do
      t=$(printf '%s' "$t" | sed 's/\\/\\\\/g; s/"/\\"/g')
      printf '%s{"table":"%s","rows":%s,"checksum":"%s"}' "$sep" "$t" "$rows" "$sum"
      sep=','
    done < "$1"
  fi
  printf ']'
}

# Everything of the result but the backup, which only the upload phase knows.
head_json() {
  status=$(cat "$W/status" 2>/dev/null || echo failed)
  reason=null
  [ -f "$W/reason" ] && reason="\"$(cat "$W/reason")\""
  {
    printf '{"version":1,"runId":"%s","tenant":"%s","mode":"%s","status":"%s","reason":%s' "$RUN_ID" "$TENANT" "$MODE" "$status" "$reason"
    printf ',"source":{"database":"%s","tables":%s}' "$SOURCE_DATABASE" "$(json_tables "$W/source.tsv")"
    if [ "$MODE" = move ]; then
      printf ',"target":{"database":"%s","tables":%s}' "$TARGET_DATABASE" "$(json_tables "$W/target.tsv")"
    else
      printf ',"target":null'
    fi
  } > "$W/result-head.json"
}

dump() {
  need mysqldump mysql gzip sha256sum sed cut
  # A tenant's own user: no PROCESS privilege (tablespaces), no GTID administration on Aurora.
  { mysqldump --defaults-extra-file="$C/source.cnf" --single-transaction --skip-lock-tables --no-tablespaces \
      $FLAVOUR --triggers --hex-blob --default-character-set=utf8mb4 --databases "$SOURCE_DATABASE"
    echo $? > "$W/dump.rc"; } | gzip -c > "$W/backup.sql.gz"
  [ "$(cat "$W/dump.rc")" = 0 ] || fail "the dump of the source database failed"
  wc -c < "$W/backup.sql.gz" | tr -d ' ' > "$W/backup.bytes"
  sha256sum "$W/backup.sql.gz" | cut -d' ' -f1 > "$W/backup.sha256"
  touch "$W/backup.ok"
  if [ "$MODE" = move ]; then
    # Into the target's own database: no CREATE DATABASE/USE, and no DEFINER of the source's user.
    gzip -dc "$W/backup.sql.gz" | sed -e '/^CREATE DATABASE /d' -e "/^USE $BT/d" -e "s/DEFINER=$BT[^$BT]*$BT@$BT[^$BT]*$BT//g" \
      | mysql --defaults-extra-file="$C/target.cnf" -D "$TARGET_DATABASE" || fail "loading the dump into the target database failed"
  fi
  tables "$C/source.cnf" "$SOURCE_DATABASE" > "$W/source.tsv" || fail "counting and checksumming the source tables failed"
  if [ "$MODE" = move ]; then
    tables "$C/target.cnf" "$TARGET_DATABASE" > "$W/target.tsv" || fail "counting and checksumming the target tables failed"
    if [ "$(cat "$W/source.tsv")" = "$(cat "$W/target.tsv")" ]; then
      echo ok > "$W/status"
    else
      echo mismatch > "$W/status"
      printf '%s' "row counts or CHECKSUM TABLE differ between source and target" > "$W/reason"
    fi
  else
    echo ok > "$W/status"
  fi
  head_json
}

upload() {
  command -v aws >/dev/null 2>&1 || { echo "data job: the image has no aws" >&2; exit 1; }
  if [ ! -f "$W/result-head.json" ]; then
    printf '{"version":1,"runId":"%s","status":"failed","reason":"the dump step left no result"}' "$RUN_ID" > "$W/result.json"
  else
    backup=null
    if [ -f "$W/backup.ok" ]; then
      if aws s3 cp "$W/backup.sql.gz" "s3://$BUCKET/$BACKUP_KEY" --sse aws:kms --sse-kms-key-id "$KMS_KEY_ARN" --only-show-errors; then
        backup=$(printf '{"key":"%s","bytes":%s,"sha256":"%s"}' "$BACKUP_KEY" "$(cat "$W/backup.bytes")" "$(cat "$W/backup.sha256")")
      else
        echo failed > "$W/status"
        printf '{"version":1,"runId":"%s","status":"failed","reason":"the backup could not be written to the bucket"}' "$RUN_ID" > "$W/result.json"
      fi
    fi
    [ -f "$W/result.json" ] || { cat "$W/result-head.json"; printf ',"backup":%s}' "$backup"; } > "$W/result.json"
  fi
  aws s3 cp "$W/result.json" "s3://$BUCKET/$RESULT_KEY" --sse aws:kms --sse-kms-key-id "$KMS_KEY_ARN" \
    --content-type application/json --only-show-errors || exit 1
  [ "$(cat "$W/status" 2>/dev/null)" = ok ] || exit 1
}

case "$1" in
  dump) dump ;;
  upload) upload ;;
  *) echo "data job: unknown phase" >&2; exit 2 ;;
esac
`;

/** The statements the dump phase verifies with, per table on both sides (tests check they are there). */
export const VERIFICATION_STATEMENTS = ["SELECT COUNT(*) FROM", "CHECKSUM TABLE"] as const;
