"""`productimon-token`: issue a dashboard token for a user (until accounts and login arrive)."""

from __future__ import annotations

import argparse

from gateway.tokens import DASHBOARD_SCOPE, ensure_signing_key, issue_token
from infra.cli import command
from infra.settings import load_settings


@command("productimon-token")
def main() -> int:
    parser = argparse.ArgumentParser(prog="productimon-token", description="Issue a dashboard token.")
    parser.add_argument("--user", required=True, help="the user the token signs in")
    parser.add_argument("--ttl", type=int, help="lifetime in seconds (default: PRODUCTIMON_TOKEN_TTL_SECONDS)")
    args = parser.parse_args()
    settings = load_settings()
    private_pem, _ = ensure_signing_key(settings.keys_dir)
    token = issue_token(private_pem, args.user, DASHBOARD_SCOPE, args.ttl or settings.token_ttl_seconds)
    print(token)
    print(f"http://{settings.dashboard_host}:{settings.dashboard_port}/?token={token}")
    return 0
