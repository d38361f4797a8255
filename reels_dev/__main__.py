"""Developer commands: `python -m reels_dev token --user alice`, `python -m reels_dev keys`."""

from __future__ import annotations

import argparse

from reels_dev.keys import ensure_dev_keys, mint_token


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m reels_dev")
    sub = parser.add_subparsers(dest="command", required=True)
    token = sub.add_parser("token", help="print a dev JWT that Envoy and the services accept")
    token.add_argument("--user", required=True, help="user id (the token's subject)")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    sub.add_parser("keys", help="create the dev key pair and JWKS if missing")
    args = parser.parse_args()
    if args.command == "token":
        print(mint_token(args.user, ttl_seconds=args.ttl))
    elif args.command == "keys":
        cfg = ensure_dev_keys()
        print(f"keys in {cfg.private_key_path.parent}")


if __name__ == "__main__":
    main()
