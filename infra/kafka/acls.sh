#!/bin/sh
# The kafka-acls one-shot in infra/compose.yaml (apache/kafka image, as the admin principal): gives each service
# exactly the rights in the table below, and sets the gateway's and the worker's SCRAM passwords to the ones in
# .env, so that a password changed there takes effect on the next `docker compose up -d`. Idempotent: an ACL or
# password that is already there stays. docs/transport-security.md shows the same table, and
# tests/integration/test_compose_transport.py checks that the two agree.
set -eu
umask 077

fail() {
    echo "kafka-acls: $*" >&2
    exit 1
}

password() {
    value=$(printenv "$1" || true)
    [ -n "$value" ] || fail "$1 is not set"
    case "$value" in
        *[!A-Za-z0-9_-]*) fail "$1 may hold only letters, digits, '_' and '-'" ;;
    esac
    printf '%s' "$value"
}

# The apache/kafka image's tools; the variable exists for tests/integration/test_compose_transport.py only.
kafka=${PRODUCTIMON_KAFKA_HOME:-/opt/kafka}
bootstrap=${PRODUCTIMON_KAFKA_BOOTSTRAP:-kafka:9092}
# The names the services use (plumbing/settings.py defaults; the compose file sets only the group).
intervals=${PRODUCTIMON_INTERVALS_TOPIC:-activity.intervals}
identity=${PRODUCTIMON_IDENTITY_TOPIC:-identity.events}
deadletter=${PRODUCTIMON_DEADLETTER_TOPIC:-activity.deadletter}
group=${PRODUCTIMON_WORKER_ID:-productimon-warehouse-writer}

admin=$(password PRODUCTIMON_KAFKA_ADMIN_PASSWORD)
config=$(mktemp)
trap 'rm -f "$config"' EXIT
{
    echo "security.protocol=SASL_SSL"
    echo "sasl.mechanism=SCRAM-SHA-512"
    echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$admin\";"
    echo "ssl.truststore.type=PEM"
    echo "ssl.truststore.location=${PRODUCTIMON_KAFKA_CA_FILE:?}"
} > "$config"

# principal  operation  resource  pattern  name
ACLS=$(cat <<TABLE
gateway Write Topic literal $intervals
gateway Describe Topic literal $intervals
gateway Write Topic literal $identity
gateway Describe Topic literal $identity
worker Read Topic literal $intervals
worker Describe Topic literal $intervals
worker Read Topic literal $identity
worker Describe Topic literal $identity
worker Write Topic literal $deadletter
worker Describe Topic literal $deadletter
worker Read Group literal $group
TABLE
)

echo "$ACLS" | while read -r principal operation resource pattern name; do
    case "$resource" in
        Topic) target="--topic $name" ;;
        Group) target="--group $name" ;;
        *) fail "unknown resource type $resource" ;;
    esac
    # shellcheck disable=SC2086 # $target is two words on purpose
    "$kafka/bin/kafka-acls.sh" --bootstrap-server "$bootstrap" --command-config "$config" --add \
        --allow-principal "User:$principal" --operation "$operation" $target --resource-pattern-type "$pattern" \
        > /dev/null
    echo "allowed: User:$principal $operation $resource:$pattern:$name"
done

for user in gateway worker; do
    variable=PRODUCTIMON_KAFKA_$(echo "$user" | tr '[:lower:]' '[:upper:]')_PASSWORD
    secret=$(password "$variable")
    "$kafka/bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config "$config" --alter \
        --entity-type users --entity-name "$user" --add-config "SCRAM-SHA-512=[password=$secret]" > /dev/null
    echo "SCRAM-SHA-512 login of $user set from $variable"
done
