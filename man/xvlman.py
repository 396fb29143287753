#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generate xvloop's man pages from the one source of each text.

  xvlman.py help XVL OUTDIR CMD...     section 1 (man1_help.py): `XVL --help`
                                       -> xvl.1, `XVL CMD --help` -> xvl-CMD.1
  xvlman.py api HEADER MAP OUTDIR [HEADER...]
                                       section 3 (man3_header.py): the comment
                                       above each prototype of the HEADERs, one page
                                       per symbol of the version script MAP,
                                       and libxvloop.3 (the file comment)
  xvlman.py md DOC OUT NAME SUMMARY HEADING...
                                       section 5 (man5_markdown.py): the named
                                       '## HEADING' sections of DOC

Nothing is written by hand here: a page is the text it is made from, set
in roff.  The build runs this (man/meson.build); tests/e2e/man.sh renders
every page.
"""
import sys

from man1_help import cmd_help
from man3_header import api_pages
from man5_markdown import md_page


def main(argv):
    if len(argv) >= 4 and argv[1] == "help":
        cmd_help(argv[2], argv[3], argv[4:])
    elif len(argv) >= 5 and argv[1] == "api":
        api_pages(argv[2], argv[3], argv[4], argv[5:])
    elif len(argv) >= 7 and argv[1] == "md":
        md_page(argv[2], argv[3], argv[4], argv[5], argv[6:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
