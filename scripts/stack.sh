#!/usr/bin/env bash
# Local service stack for cner: a single-node Apache Kafka broker (KRaft,
# combined broker + controller) and an Apicurio Registry (Confluent-compatible
# API), both on loopback, both resolved from Maven Central with Maven. The
# registry keeps its schemas in the broker (Apicurio's kafkasql storage), so the
# two keep or lose their data together: `down` + `up` keeps both, `reset` both.
#
#   scripts/stack.sh up       resolve (first run), start, wait until healthy,
#                             print KAFKA_BROKERS=... / SCHEMA_REGISTRY_URL=...
#   scripts/stack.sh down     stop both (SIGTERM, then SIGKILL)
#   scripts/stack.sh status   what runs; exit 0 only if both are healthy
#   scripts/stack.sh reset    down + delete the data (next `up` is a fresh cluster)
#   scripts/stack.sh restart  down + up
#   scripts/stack.sh restart-kafka  stop the broker (controlled shutdown) and start it again on
#                             the same data, the registry left running (the soak test's broker restarts)
#   scripts/stack.sh resolve  only resolve the jars (what setup.sh does), start nothing
#   scripts/stack.sh env      print `export KAFKA_BROKERS=...` lines for eval
#   scripts/stack.sh env-secure
#                             print `export CNER_STACK_SASL_BROKERS=...` lines:
#                             the secured listeners and their TEST-ONLY user,
#                             password and CA file (exit 1 when the running
#                             broker was not started with them)
#   scripts/stack.sh kafka-tool CLASS [ARGS...]
#                             run a Kafka CLI class from the broker's classpath,
#                             e.g. org.apache.kafka.tools.TopicCommand
#                             --bootstrap-server 127.0.0.1:9092 --list
#
# Progress goes to stderr; `up` prints only the environment (dotenv lines) on
# stdout, so `scripts/stack.sh up > .stack/env` works.
#
# Besides PLAINTEXT on 9092 (what everything uses), the broker offers, for
# security tests only: SASL_PLAINTEXT on 9094 and SASL_SSL (TLS) on 9095, each
# with PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 for one test user. Its password
# is generated on the first `up` (.stack/kafka/sasl-test-password), the CA and
# the broker certificate too (.stack/tls/, with keytool). `env-secure` prints
# them; `up` keeps printing only the two lines above.
#
# Environment:
#   CNER_STACK_KAFKA_PORT            broker port                 (9092)
#   CNER_STACK_KAFKA_CONTROLLER_PORT KRaft controller port       (9093)
#   CNER_STACK_KAFKA_SASL_PORT       SASL_PLAINTEXT port         (9094)
#   CNER_STACK_KAFKA_SSL_PORT        SASL_SSL (TLS) port         (9095)
#   CNER_STACK_REGISTRY_PORT         registry HTTP port          (8081)
#   CNER_STACK_TIMEOUT               seconds `up` waits for health (180)
#   CNER_STACK_KAFKA_HEAP            broker max heap             (512m)
#   CNER_STACK_REGISTRY_HEAP         registry max heap           (384m)
#   CNER_STACK_JAVA                  java binary (default: $JAVA_HOME/bin/java, else java)
#   CNER_STACK_DIR                   state folder                (<repo>/.stack)
#
# Files: stack/kafka/pom.xml (broker classpath), stack/kafka/server.properties.in,
# stack/kafka/log4j2.xml, stack/registry/pom.xml (registry distribution).
# State under .stack/: kafka/libs, kafka/data, registry/app, *.pid, *.log,
# tls/ (test CA and broker keystore), kafka/sasl-test-password, secure.env.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
SRC=$ROOT/stack
STATE=${CNER_STACK_DIR:-$ROOT/.stack}

KAFKA_PORT=${CNER_STACK_KAFKA_PORT:-9092}
CONTROLLER_PORT=${CNER_STACK_KAFKA_CONTROLLER_PORT:-9093}
SASL_PORT=${CNER_STACK_KAFKA_SASL_PORT:-9094}
SSL_PORT=${CNER_STACK_KAFKA_SSL_PORT:-9095}
REGISTRY_PORT=${CNER_STACK_REGISTRY_PORT:-8081}
TIMEOUT=${CNER_STACK_TIMEOUT:-180}
KAFKA_HEAP=${CNER_STACK_KAFKA_HEAP:-512m}
REGISTRY_HEAP=${CNER_STACK_REGISTRY_HEAP:-384m}
HOST=127.0.0.1

KAFKA_DIR=$STATE/kafka
KAFKA_LIBS=$KAFKA_DIR/libs
KAFKA_DATA=$KAFKA_DIR/data
KAFKA_CONF=$KAFKA_DIR/server.properties
KAFKA_ADMIN_CONF=$KAFKA_DIR/admin.properties
KAFKA_LOG=$STATE/kafka.log
# Fixed KRaft cluster id (base64 of the 16 bytes "cner-stack-kraft").
KAFKA_CLUSTER_ID=Y25lci1zdGFjay1rcmFmdA

# Secured listeners (tests only): one user for PLAIN and both SCRAM mechanisms.
SASL_USERNAME=cner_test
SASL_PASSWORD_FILE=$KAFKA_DIR/sasl-test-password
# sha256 of the SCRAM credentials stored in the cluster metadata (see ensure_scram_users)
SCRAM_MARKER=$KAFKA_DIR/scram.sha256
TLS_DIR=$STATE/tls
SECURE_ENV=$STATE/secure.env

REGISTRY_DIR=$STATE/registry
REGISTRY_APP=$REGISTRY_DIR/app
REGISTRY_LOG=$STATE/registry.log
REGISTRY_PATH=/apis/ccompat/v7

KAFKA_BROKERS=$HOST:$KAFKA_PORT
SASL_BROKERS=$HOST:$SASL_PORT
SSL_BROKERS=$HOST:$SSL_PORT
SCHEMA_REGISTRY_URL=http://$HOST:$REGISTRY_PORT$REGISTRY_PATH

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
}

# ---------------------------------------------------------------- java, maven

JAVA=
find_java() {
  [[ -n $JAVA ]] && return 0
  if [[ -n ${CNER_STACK_JAVA:-} ]]; then
    JAVA=$CNER_STACK_JAVA
  elif [[ -n ${JAVA_HOME:-} && -x ${JAVA_HOME}/bin/java ]]; then
    JAVA=$JAVA_HOME/bin/java
  elif command -v java >/dev/null 2>&1; then
    JAVA=$(command -v java)
  else
    die "no java found (need Java 17+): install a JDK or set CNER_STACK_JAVA / JAVA_HOME"
  fi
  local line major
  line=$("$JAVA" -version 2>&1 | head -n 1) || die "cannot run $JAVA"
  major=$(sed -E 's/.*version "([0-9]+)(\.([0-9]+))?.*/\1 \3/' <<<"$line")
  # "1.8.0_x" style versions report major 1
  if [[ ${major%% *} == 1 ]]; then major=${major#* }; else major=${major%% *}; fi
  [[ $major =~ ^[0-9]+$ ]] || die "cannot parse the Java version of $JAVA: $line"
  ((major >= 17)) || die "$JAVA is Java $major; Kafka 4.x and Apicurio Registry 3.x need Java 17+"
}

# mvn with its output in .stack/mvn.log, shown only when it fails
mvn_run() {
  command -v mvn >/dev/null 2>&1 || die "maven (mvn) is needed to resolve the stack from Maven Central"
  if ! MAVEN_OPTS=${MAVEN_OPTS:--Xmx384m} mvn -B -Dstyle.color=never "$@" >"$STATE/mvn.log" 2>&1; then
    grep -E '^\[(ERROR|WARNING)\]' "$STATE/mvn.log" | head -n 20 >&2 || true
    printf '[stack] (full maven output: %s)\n' "$STATE/mvn.log" >&2
    return 1
  fi
}

# Hash of the inputs a cached resolution depends on, so a version bump in a
# POM re-resolves on the next `up`.
input_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }

resolve_kafka() {
  local want have=
  want=$(input_hash "$SRC/kafka/pom.xml")
  [[ -f $KAFKA_DIR/libs.sha256 ]] && have=$(<"$KAFKA_DIR/libs.sha256")
  if [[ -d $KAFKA_LIBS && $have == "$want" ]]; then return 0; fi
  log "resolving the Kafka broker classpath (stack/kafka/pom.xml) with Maven ..."
  mkdir -p "$KAFKA_DIR"
  local tmp=$KAFKA_DIR/libs.tmp
  rm -rf "$tmp"
  mvn_run -f "$SRC/kafka/pom.xml" dependency:copy-dependencies -DoutputDirectory="$tmp" ||
    die "maven could not resolve the Kafka classpath (is Maven Central reachable?)"
  compgen -G "$tmp/kafka_2.13-*.jar" >/dev/null || die "resolved Kafka classpath lacks kafka_2.13"
  rm -rf "$KAFKA_LIBS"
  mv "$tmp" "$KAFKA_LIBS"
  printf '%s\n' "$want" >"$KAFKA_DIR/libs.sha256"
}

resolve_registry() {
  local want have=
  want=$(input_hash "$SRC/registry/pom.xml")
  [[ -f $REGISTRY_DIR/app.sha256 ]] && have=$(<"$REGISTRY_DIR/app.sha256")
  if [[ -d $REGISTRY_APP && $have == "$want" ]]; then return 0; fi
  log "resolving Apicurio Registry (stack/registry/pom.xml) with Maven ..."
  mkdir -p "$REGISTRY_DIR"
  local tmp=$REGISTRY_DIR/app.tmp
  rm -rf "$tmp" "$tmp.markers"
  mvn_run -f "$SRC/registry/pom.xml" dependency:unpack -Dregistry.outputDirectory="$tmp" ||
    die "maven could not resolve Apicurio Registry (is Maven Central reachable?)"
  rm -rf "$REGISTRY_APP" "$tmp.markers"
  mv "$tmp" "$REGISTRY_APP"
  registry_jar >/dev/null || die "the unpacked registry in $REGISTRY_APP has no runnable jar"
  printf '%s\n' "$want" >"$REGISTRY_DIR/app.sha256"
}

# The runnable jar of the unpacked Quarkus app: *-runner.jar (legacy-jar
# layout of the 3.0.x zips) or quarkus-run.jar (fast-jar layout, e.g. 3.3.x).
registry_jar() {
  local j
  for j in "$REGISTRY_APP/quarkus-run.jar" "$REGISTRY_APP"/*-runner.jar; do
    if [[ -f $j ]]; then printf '%s\n' "$j"; return 0; fi
  done
  return 1
}

# ------------------------------------------- secured listeners (tests only)

random_hex() { od -An -tx1 -N"$1" /dev/urandom | tr -d ' \n'; }

# The test user's password: generated once, kept across down/reset (the data
# may be deleted, the password stays; ensure_scram_users re-adds it).
sasl_password() {
  if [[ ! -s $SASL_PASSWORD_FILE ]]; then
    mkdir -p "$KAFKA_DIR"
    (umask 077 && printf 'test-only-%s\n' "$(random_hex 12)" >"$SASL_PASSWORD_FILE")
  fi
  local pw
  pw=$(<"$SASL_PASSWORD_FILE")
  [[ $pw =~ ^[A-Za-z0-9_-]+$ ]] || die "$SASL_PASSWORD_FILE must hold letters, digits, '-' or '_' only; delete it to generate a new one"
  printf '%s\n' "$pw"
}

scram_hash() { printf '%s:%s\n' "$SASL_USERNAME" "$(sasl_password)" | sha256sum | cut -d' ' -f1; }

# A self-signed CA and a broker certificate for 127.0.0.1/localhost, made
# once with keytool (part of every JDK): .stack/tls/ca.pem for clients,
# broker.p12 (key + chain) for the broker. Test-only: the keys sit in .stack/.
ensure_tls() {
  if [[ -s $TLS_DIR/broker.p12 && -s $TLS_DIR/ca.pem && -s $TLS_DIR/store-password ]]; then return 0; fi
  find_java
  local keytool=${JAVA%/*}/keytool
  [[ -x $keytool ]] || keytool=$(command -v keytool) || die "keytool (part of the JDK) is needed to make the stack's test certificates"
  log "generating a test-only CA and broker certificate in ${TLS_DIR#"$ROOT"/} ..."
  local tmp=$TLS_DIR.tmp pw
  rm -rf "$tmp"
  mkdir -p "$tmp"
  chmod 700 "$tmp"
  pw=$(random_hex 12)
  kt() { "$keytool" -J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC "$@" >>"$tmp/keytool.log" 2>&1 || {
    tail -n 20 "$tmp/keytool.log" >&2
    die "keytool $1 failed (see $tmp/keytool.log)"
  }; }
  kt -genkeypair -alias ca -keyalg RSA -keysize 2048 -validity 3650 -dname 'CN=cner stack TEST-ONLY CA' \
    -ext bc:c -ext KU=keyCertSign,cRLSign -keystore "$tmp/ca.p12" -storetype PKCS12 -storepass "$pw"
  kt -exportcert -rfc -alias ca -keystore "$tmp/ca.p12" -storepass "$pw" -file "$tmp/ca.pem"
  kt -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity 3650 -dname "CN=$HOST" \
    -keystore "$tmp/broker.p12" -storetype PKCS12 -storepass "$pw"
  kt -certreq -alias broker -keystore "$tmp/broker.p12" -storepass "$pw" -file "$tmp/broker.csr"
  kt -gencert -rfc -alias ca -keystore "$tmp/ca.p12" -storepass "$pw" -infile "$tmp/broker.csr" -outfile "$tmp/broker.pem" \
    -validity 3650 -ext "SAN=ip:$HOST,dns:localhost" -ext KU=digitalSignature,keyEncipherment -ext EKU=serverAuth
  kt -importcert -noprompt -alias ca -file "$tmp/ca.pem" -keystore "$tmp/broker.p12" -storepass "$pw"
  kt -importcert -alias broker -file "$tmp/broker.pem" -keystore "$tmp/broker.p12" -storepass "$pw"
  printf '%s\n' "$pw" >"$tmp/store-password"
  rm -f "$tmp/broker.csr"
  rm -rf "$TLS_DIR"
  mv "$tmp" "$TLS_DIR"
}

# The SCRAM credentials of the test user, when the cluster's metadata may
# lack them (data formatted by an older stack.sh, or a new password): added
# through the admin API. A fresh cluster gets them at format time instead.
ensure_scram_users() {
  local want have=
  want=$(scram_hash)
  [[ -f $SCRAM_MARKER ]] && have=$(<"$SCRAM_MARKER")
  [[ $have == "$want" ]] && return 0
  local pw
  pw=$(sasl_password)
  log "adding the SCRAM credentials of the test user $SASL_USERNAME"
  # one mechanism per call: KRaft refuses a request that replaces an existing
  # user's credentials for both mechanisms at once (DuplicateResourceException)
  local mechanism
  for mechanism in SCRAM-SHA-256 SCRAM-SHA-512; do
    KAFKA_TOOL_TIMEOUT=60 kafka_tool kafka.admin.ConfigCommand --bootstrap-server "$KAFKA_BROKERS" \
      --command-config "$KAFKA_ADMIN_CONF" --alter --entity-type users --entity-name "$SASL_USERNAME" \
      --add-config "$mechanism=[password=$pw]" >&2 ||
      die "could not add the $mechanism credentials of $SASL_USERNAME (see above)"
  done
  printf '%s\n' "$want" >"$SCRAM_MARKER"
}

write_secure_env() {
  (umask 077 && printf '%s\n' \
    "# scripts/stack.sh: the broker's secured listeners, for security tests only." \
    "# TEST-ONLY credentials and CA; never use them outside this local stack." \
    "CNER_STACK_PLAINTEXT_BROKERS=$KAFKA_BROKERS" \
    "CNER_STACK_SASL_BROKERS=$SASL_BROKERS" \
    "CNER_STACK_SSL_BROKERS=$SSL_BROKERS" \
    "CNER_STACK_SSL_CA_FILE=$TLS_DIR/ca.pem" \
    "CNER_STACK_SASL_USERNAME=$SASL_USERNAME" \
    "CNER_STACK_SASL_PASSWORD=$(sasl_password)" >"$SECURE_ENV")
}

# ------------------------------------------------------------------ processes

# Every process this script starts carries these two system properties; they
# identify it even if its pid file is lost (and protect against pid reuse).
marker() { printf -- '-Dcner.stack.service=%s -Dcner.stack.dir=%s' "$1" "$STATE"; }

# cmdline of a pid with NULs turned to spaces ("" if gone)
cmdline_of() { tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null || true; }

is_ours() { # SERVICE PID
  local cmd
  cmd=$(cmdline_of "$2")
  [[ -n $cmd && $cmd == *"$(marker "$1") "* ]]
}

# pid of the running SERVICE ("kafka" or "registry"), or nothing
service_pid() {
  local svc=$1 pidfile pid p
  pidfile=$STATE/$svc.pid
  if [[ -f $pidfile ]]; then
    pid=$(<"$pidfile")
    if [[ $pid =~ ^[0-9]+$ ]] && is_ours "$svc" "$pid"; then
      printf '%s\n' "$pid"
      return 0
    fi
  fi
  # pid file missing or stale: look for a process carrying our marker
  local candidates
  if command -v pgrep >/dev/null 2>&1; then
    candidates=$(pgrep -f -- "-Dcner\\.stack\\.service=$svc " || true)
  else
    candidates=$(cd /proc && printf '%s\n' [0-9]*)
  fi
  for p in $candidates; do
    if is_ours "$svc" "$p"; then
      printf '%s\n' "$p"
      return 0
    fi
  done
  return 0
}

# start SERVICE LOGFILE CMD...: detached (own session), pid written by the
# child itself before exec, so the pid file holds the java pid.
spawn() {
  local svc=$1 logfile=$2 pid i
  shift 2
  [[ -f $logfile ]] && mv -f "$logfile" "$logfile.1"
  rm -f "$STATE/$svc.pid"
  # 9>&-: do not hand the lock (see lock()) down to the long-lived service
  # shellcheck disable=SC2016 # expanded by the inner bash
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$STATE/$svc.pid" "$@" >"$logfile" 2>&1 </dev/null 9>&- &
  for ((i = 0; i < 50; i++)); do
    [[ -s $STATE/$svc.pid ]] && break
    sleep 0.1
  done
  [[ -s $STATE/$svc.pid ]] || die "could not start $svc"
  pid=$(<"$STATE/$svc.pid")
  log "started $svc (pid $pid, log ${logfile#"$ROOT"/})"
}

stop_service() {
  local svc=$1 pid i
  pid=$(service_pid "$svc")
  if [[ -z $pid ]]; then
    rm -f "$STATE/$svc.pid"
    log "$svc: not running"
    return 0
  fi
  log "$svc: stopping (pid $pid) ..."
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do # 30 s for a clean (controlled) shutdown
    is_ours "$svc" "$pid" || break
    sleep 0.1
  done
  if is_ours "$svc" "$pid"; then
    log "$svc: still running after 30 s, sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      is_ours "$svc" "$pid" || break
      sleep 0.1
    done
    if is_ours "$svc" "$pid"; then die "$svc (pid $pid) survived SIGKILL"; fi
  fi
  rm -f "$STATE/$svc.pid"
  log "$svc: stopped"
}

# ----------------------------------------------------------------- health

tcp_open() { # PORT
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null
}

http_code() { # URL -> status code, 000 when no answer
  local code=
  if command -v curl >/dev/null 2>&1; then
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1" 2>/dev/null) || true
  else
    local rest=${1#http://} hostport path
    hostport=${rest%%/*}
    path=/${rest#*/}
    # shellcheck disable=SC2016
    code=$(timeout 5 bash -c 'exec 3<>"/dev/tcp/${0%:*}/${0#*:}" || exit 1
      printf "GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" "$1" "$0" >&3
      read -r _ c _ <&3; printf "%s" "$c"' "$hostport" "$path" 2>/dev/null) || true
  fi
  printf '%s\n' "${code:-000}"
}

# Run a Kafka CLI class from the broker's classpath. With KAFKA_TOOL_TIMEOUT
# set (seconds), the JVM is killed after that long.
kafka_tool() { # CLASS ARGS...
  find_java
  [[ -d $KAFKA_LIBS ]] || die "Kafka is not resolved yet: run scripts/stack.sh up"
  local pre=()
  if [[ -n ${KAFKA_TOOL_TIMEOUT:-} ]]; then pre=(timeout "$KAFKA_TOOL_TIMEOUT"); fi
  "${pre[@]}" "$JAVA" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$SRC/kafka/log4j2.xml" \
    -Dcner.stack.log.level=WARN -Dcner.stack.log.target=SYSTEM_ERR \
    -cp "$KAFKA_LIBS/*" "$@"
}

# A real round trip: the admin client bootstraps, fetches metadata and lists
# topics. Needs the controller to have registered the broker (not just the
# socket being open).
kafka_answers() {
  tcp_open "$KAFKA_PORT" || return 1
  [[ -d $KAFKA_LIBS ]] || return 1
  printf 'request.timeout.ms=5000\ndefault.api.timeout.ms=10000\n' >"$KAFKA_ADMIN_CONF"
  KAFKA_TOOL_TIMEOUT=30 kafka_tool org.apache.kafka.tools.TopicCommand \
    --bootstrap-server "$KAFKA_BROKERS" --list --command-config "$KAFKA_ADMIN_CONF" >/dev/null 2>&1
}

registry_answers() {
  [[ $(http_code "http://$HOST:$REGISTRY_PORT$REGISTRY_PATH/subjects") == 200 ]]
}

# ----------------------------------------------------------------- start

kafka_ports_taken() {
  tcp_open "$KAFKA_PORT" || tcp_open "$CONTROLLER_PORT" || tcp_open "$SASL_PORT" || tcp_open "$SSL_PORT"
}
KAFKA_PORTS_TAKEN="port $KAFKA_PORT, $CONTROLLER_PORT, $SASL_PORT or $SSL_PORT on $HOST is taken by a process that stack.sh did not start; stop it or set CNER_STACK_KAFKA_PORT / CNER_STACK_KAFKA_CONTROLLER_PORT / CNER_STACK_KAFKA_SASL_PORT / CNER_STACK_KAFKA_SSL_PORT"

start_kafka() {
  find_java
  if kafka_ports_taken; then die "$KAFKA_PORTS_TAKEN"; fi
  mkdir -p "$KAFKA_DATA"
  ensure_tls
  local pw
  pw=$(sasl_password)
  (umask 077 && sed -e "s|@KAFKA_PORT@|$KAFKA_PORT|g" \
    -e "s|@CONTROLLER_PORT@|$CONTROLLER_PORT|g" \
    -e "s|@SASL_PORT@|$SASL_PORT|g" \
    -e "s|@SSL_PORT@|$SSL_PORT|g" \
    -e "s|@DATA_DIR@|$KAFKA_DATA|g" \
    -e "s|@TLS_DIR@|$TLS_DIR|g" \
    -e "s|@TLS_PASSWORD@|$(<"$TLS_DIR/store-password")|g" \
    -e "s|@SASL_USERNAME@|$SASL_USERNAME|g" \
    -e "s|@SASL_PASSWORD@|$pw|g" \
    "$SRC/kafka/server.properties.in" >"$KAFKA_CONF")
  if [[ ! -f $KAFKA_DATA/meta.properties ]]; then
    log "formatting KRaft storage in ${KAFKA_DATA#"$ROOT"/} (cluster id $KAFKA_CLUSTER_ID)"
    rm -f "$SCRAM_MARKER"
    kafka_tool kafka.tools.StorageTool format --ignore-formatted \
      --cluster-id "$KAFKA_CLUSTER_ID" --config "$KAFKA_CONF" \
      --add-scram "SCRAM-SHA-256=[name=$SASL_USERNAME,password=$pw]" \
      --add-scram "SCRAM-SHA-512=[name=$SASL_USERNAME,password=$pw]" >&2 ||
      die "formatting the Kafka storage failed"
    scram_hash >"$SCRAM_MARKER"
  fi
  # shellcheck disable=SC2046 # marker is two words on purpose
  spawn kafka "$KAFKA_LOG" "$JAVA" $(marker kafka) \
    -Xms128m -Xmx"$KAFKA_HEAP" -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$SRC/kafka/log4j2.xml" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_CONF"
  write_secure_env
}

start_registry() {
  find_java
  if tcp_open "$REGISTRY_PORT"; then
    die "port $REGISTRY_PORT on $HOST is taken by a process that stack.sh did not start; stop it or set CNER_STACK_REGISTRY_PORT"
  fi
  local jar
  jar=$(registry_jar) || die "no registry jar in $REGISTRY_APP"
  # Confluent-compatible API (ccompat) settings:
  # - legacy-id-mode off: the "id" returned on register and used in the
  #   Confluent wire format is the content id, and GET /schemas/ids/{id}
  #   resolves content ids, so the two agree (and identical schemas under
  #   different subjects share one id, as with Confluent).
  # - canonical hash on: re-registering a schema that differs only in
  #   formatting finds the existing one instead of adding a version.
  # - deletion on: tests may DELETE subjects/versions to clean up.
  # Storage: kafkasql, the registry's data kept in a topic of the broker
  # (kafkasql-journal), as Confluent's registry keeps _schemas: schemas and
  # their ids survive `down` and `up` exactly as long as the broker's data does,
  # so records framed with an old id still decode after a restart.
  # shellcheck disable=SC2046 # marker is two words on purpose
  (cd "$REGISTRY_APP" && spawn registry "$REGISTRY_LOG" "$JAVA" $(marker registry) \
    -Xms64m -Xmx"$REGISTRY_HEAP" -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError \
    -Djava.util.logging.manager=org.jboss.logmanager.LogManager \
    -Dquarkus.http.host="$HOST" -Dquarkus.http.port="$REGISTRY_PORT" \
    -Dquarkus.log.console.format='%d{yyyy-MM-dd HH:mm:ss,SSS} %p [%c{3.}] (%t) %m%n' \
    -Dapicurio.ccompat.legacy-id-mode.enabled=false \
    -Dapicurio.ccompat.use-canonical-hash=true \
    -Dapicurio.rest.deletion.group.enabled=true \
    -Dapicurio.rest.deletion.artifact.enabled=true \
    -Dapicurio.rest.deletion.artifact-version.enabled=true \
    -Dapicurio.storage.kind=kafkasql \
    -Dapicurio.kafkasql.bootstrap.servers="$KAFKA_BROKERS" \
    -jar "$jar")
}

fail_with_log() { # SERVICE LOGFILE MESSAGE
  printf '[stack] ERROR: %s\n' "$3" >&2
  if [[ -f $2 ]]; then
    printf '[stack] ---- last 40 lines of %s ----\n' "$2" >&2
    tail -n 40 "$2" >&2
    printf '[stack] ----\n' >&2
  fi
  printf '[stack] (stop what did start with: scripts/stack.sh down)\n' >&2
  exit 1
}

# Polls CHECK each second until it succeeds; fails with SERVICE's log when the
# service exits or DEADLINE (in $SECONDS) passes.
wait_healthy() { # SERVICE LOGFILE CHECK NAME WHERE DEADLINE T0
  until "$3"; do
    [[ -n $(service_pid "$1") ]] || fail_with_log "$1" "$2" "$4 exited during start-up"
    ((SECONDS < $6)) || fail_with_log "$1" "$2" "$4 did not answer $5 within ${TIMEOUT}s"
    sleep 1
  done
  log "$1: healthy ($((SECONDS - $7))s)"
}

print_env() { printf 'KAFKA_BROKERS=%s\nSCHEMA_REGISTRY_URL=%s\n' "$KAFKA_BROKERS" "$SCHEMA_REGISTRY_URL"; }

cmd_up() {
  mkdir -p "$STATE"
  find_java
  local kpid rpid
  kpid=$(service_pid kafka)
  rpid=$(service_pid registry)
  if [[ -n $kpid && -n $rpid ]] && registry_answers && kafka_answers; then
    log "already running and healthy (kafka pid $kpid, registry pid $rpid)"
    if [[ -f $SECURE_ENV ]]; then ensure_scram_users; else warn_if_not_secured; fi
    print_env
    return 0
  fi
  local t0=$SECONDS
  # refuse before starting anything if a foreign process holds a port
  if [[ -z $kpid ]] && kafka_ports_taken; then die "$KAFKA_PORTS_TAKEN"; fi
  if [[ -z $rpid ]] && tcp_open "$REGISTRY_PORT"; then
    die "port $REGISTRY_PORT on $HOST is taken by a process that stack.sh did not start; stop it or set CNER_STACK_REGISTRY_PORT"
  fi
  # (never swap the jars under a running service)
  if [[ -z $kpid ]]; then resolve_kafka; fi
  if [[ -z $rpid ]]; then resolve_registry; fi
  if [[ -z $kpid ]]; then start_kafka; else log "kafka: already running (pid $kpid)"; fi

  # The registry stores its data in the broker (kafkasql): it starts once kafka answers.
  local deadline=$((SECONDS + TIMEOUT))
  log "waiting up to ${TIMEOUT}s for kafka on $KAFKA_BROKERS, then for the registry on $SCHEMA_REGISTRY_URL ..."
  wait_healthy kafka "$KAFKA_LOG" kafka_answers "kafka" "on $KAFKA_BROKERS" "$deadline" "$t0"
  if [[ -z $rpid ]]; then start_registry; else log "registry: already running (pid $rpid)"; fi
  wait_healthy registry "$REGISTRY_LOG" registry_answers "the registry" "on $SCHEMA_REGISTRY_URL/subjects" "$deadline" "$t0"
  if [[ -f $SECURE_ENV ]]; then ensure_scram_users; else warn_if_not_secured; fi
  log "up in $((SECONDS - t0))s"
  print_env
}

# A broker started by a stack.sh from before the secured listeners keeps
# running without them until it is restarted.
warn_if_not_secured() {
  [[ -f $SECURE_ENV ]] ||
    log "note: the running broker has no secured listeners (started by an older stack.sh); scripts/stack.sh restart adds them"
}

cmd_down() {
  stop_service registry
  stop_service kafka
  rm -f "$SECURE_ENV"
}

cmd_restart_kafka() {
  [[ -n $(service_pid kafka) ]] || die "kafka is not running (scripts/stack.sh up)"
  local t0=$SECONDS
  stop_service kafka
  start_kafka
  wait_healthy kafka "$KAFKA_LOG" kafka_answers "kafka" "on $KAFKA_BROKERS" "$((SECONDS + TIMEOUT))" "$t0"
  log "kafka restarted in $((SECONDS - t0))s"
}

cmd_status() {
  local rc=0 pid
  pid=$(service_pid kafka)
  if [[ -z $pid ]]; then
    if tcp_open "$KAFKA_PORT"; then
      echo "kafka:    not running (port $KAFKA_PORT is taken by a process stack.sh did not start)"
    else
      echo "kafka:    not running"
    fi
    rc=1
  elif kafka_answers; then
    echo "kafka:    running (pid $pid), healthy on $KAFKA_BROKERS"
  else
    echo "kafka:    running (pid $pid), NOT answering on $KAFKA_BROKERS (starting? see ${KAFKA_LOG#"$ROOT"/})"
    rc=1
  fi
  pid=$(service_pid registry)
  if [[ -z $pid ]]; then
    if tcp_open "$REGISTRY_PORT"; then
      echo "registry: not running (port $REGISTRY_PORT is taken by a process stack.sh did not start)"
    else
      echo "registry: not running"
    fi
    rc=1
  elif registry_answers; then
    echo "registry: running (pid $pid), healthy on $SCHEMA_REGISTRY_URL"
  else
    echo "registry: running (pid $pid), NOT answering on $SCHEMA_REGISTRY_URL (starting? see ${REGISTRY_LOG#"$ROOT"/})"
    rc=1
  fi
  return "$rc"
}

cmd_reset() {
  cmd_down
  log "deleting data and logs (resolved artifacts are kept)"
  rm -rf "$KAFKA_DATA" "$KAFKA_CONF" "$KAFKA_ADMIN_CONF" "$SCRAM_MARKER" \
    "$KAFKA_LOG" "$KAFKA_LOG.1" "$REGISTRY_LOG" "$REGISTRY_LOG.1"
}

# Serialise concurrent invocations (e.g. parallel test runners calling `up`).
lock() {
  mkdir -p "$STATE"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$STATE/.lock"
    flock -w 600 9 || die "another scripts/stack.sh is still running (lock $STATE/.lock)"
  fi
}

main() {
  local cmd=${1:-}
  [[ $# -gt 0 ]] && shift
  case $cmd in
  up) lock; cmd_up ;;
  down | stop) lock; cmd_down ;;
  status) cmd_status ;;
  reset) lock; cmd_reset ;;
  restart) lock; cmd_down; cmd_up ;;
  restart-kafka) lock; cmd_restart_kafka ;;
  resolve) lock; mkdir -p "$STATE"; resolve_kafka; resolve_registry ;;
  env) printf 'export KAFKA_BROKERS=%s\nexport SCHEMA_REGISTRY_URL=%s\n' "$KAFKA_BROKERS" "$SCHEMA_REGISTRY_URL" ;;
  env-secure)
    [[ -f $SECURE_ENV ]] || die "no secured listeners: the broker is not running, or was started by an older stack.sh (scripts/stack.sh restart)"
    sed -n 's/^CNER_STACK_/export CNER_STACK_/p' "$SECURE_ENV"
    ;;
  kafka-tool)
    [[ $# -gt 0 ]] || die "usage: scripts/stack.sh kafka-tool CLASS [ARGS...]"
    kafka_tool "$@"
    ;;
  -h | --help | help) usage ;;
  *) usage; exit 2 ;;
  esac
}

main "$@"
