"""Developer commands: `python -m reels_dev token --user alice | keys | status | reset | ports`."""

from __future__ import annotations

import argparse

from reels_dev.keys import ensure_dev_keys, mint_token


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m reels_dev")
    sub = parser.add_subparsers(dest="command", required=True)
    token = sub.add_parser("token", help="print a dev JWT that Envoy and the services accept")
    token.add_argument("--user", required=True, help="user id (the token's subject)")
    token.add_argument("--ttl", type=int, default=24 * 3600, help="lifetime in seconds")
    token.add_argument(
        "--role",
        action="append",
        default=[],
        help="a role for the token's `roles` claim (repeatable), e.g. --role moderator",
    )
    sub.add_parser("keys", help="create the dev key pair and JWKS if missing")
    sub.add_parser("status", help="health of every part of the local mesh (make status)")
    sub.add_parser("reset", help="drop this checkout's database and stored data (make reset)")
    sub.add_parser("ports", help="`part port` lines: what make up listens on (scripts/up.sh)")
    args = parser.parse_args()
    if args.command == "token":
        print(mint_token(args.user, ttl_seconds=args.ttl, roles=args.role))
    elif args.command == "keys":
        cfg = ensure_dev_keys()
        print(f"keys in {cfg.private_key_path.parent}")
    elif args.command == "status":
        from reels_dev.status import main as status

        raise SystemExit(status())
    elif args.command == "reset":
        from reels_dev.reset import main as reset

        reset()
    elif args.command == "ports":
        from reels_dev.status import ports

        for part, port in ports().items():
            print(part, port)


if __name__ == "__main__":
    main()
