"""``python -m reels.db upgrade|downgrade [REVISION]``: migrate the database.

``upgrade`` creates the database first when it is missing, so a fresh machine
(``make up``) needs one command.
"""

from __future__ import annotations

import argparse
import asyncio

from reels.db.engine import create_database, database_url
from reels.db.migrate import downgrade, migrate


async def _main(args: argparse.Namespace) -> None:
    url = args.url or database_url()
    if args.action == "upgrade" and await create_database(url):
        print(f"created database {url.rsplit('/', 1)[-1]}")
    if args.action == "upgrade":
        await migrate(url, args.revision or "heads")
    else:
        await downgrade(url, args.revision or "-1")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m reels.db", description=__doc__)
    parser.add_argument("action", choices=["upgrade", "downgrade"])
    parser.add_argument("revision", nargs="?", help="target (default: head / one step back)")
    parser.add_argument("--url", help="database URL (default: $REELS_DATABASE_URL)")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
