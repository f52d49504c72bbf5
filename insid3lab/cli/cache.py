"""``insid3lab cache info|clear``: the positional-basis disk cache."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "cmd_cache"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("cache", help="inspect or clear the positional-basis cache")
    p.add_argument("action", choices=["info", "clear"])
    p.set_defaults(func=cmd_cache)
    return p


def cmd_cache(args) -> int:
    from insid3lab.model import basis_cache as cache

    if args.action == "clear":
        n = cache.clear_cache()
        print(f"removed {n} cached basis file(s) from {cache.cache_dir()}")
    else:
        d = cache.cache_dir() / "basis"
        files = sorted(d.glob("*.pt")) if d.is_dir() else []
        mb = sum(f.stat().st_size for f in files) / 1e6
        print(f"{cache.cache_dir()}: {len(files)} cached basis file(s), {mb:.1f} MB")
    return 0
