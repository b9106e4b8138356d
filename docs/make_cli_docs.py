"""Rewrite the generated parts of docs/cli.md from the code (defaults, help texts).

    python docs/make_cli_docs.py          # rewrite docs/cli.md in place
    python docs/make_cli_docs.py --check  # exit 1 if it is stale (the tests do the same)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_specdip.cli.helptext import replace_generated

DOC = Path(__file__).with_name("cli.md")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is stale")
    args = parser.parse_args(argv)
    text = DOC.read_text(encoding="utf-8")
    fresh = replace_generated(text)
    if args.check:
        print("docs/cli.md is " + ("up to date" if fresh == text else "stale"))
        return 0 if fresh == text else 1
    DOC.write_text(fresh, encoding="utf-8")
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
