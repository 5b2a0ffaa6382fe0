#!/bin/sh
# The image's entry point: one short name per Productimon service, or any other command as given.
# Each service replaces this shell (exec), so it is PID 1 and receives the container's SIGTERM.
set -eu
# Owner-only files and directories for every service, the dashboard (streamlit) included.
umask 077

case "${1:-help}" in
    gateway)
        shift
        exec productimon-gateway "$@"
        ;;
    worker)
        shift
        exec productimon-worker "$@"
        ;;
    dashboard)
        shift
        # A wheel install puts dashboard/ in site-packages; ask Python where. serve.py serves app.py with the
        # headers that forbid framing its pages.
        app="$(python -c 'import dashboard, pathlib; print(pathlib.Path(dashboard.__file__).parent / "serve.py")')"
        # HTTPS with the server certificate pki-init made (it names PRODUCTIMON_PUBLIC_NAME): people type
        # their passwords here.
        pki="${PRODUCTIMON_DATA_DIR:-/var/lib/productimon}/pki"
        exec python -m streamlit run "$app" \
            --server.address "${PRODUCTIMON_DASHBOARD_HOST:-0.0.0.0}" \
            --server.port "${PRODUCTIMON_DASHBOARD_PORT:-8501}" \
            --server.headless true \
            --browser.gatherUsageStats false \
            --client.toolbarMode viewer \
            --server.maxUploadSize 1024 \
            --server.sslCertFile "$pki/server.crt" \
            --server.sslKeyFile "$pki/server.key" \
            "$@"
        ;;
    pki-init)
        shift
        exec productimon-pki init "$@"
        ;;
    topics)
        shift
        exec productimon-topics "$@"
        ;;
    migrate)
        shift
        exec productimon-migrate "$@"
        ;;
    help | --help | -h)
        echo "usage: productimon-entrypoint gateway|worker|dashboard|pki-init [--name NAME...]|topics|migrate|COMMAND..."
        ;;
    *)
        exec "$@"
        ;;
esac
