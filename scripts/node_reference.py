"""Write the node reference page, generated from the built-in node types' schemas.

    .venv/bin/python scripts/node_reference.py docs/nodes.md   # write the page
    .venv/bin/python scripts/node_reference.py                 # print it

tests/unit/test_node_reference.py compares the committed page with this output.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from triggerd.nodes.reference import render_reference
from triggerd.nodes.registry import builtin_node_types


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="where to write (default: stdout)")
    args = parser.parse_args()
    page = render_reference(builtin_node_types())
    if args.path is None:
        print(page, end="")
    else:
        args.path.write_text(page, encoding="utf-8")


if __name__ == "__main__":
    main()
