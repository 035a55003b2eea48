#!/usr/bin/env bash
# Local mail system for Switchboard's integration tests, loopback only:
#   Postfix SMTP 127.0.0.1:2525 -> Dovecot LMTP 127.0.0.1:10024
#   -> Dovecot IMAP 127.0.0.1:10143 (plaintext, no TLS)
# Domain example.test; mailboxes and passwords are in tests/mail/users.
#
# Usage: scripts/mail-server.sh start|stop|restart|status
#   start   install the Debian packages if missing, start; harmless if up
#   stop    stop only the instances this script started
#   status  exit 0 when SMTP, LMTP and IMAP all answer
#
# Runs as root, without systemd, on its own config, queue, base_dir and
# state: a system Postfix or Dovecot (if any) is neither used nor touched.
# Runtime state (rendered configs, queue, maildirs, logs, pid files) lives in
# ${SWITCHBOARD_MAIL_DIR:-$HOME/.cache/switchboard/mail}.
set -euo pipefail
# Service users must read what we create, whatever the caller's umask.
umask 022

TEMPLATES=$(cd "$(dirname "$0")/../tests/mail" && pwd)
MAIL_DIR=${SWITCHBOARD_MAIL_DIR:-${HOME:?HOME is not set}/.cache/switchboard/mail}

SMTP_PORT=2525 LMTP_PORT=10024 IMAP_PORT=10143 IMAPS_PORT=10993
WAIT_SECONDS=20

# Debian's paths: called by absolute path because a non-login root shell may
# lack /usr/sbin in PATH.
POSTFIX=/usr/sbin/postfix
DOVECOT=/usr/sbin/dovecot
DOVEADM=/usr/bin/doveadm
DOVECONF=/usr/bin/doveconf

die() { echo "mail-server: error: $*" >&2; exit 1; }
note() { echo "mail-server: $*" >&2; }

# The last lines of a log, to show why something did not come up.
show_log() {
  local f=$1
  if [ -s "$f" ]; then
    echo "--- last lines of $f ---" >&2
    tail -n 25 "$f" >&2
    echo "---" >&2
  else
    echo "(no log at $f)" >&2
  fi
}

# Does something on 127.0.0.1:PORT greet with PREFIX? Says goodbye politely
# so the servers' logs stay free of "lost connection" noise.
answers() {
  local port=$1 prefix=$2 bye=$3
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 3 bash -c '
    exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
    IFS= read -r line <&3 || exit 1
    printf "%s\r\n" "$3" >&3 2>/dev/null || true
    [[ $line == "$2"* ]]' _ "$port" "$prefix" "$bye" 2>/dev/null
}
smtp_up() { answers "$SMTP_PORT" "220 " "QUIT"; }
lmtp_up() { answers "$LMTP_PORT" "220 " "QUIT"; }
imap_up() { answers "$IMAP_PORT" "* OK" "a LOGOUT"; }
imaps_up() { port_open "$IMAPS_PORT"; }

# Does anything accept connections on 127.0.0.1:PORT?
# shellcheck disable=SC2016 # expanded by the inner bash
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null; }

resolve_dirs() {
  case $MAIL_DIR in
    *[[:space:]]*) die "SWITCHBOARD_MAIL_DIR must not contain whitespace: '$MAIL_DIR'" ;;
  esac
  mkdir -p "$MAIL_DIR"
  MAIL_DIR=$(cd "$MAIL_DIR" && pwd -P)
  ETC=$MAIL_DIR/etc
  PF_CONF=$ETC/postfix
  DC_CONF=$ETC/dovecot/dovecot.conf
  PF_QUEUE=$MAIL_DIR/spool/postfix
  PF_DATA=$MAIL_DIR/lib/postfix
  DC_STATE=$MAIL_DIR/lib/dovecot
  DC_BASE=$MAIL_DIR/run/dovecot
  MAILDIRS=$MAIL_DIR/maildirs
  LOGS=$MAIL_DIR/log
  PF_LOG=$LOGS/postfix.log
  DC_LOG=$LOGS/dovecot.log
  PF_PIDFILE=$PF_QUEUE/pid/master.pid
  DC_PIDFILE=$DC_BASE/master.pid
}

pid_from() { [ -s "$1" ] && tr -dc '0-9' <"$1"; }

# Is the process in pid file $1 alive and named $2 (not a reused pid)?
alive() {
  local pid
  pid=$(pid_from "$1") || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}
postfix_running() { [ -f "$PF_CONF/main.cf" ] && alive "$PF_PIDFILE" master; }
dovecot_running() { [ -f "$DC_CONF" ] && alive "$DC_PIDFILE" dovecot; }

require_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (Postfix and Dovecot start as root and drop privileges)"
}

# One start/stop at a time: test binaries may call start concurrently.
take_lock() {
  exec 9>"$MAIL_DIR/.lock"
  flock -w 120 9 || die "another mail-server.sh holds $MAIL_DIR/.lock for over 120 s"
}

ensure_installed() {
  if [ -x "$POSTFIX" ] && [ -x "$DOVECOT" ] && [ -x "$DOVEADM" ] \
     && [ -x /usr/lib/dovecot/lmtp ] && [ -x /usr/lib/dovecot/imap ] \
     && [ -x /usr/bin/setfacl ]; then
    return
  fi
  note "installing postfix, dovecot-imapd, dovecot-lmtpd, acl (apt)"
  # "No configuration": the package must not set up or start a system Postfix.
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  local apt_log=$MAIL_DIR/log/apt.log
  mkdir -p "$MAIL_DIR/log"
  apt-get update -qq >"$apt_log" 2>&1 || { show_log "$apt_log"; die "apt-get update failed"; }
  # 9>&-: a package script that starts a daemon must not inherit our lock.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    dovecot-imapd dovecot-lmtpd postfix acl >>"$apt_log" 2>&1 9>&- \
    || { show_log "$apt_log"; die "apt-get install of postfix dovecot-imapd dovecot-lmtpd acl failed"; }
}

# The default MAIL_DIR is under root's $HOME, usually mode 0700: Postfix's master
# (data_directory lock), Dovecot's auth (users file) and the mail processes
# (maildirs as nobody) run unprivileged and could not even reach it. Grant
# exactly those users traverse-only (x) on each ancestor they can't pass.
SERVICE_USERS="postfix dovecot nobody"
grant_traverse() {
  local dir=$MAIL_DIR u parents=()
  while [ "$dir" != / ]; do
    dir=$(dirname "$dir")
    parents=("$dir" "${parents[@]}")
  done
  for dir in "${parents[@]}"; do
    for u in $SERVICE_USERS; do
      if ! setpriv --reuid="$u" --regid="$(id -g "$u")" --clear-groups test -x "$dir"; then
        setfacl -m "u:$u:x" "$dir" || die "cannot let user $u traverse $dir (setfacl failed); set SWITCHBOARD_MAIL_DIR to a directory they can reach"
        note "granted user $u traverse-only access (ACL u:$u:x) on $dir"
      fi
    done
  done
}

# Copy template $1 to $2 with @MAIL_DIR@ filled in; sets CHANGED=1 if the
# file differs from what was there.
render() {
  local src=$1 dst=$2 tmp esc
  esc=$(printf '%s' "$MAIL_DIR" | sed 's/[\\&|]/\\&/g')
  tmp=$(mktemp "$dst.XXXXXX")
  sed "s|@MAIL_DIR@|$esc|g" "$src" >"$tmp"
  if cmp -s "$tmp" "$dst" 2>/dev/null; then
    rm -f "$tmp"
  else
    chmod 0644 "$tmp"
    mv -f "$tmp" "$dst"
    CHANGED=1
  fi
}

# A test CA and a server certificate it signed, for IMAPS on 127.0.0.1; tests trust the CA
# ($MAIL_DIR/etc/tls/ca.pem). (TLS clients refuse a self-signed CA certificate used as the
# server's own, so the two are separate.)
ensure_certificate() {
  local tls=$ETC/tls
  [ -s "$tls/ca.pem" ] && [ -s "$tls/cert.pem" ] && [ -s "$tls/key.pem" ] && return
  mkdir -p "$tls"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Switchboard test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$tls/ca-key.pem" -out "$tls/ca.pem" &&
    openssl req -newkey rsa:2048 -nodes -subj "/CN=mail.example.test" \
      -keyout "$tls/key.pem" -out "$tls/server.csr" &&
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:mail.example.test" \
      >"$tls/server.ext" &&
    openssl x509 -req -in "$tls/server.csr" -CA "$tls/ca.pem" -CAkey "$tls/ca-key.pem" -CAcreateserial \
      -days 3650 -extfile "$tls/server.ext" -out "$tls/cert.pem"
  } >/dev/null 2>&1 9>&- || die "could not create the test TLS certificates with openssl"
  chmod 0644 "$tls/ca.pem" "$tls/cert.pem"
  chmod 0600 "$tls/key.pem" "$tls/ca-key.pem"
  CHANGED=1  # a running Dovecot must restart to serve the new certificate
}

render_configs() {
  CHANGED=0
  mkdir -p "$PF_CONF" "$ETC/dovecot" "$LOGS"
  ensure_certificate
  render "$TEMPLATES/main.cf" "$PF_CONF/main.cf"
  render "$TEMPLATES/master.cf" "$PF_CONF/master.cf"
  render "$TEMPLATES/dovecot.conf" "$DC_CONF"
  render "$TEMPLATES/users" "$ETC/dovecot/users"
  # Postfix accepts the addresses Dovecot knows (one list: users), and one more that Dovecot
  # refuses on delivery, so a reply to it comes back as a real delivery report (a bounce).
  local vm
  vm=$(mktemp "$PF_CONF/virtual_mailboxes.XXXXXX")
  { sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' -e 's/:.*/ ok/' "$ETC/dovecot/users"
    echo "gone@example.test ok"; } >"$vm"
  if cmp -s "$vm" "$PF_CONF/virtual_mailboxes" 2>/dev/null; then rm -f "$vm"
  else chmod 0644 "$vm"; mv -f "$vm" "$PF_CONF/virtual_mailboxes"; CHANGED=1; fi
}

prepare_dirs() {
  mkdir -p "$PF_QUEUE" "$PF_DATA" "$DC_STATE" "$MAILDIRS" "$LOGS"
  # Postfix insists on its own ownerships inside the queue; data_directory
  # must belong to mail_owner.
  chown root:root "$PF_QUEUE"
  chown postfix:postfix "$PF_DATA"
  chmod 0700 "$PF_DATA"
  # Mail is stored as nobody (Dovecot won't deliver as root).
  chown nobody:nogroup "$MAILDIRS"
  chmod 0700 "$MAILDIRS"
  # `postfix start` creates a missing queue with the right owners itself; an
  # existing queue whose owners are off (postfix reinstalled under another
  # uid) needs set-permissions (slow, ~3 s, hence only then).
  if [ -d "$PF_QUEUE/active" ] && [ "$(stat -c %U "$PF_QUEUE/active")" != postfix ]; then
    "$POSTFIX" -c "$PF_CONF" set-permissions >/dev/null 2>&1 9>&- \
      || { "$POSTFIX" -c "$PF_CONF" set-permissions 9>&-; die "postfix set-permissions failed"; }
  fi
}

# Refuse to start when a foreign process already holds one of our ports.
check_port_free() {
  local port=$1 what=$2
  port_open "$port" || return 0
  die "port $port ($what) is already taken by another process:
$(ss -Hltnp "sport = :$port" 2>/dev/null || echo "(ss not available to name it)")"
}

start_dovecot() {
  dovecot_running && return
  # 9>&-: the daemon must not inherit (and hold forever) our lock.
  "$DOVECOT" -c "$DC_CONF" 2>>"$DC_LOG" 9>&- \
    || { show_log "$DC_LOG"; die "dovecot failed to start (config $DC_CONF)"; }
}

start_postfix() {
  postfix_running && return
  "$POSTFIX" -c "$PF_CONF" start >"$LOGS/postfix-start.log" 2>&1 9>&- \
    || { show_log "$LOGS/postfix-start.log"; show_log "$PF_LOG"; die "postfix failed to start (config dir $PF_CONF)"; }
}

# Bounded wait for a port to greet; on timeout, say which and show the log.
wait_for() {
  local name=$1 port=$2 check=$3 log=$4 deadline=$((SECONDS + WAIT_SECONDS))
  until "$check"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      show_log "$log"
      die "$name on 127.0.0.1:$port did not answer within ${WAIT_SECONDS}s"
    fi
    sleep 0.1
  done
}

up_line() { echo "mail system up: smtp 127.0.0.1:$SMTP_PORT, imap 127.0.0.1:$IMAP_PORT, imaps 127.0.0.1:$IMAPS_PORT (lmtp 127.0.0.1:$LMTP_PORT, logs in $LOGS)"; }

cmd_start() {
  require_root
  resolve_dirs
  take_lock
  ensure_installed
  grant_traverse
  render_configs
  # A bad dovecot.conf is reported here, not as a port that never opens.
  "$DOVECONF" -c "$DC_CONF" >/dev/null 2>"$LOGS/doveconf.log" \
    || { show_log "$LOGS/doveconf.log"; die "invalid Dovecot config $DC_CONF (from tests/mail/dovecot.conf)"; }
  # Edited templates: restart what runs (a reload would keep e.g. Postfix's
  # throttling of a service that failed under the old config).
  if [ "$CHANGED" = 1 ] && { postfix_running || dovecot_running; }; then
    note "config changed: restarting the running mail system"
    stop_services
  fi
  if postfix_running && dovecot_running && smtp_up && lmtp_up && imap_up && imaps_up; then
    up_line  # already up: nothing to do
    return
  fi
  # Check every port first, so a clash leaves nothing half started.
  if ! dovecot_running; then
    check_port_free "$LMTP_PORT" "Dovecot LMTP"
    check_port_free "$IMAP_PORT" "Dovecot IMAP"
    check_port_free "$IMAPS_PORT" "Dovecot IMAPS"
  fi
  postfix_running || check_port_free "$SMTP_PORT" "Postfix SMTP"
  prepare_dirs
  start_dovecot
  start_postfix
  wait_for "Dovecot LMTP" "$LMTP_PORT" lmtp_up "$DC_LOG"
  wait_for "Dovecot IMAP" "$IMAP_PORT" imap_up "$DC_LOG"
  wait_for "Dovecot IMAPS" "$IMAPS_PORT" imaps_up "$DC_LOG"
  wait_for "Postfix SMTP" "$SMTP_PORT" smtp_up "$PF_LOG"
  up_line
}

# Wait (bounded) for a pid file's process to exit.
wait_gone() {
  local pidfile=$1 comm=$2 name=$3 deadline=$((SECONDS + WAIT_SECONDS))
  while alive "$pidfile" "$comm"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      die "$name (pid $(pid_from "$pidfile")) still running ${WAIT_SECONDS}s after stop"
    fi
    sleep 0.1
  done
}

stop_services() {
  # Both shut down at once: doveadm stop blocks until Dovecot is gone (~3 s),
  # so it runs in the background while Postfix stops.
  local dc_job="" pf=0
  if dovecot_running; then
    "$DOVEADM" -c "$DC_CONF" stop 9>&- &
    dc_job=$!
  fi
  if postfix_running; then
    pf=1
    "$POSTFIX" -c "$PF_CONF" stop >/dev/null 2>&1 9>&- || note "postfix stop failed; see $PF_LOG"
  fi
  if [ -n "$dc_job" ]; then
    wait "$dc_job" || note "doveadm stop failed; see $DC_LOG"
    wait_gone "$DC_PIDFILE" dovecot "dovecot master"
  fi
  [ "$pf" = 0 ] || wait_gone "$PF_PIDFILE" master "postfix master"
}

cmd_stop() {
  require_root
  resolve_dirs
  take_lock
  stop_services
  echo "mail system stopped"
}

cmd_status() {
  local ok=0
  if smtp_up; then echo "smtp 127.0.0.1:$SMTP_PORT: up"; else echo "smtp 127.0.0.1:$SMTP_PORT: down"; ok=1; fi
  if lmtp_up; then echo "lmtp 127.0.0.1:$LMTP_PORT: up"; else echo "lmtp 127.0.0.1:$LMTP_PORT: down"; ok=1; fi
  if imap_up; then echo "imap 127.0.0.1:$IMAP_PORT: up"; else echo "imap 127.0.0.1:$IMAP_PORT: down"; ok=1; fi
  return "$ok"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop && cmd_start ;;
  status) cmd_status ;;
  *) echo "usage: $0 start|stop|restart|status" >&2; exit 2 ;;
esac
