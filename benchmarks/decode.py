"""Kept for the commands in older notes: runs `evstream bench decode` with the same arguments
(`--markdown` is accepted and ignored: the tables are always printed). See
`evstream bench --help` and the README's Performance section."""

import sys

from evstream.runtime.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", "decode", *(a for a in sys.argv[1:] if a != "--markdown")]))
