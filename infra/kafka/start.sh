#!/bin/sh
# The kafka service's command in infra/compose.yaml (the apache/kafka image's own start script is not used):
# make this start's configuration from infra/kafka/server.properties and the secrets, format the storage on the
# first start with the SCRAM logins of admin, gateway and worker, then run Kafka in this process (PID 1).
# docs/transport-security.md says why each setting is what it is.
set -eu
umask 077

# Paths in the apache/kafka image; the variables exist for tests/integration/test_compose_transport.py only.
kafka=${PRODUCTIMON_KAFKA_HOME:-/opt/kafka}
tls=${PRODUCTIMON_KAFKA_TLS_DIR:-/etc/kafka/tls}
template=${PRODUCTIMON_KAFKA_TEMPLATE:-/opt/productimon/server.properties}
conf=$kafka/config/productimon
mkdir -p "$conf"

fail() {
    echo "kafka start: $*" >&2
    exit 1
}

# Passwords go into SCRAM and JAAS strings unquoted: only characters that need no quoting are accepted
# (compose.env.example generates them with secrets.token_urlsafe).
password() {
    value=$(printenv "$1" || true)
    [ -n "$value" ] || fail "$1 is not set"
    case "$value" in
        *[!A-Za-z0-9_-]*) fail "$1 may hold only letters, digits, '_' and '-'" ;;
    esac
    printf '%s' "$value"
}

admin=$(password PRODUCTIMON_KAFKA_ADMIN_PASSWORD)
gateway=$(password PRODUCTIMON_KAFKA_GATEWAY_PASSWORD)
worker=$(password PRODUCTIMON_KAFKA_WORKER_PASSWORD)
[ -n "${CLUSTER_ID:-}" ] || fail "CLUSTER_ID is not set"
for file in server.crt server.key ca.crt; do
    [ -r "$tls/$file" ] || fail "$tls/$file is missing or unreadable (tls-init makes it)"
done

# A PEM value on one line: Kafka's PEM parser ignores the whitespace inside, and a properties value ends at a
# line's end. Inline values let the key stay unencrypted PKCS#8 (a PEM keystore file would need a key password).
one_line() {
    tr '\n' ' ' < "$1"
}

{
    cat "$template"
    echo
    echo "node.id=${KAFKA_NODE_ID:-1}"
    echo "ssl.keystore.key=$(one_line "$tls/server.key")"
    echo "ssl.keystore.certificate.chain=$(one_line "$tls/server.crt")"
    # The broker's own login on its listener (inter-broker traffic), and what it accepts from clients.
    echo "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$admin\";"
} > "$conf/server.properties"

# What the health check and an operator's kafka-*.sh commands inside this container use: the admin login.
{
    echo "security.protocol=SASL_SSL"
    echo "sasl.mechanism=SCRAM-SHA-512"
    echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$admin\";"
    echo "ssl.truststore.type=PEM"
    echo "ssl.truststore.location=$tls/ca.crt"
} > "$conf/admin.properties"

# First start only: an already formatted log directory is left as it is (--ignore-formatted), logins included.
# Later password changes: docs/transport-security.md, "Rotating the passwords".
"$kafka/bin/kafka-storage.sh" format --ignore-formatted \
    --config "$conf/server.properties" --cluster-id "$CLUSTER_ID" \
    --add-scram "SCRAM-SHA-512=[name=admin,password=$admin]" \
    --add-scram "SCRAM-SHA-512=[name=gateway,password=$gateway]" \
    --add-scram "SCRAM-SHA-512=[name=worker,password=$worker]"

exec "$kafka/bin/kafka-server-start.sh" "$conf/server.properties"
