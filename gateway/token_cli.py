"""`productimon-token`: issue a dashboard token for an account, as the operator (e.g. for support)."""

from __future__ import annotations

import argparse

from gateway.identity_store import IdentityStore
from gateway.tokens import DASHBOARD_SCOPE, ensure_signing_key, issue_token
from plumbing.cli import command
from plumbing.settings import load_settings


@command("productimon-token")
def main() -> int:
    parser = argparse.ArgumentParser(prog="productimon-token", description="Issue a dashboard token.")
    parser.add_argument("--email", required=True, help="the account the token signs in")
    parser.add_argument("--ttl", type=int, help="lifetime in seconds (default: PRODUCTIMON_TOKEN_TTL_SECONDS)")
    args = parser.parse_args()
    settings = load_settings()
    store = IdentityStore(settings.identity_store_path)
    try:
        user = store.user_by_email(args.email)
        issued_at = store.token_issue_time(user.id)
    finally:
        store.close()
    private_pem, _ = ensure_signing_key(settings.keys_dir)
    token = issue_token(private_pem, user.id, DASHBOARD_SCOPE, args.ttl or settings.token_ttl_seconds, now=issued_at)
    print(token)
    print(f"https://{settings.dashboard_host}:{settings.dashboard_port}/?token={token}")
    return 0
