# SPDX-License-Identifier: MIT
"""roff output shared by the page generators: escaping, the .TH line, files."""
import os
import sys
import time

VERSION = os.environ.get("XVL_VERSION", "")
DATE = (time.strftime("%Y-%m-%d", time.gmtime(int(os.environ["SOURCE_DATE_EPOCH"])))
        if os.environ.get("SOURCE_DATE_EPOCH") else "")
SOURCE = "xvloop " + VERSION if VERSION else "xvloop"

# Marks what a page could not be made from; tests/e2e/man.sh fails on it.
DRIFT = "XVLMAN-DRIFT"


def esc(text):
    """Plain text -> roff text (no requests); non-ASCII as \\[uXXXX]."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "".join(c if ord(c) < 128 else "\\[u%04X]" % ord(c) for c in text)


def line_safe(line):
    """A roff text line must not start with a control character."""
    if line.startswith((".", "'")):
        return "\\&" + line
    return line


def th(name, section, manual):
    return '.TH "%s" "%s" "%s" "%s" "%s"\n' % (name.upper().replace("-", "\\-"),
                                              section, DATE, SOURCE, manual)


def see_also(pages):
    """[(name, section)] -> the SEE ALSO section."""
    return ".SH SEE ALSO\n" + ",\n".join(".BR %s (%s)" % (esc(n), s) for n, s in pages) + "\n"


def warn(msg):
    print("xvlman: warning: " + msg, file=sys.stderr)


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
