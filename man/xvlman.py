#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Generate xvloop's man pages from the one source of each text.

  xvlman.py help XVL OUTDIR CMD...     section 1: `XVL --help` -> xvl.1 and
                                       `XVL CMD --help` -> xvl-CMD.1
  xvlman.py api HEADER MAP OUTDIR      section 3: the comment above each
                                       prototype of HEADER; one page per
                                       symbol of the version script MAP
                                       (must match the header's functions),
                                       plus libxvloop.3 (the file comment)
  xvlman.py md DOC OUT NAME SUMMARY HEADING...
                                       section 5: the named '## HEADING'
                                       sections (with their subsections) of
                                       the markdown file DOC

Nothing is written by hand here: a page is the text it is made from, set
in roff.  The build runs this; tests/e2e/man.sh renders every page.
"""
import os
import re
import subprocess
import sys
import time

VERSION = os.environ.get("XVL_VERSION", "")
DATE = (time.strftime("%Y-%m-%d", time.gmtime(int(os.environ["SOURCE_DATE_EPOCH"])))
        if os.environ.get("SOURCE_DATE_EPOCH") else "")
SOURCE = "xvloop " + VERSION if VERSION else "xvloop"


def esc(text):
    """Plain text -> roff text (no requests)."""
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


# Marks what a page could not be made from; tests/e2e/man.sh fails on it.
DRIFT = "XVLMAN-DRIFT"


def warn(msg):
    print("xvlman: warning: " + msg, file=sys.stderr)


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ---------------------------------------------------------------- section 1

HEADING = re.compile(r"^[A-Z][A-Z0-9 ]*[A-Z0-9]$")
LISTY = re.compile(r"[^.:;?!\s] {2,}\S")


def run_help(xvl, args):
    out = subprocess.run([xvl] + args + ["--help"], check=True, capture_output=True, text=True)
    return out.stdout


def help_sections(text):
    """[(HEADING, [body lines])] of a --help text laid out as a man page."""
    sections = []
    for line in text.rstrip("\n").split("\n"):
        line = line.rstrip()
        if HEADING.match(line):
            sections.append((line, []))
        elif sections:
            sections[-1][1].append(line)
        elif line:
            raise SystemExit("xvlman: --help text does not start with a HEADING: %r" % line)
    return sections


def name_line(body):
    """NAME body ('xvl blk - what', continuation lines) -> 'xvl\\-blk \\- what'."""
    entries = []
    for line in body:
        s = line.strip()
        if not s:
            continue
        m = re.match(r"^(xvl(?: [a-z][a-z0-9-]*)?)\s+-\s+(.*)$", s)
        if m:
            entries.append([m.group(1).replace(" ", "-"), m.group(2)])
        elif entries:
            entries[-1][1] += " " + s
        else:
            raise SystemExit("xvlman: NAME line not 'xvl CMD - summary': %r" % s)
    names = ", ".join(esc(n) for n, _ in entries)
    return names + " \\- " + esc("; ".join(d for _, d in entries))


def blocks(body):
    """Split body lines into blocks separated by blank lines."""
    cur = []
    for line in body:
        if line.strip():
            cur.append(line)
        elif cur:
            yield cur
            cur = []
    if cur:
        yield cur


def indent_of(line):
    return len(line) - len(line.lstrip(" "))


def render_block(block):
    base = min(indent_of(l) for l in block)
    prose = all(indent_of(l) == base and not LISTY.search(l.strip()) for l in block)
    if len(block) > 1 and all(l.strip().startswith("xvl ") for l in block):
        prose = False  # command lines, one per line
    if prose:
        return ".PP\n" + "\n".join(line_safe(esc(l.strip())) for l in block) + "\n"
    out = [".PP", ".nf"]
    for l in block:
        out.append(line_safe(esc(l[base:])))
    out.append(".fi")
    return "\n".join(out) + "\n"


def help_page(text, name, see_also):
    sections = help_sections(text)
    if not sections or sections[0][0] != "NAME":
        raise SystemExit("xvlman: %s --help has no NAME section" % name)
    out = [th(name, "1", "xvloop manual"), ".SH NAME\n", name_line(sections[0][1]) + "\n"]
    for head, body in sections[1:]:
        out.append(".SH %s\n" % esc(head))
        for b in blocks(body):
            out.append(render_block(b))
    out.append(".SH SEE ALSO\n")
    out.append(",\n".join(".BR %s (%s)" % (esc(n), s) for n, s in see_also) + "\n")
    return "".join(out)


def help_commands(text):
    """Subcommands named in the COMMANDS section of `xvl --help`."""
    for head, body in help_sections(text):
        if head == "COMMANDS":
            return [m.group(1) for m in (re.match(r"^ {4}([a-z][a-z0-9-]*)  ", l) for l in body) if m]
    return []


def cmd_help(xvl, outdir, cmds):
    top = run_help(xvl, [])
    listed = help_commands(top)
    if sorted(listed) != sorted(cmds):
        # Not fatal (the build goes on); tests/e2e/man.sh fails on it.
        warn("`xvl --help` lists %s but man/meson.build has %s: update xvl_subcommands there"
             % (listed, cmds))
    pages = [("xvl", "1")] + [("xvl-" + c, "1") for c in cmds]
    extra = [("libxvloop", "3"), ("xvloop-partitioner", "5"), ("xvloop-window", "5")]
    write(os.path.join(outdir, "xvl.1"),
          help_page(top, "xvl", [p for p in pages if p[0] != "xvl"] + extra))
    for c in cmds:
        write(os.path.join(outdir, "xvl-%s.1" % c),
              help_page(run_help(xvl, [c]), "xvl-" + c, [("xvl", "1")]))


# ---------------------------------------------------------------- section 3

def map_symbols(path):
    syms = []
    text = re.sub(r"/\*.*?\*/", "", open(path, encoding="utf-8").read(), flags=re.S)
    for m in re.finditer(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*;", text, flags=re.M):
        syms.append(m.group(1))
    return syms


def comment_text(c):
    """/* ... */ -> its lines, without the comment markers."""
    body = c[2:-2]
    lines = [re.sub(r"^\s*\* ?", "", l).rstrip() for l in body.split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return [l.strip() if len(lines) == 1 else l for l in lines]


def header_items(text):
    """The header as a list of groups (runs of items with no blank line
    between them); an item is ('comment', lines) | ('proto', name, text) |
    ('type', name, text) | ('define', name, text)."""
    groups, cur = [], []
    i, n = 0, len(text)
    while i < n:
        while i < n and text[i] in " \t":
            i += 1
        if text.startswith("/*", i):
            j = text.index("*/", i) + 2
            lines = comment_text(text[i:j])
            if lines and not lines[0].startswith("---") and "SPDX" not in lines[0]:
                cur.append(("comment", lines))
            i = j + 1 if text.startswith("\n", j) else j
            continue
        j = text.find("\n", i)
        j = n if j < 0 else j
        line = text[i:j]
        s = line.strip()
        if not s:
            if cur:
                groups.append(cur)
                cur = []
            i = j + 1
            continue
        if s.startswith("#"):
            m = re.match(r"#define\s+(XVL_[A-Z0-9_]*OPTS_INIT)\b", s)
            if m:
                cur.append(("define", m.group(1), s))
            i = j + 1
            continue
        m = re.match(r"(struct|enum)\s+(\w+)\s*\{", s)
        if m:
            k = text.index("};", i) + 2
            cur.append(("type", m.group(1) + " " + m.group(2), text[i:k]))
            i = text.find("\n", k) + 1 or n
            continue
        if "(" in s and not s.startswith(("extern", "}")):
            k = text.index(";", i) + 1
            decl = text[i:k]
            name = re.search(r"(\w+)\s*\(", decl).group(1)
            cur.append(("proto", name, " ".join(decl.split())))
            i = text.find("\n", k) + 1 or n
            continue
        i = j + 1
    if cur:
        groups.append(cur)
    return groups


def doc_text(lines):
    """Comment lines -> roff paragraphs, with the names of functions and
    fields set in bold where they appear as name() or o->field."""
    paras, cur = [], []
    for l in lines:
        if l.strip():
            cur.append(l.strip())
        elif cur:
            paras.append(" ".join(cur))
            cur = []
    if cur:
        paras.append(" ".join(cur))
    out = []
    for p in paras:
        t = esc(p)
        t = re.sub(r"\b(xvl_\w+)\(\)", r"\\fB\1\\fP()", t)
        out.append(line_safe(t))
    return "\n.PP\n".join(out) + "\n"


def type_text(decl):
    """A struct/enum definition for the page: tabs to spaces."""
    return "\n".join(line_safe(esc(l.replace("\t", "    ").rstrip())) for l in decl.split("\n"))


def api_pages(header, mapfile, outdir):
    text = open(header, encoding="utf-8").read()
    groups = header_items(text)
    # The first comment after the license is the file's: the overview.
    first = re.findall(r"/\*.*?\*/", text, flags=re.S)[1]
    overview = comment_text(first)
    types = {}
    for g in groups:
        for it in g:
            if it[0] == "type":
                types[it[1]] = it[2]
    protos = {it[1]: it for g in groups for it in g if it[0] == "proto"}
    syms = map_symbols(mapfile)
    missing = [s for s in syms if s not in protos]
    unlisted = [p for p in protos if p not in syms]
    if missing or unlisted:
        # Not fatal (the build goes on); tests/e2e/abi.sh and man.sh fail on it.
        warn("%s and %s disagree: exported but not declared %s, declared but not exported %s"
             % (mapfile, header, missing, unlisted))
    for s in missing:
        write(os.path.join(outdir, s + ".3"), th(s, "3", "xvloop library functions") +
              ".SH NAME\n%s \\- not declared\n.SH DESCRIPTION\n%s: exported by the version "
              "script, not declared in xvl.h.\n" % (esc(s), DRIFT))

    def referenced(decls):
        """struct/enum definitions named in decls, transitively, in header order."""
        seen, todo = [], list(decls)
        while todo:
            d = todo.pop()
            for m in re.finditer(r"\b(struct|enum) (\w+)", d):
                k = m.group(1) + " " + m.group(2)
                if k in types and k not in seen:
                    seen.append(k)
                    todo.append(types[k])
        return [k for k in types if k in seen]

    written = {}
    for g in groups:
        names = [it[1] for it in g if it[0] == "proto"]
        if not names:
            continue
        desc, pending, undocumented = [], [], []
        comment = None
        for it in g:
            if it[0] == "comment":
                if pending:
                    desc.append((pending, comment))
                    pending = []
                comment = it[1]
            elif it[0] == "proto":
                pending.append(it[1])
        if pending:
            desc.append((pending, comment))
        for fns, c in desc:
            if c is None:
                undocumented += fns
        if undocumented:
            warn("%s: no comment above %s: the man page is made from it"
                 % (header, ", ".join(undocumented)))
            desc = [(fns, c if c is not None else [DRIFT + ": no comment above it in xvl.h."])
                    for fns, c in desc]
        decls = [protos[n][2] for n in names]
        refs = referenced(decls + [it[2] for it in g if it[0] == "type"])
        defines = [it[2] for it in groups_defines(groups) if any(
            ("struct " + it[1].replace("XVL_", "xvl_").replace("_INIT", "").lower()) == r
            for r in refs)]
        page = next((n for n in names if n in syms), names[0])
        out = [th(page, "3", "xvloop library functions"), ".SH NAME\n",
               ", ".join(esc(n) for n in names) + " \\- " + esc(summary(desc[0][1])) + "\n",
               ".SH LIBRARY\nxvloop (\\fIlibxvloop\\fP, \\fI\\-lxvloop\\fP; "
               "\\fBpkg\\-config \\-\\-libs xvloop\\fP)\n",
               ".SH SYNOPSIS\n.nf\n.B #include <xvloop/xvl.h>\n.PP\n"]
        for d in decls:
            out.append(".B %s\n" % esc(d).replace("\"", "\\(dq"))
        out.append(".fi\n.SH DESCRIPTION\n")
        for fns, c in desc:
            if len(names) > 1:
                out.append(".TP\n" + ", ".join("\\fB%s\\fP()" % esc(f) for f in fns) + "\n")
            else:
                out.append(".PP\n")
            out.append(doc_text(c))
        if refs:
            out.append(".SH TYPES\n.nf\n")
            for r in refs:
                out.append(type_text(types[r]) + "\n")
            for d in defines:
                out.append(line_safe(esc(d)) + "\n")
            out.append(".fi\n")
        out.append(".SH SEE ALSO\n.BR libxvloop (3),\n.BR xvl (1)\n")
        write(os.path.join(outdir, page + ".3"), "".join(out))
        for n in names:
            written[n] = page
            if n != page:
                write(os.path.join(outdir, n + ".3"), ".so man3/%s.3\n" % page)

    out = [th("libxvloop", "3", "xvloop library functions"), ".SH NAME\n",
           "libxvloop \\- virtio devices served from another compartment\n",
           ".SH SYNOPSIS\n.nf\n.B #include <xvloop/xvl.h>\n.fi\n.PP\n"
           "Link with \\fI\\-lxvloop\\fP (\\fBpkg\\-config \\-\\-cflags \\-\\-libs xvloop\\fP).\n",
           ".SH DESCRIPTION\n", doc_text(overview), ".SH FUNCTIONS\n"]
    for s in syms:
        c = next((c for fns, c in all_desc(groups) if s in fns), None) or [DRIFT]
        out.append(".TP\n.BR %s (3)\n%s\n" % (esc(s), line_safe(esc(summary(c)))))
    out.append(".SH SEE ALSO\n.BR xvl (1),\n.BR xvloop\\-window (5)\n")
    write(os.path.join(outdir, "libxvloop.3"), "".join(out))


def groups_defines(groups):
    return [it for g in groups for it in g if it[0] == "define"]


def all_desc(groups):
    for g in groups:
        comment, pending = None, []
        for it in g:
            if it[0] == "comment":
                if pending:
                    yield pending, comment
                    pending = []
                comment = it[1]
            elif it[0] == "proto":
                pending.append(it[1])
        if pending:
            yield pending, comment


def summary(lines):
    """The first sentence of a comment, for NAME lines and lists."""
    text = " ".join(l.strip() for l in lines if l.strip())
    m = re.match(r"(.+?)[.;](\s|$)", text)
    s = (m.group(1) if m else text).rstrip(".:;")
    return s[0].lower() + s[1:] if s[:1].isupper() and not s[1:2].isupper() else s


# ---------------------------------------------------------------- section 5

def md_inline(t):
    t = esc(t)
    t = re.sub(r"\*\*(.+?)\*\*", r"\\fB\1\\fP", t)
    t = re.sub(r"`([^`]+)`", r"\\fB\1\\fP", t)
    t = re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", t)
    return t


def md_sections(text, wanted):
    """The lines of the '## X' sections named in wanted (prefix match)."""
    out, keep = [], False
    for line in text.split("\n"):
        m = re.match(r"^(#{1,2}) (.*)$", line)
        if m:
            title = re.sub(r"^\d+(\.\d+)*\.?\s*", "", m.group(2))
            keep = len(m.group(1)) == 2 and any(title.startswith(w) for w in wanted)
        if keep:
            out.append(line)
    return out


def md_to_roff(lines):
    out, para, i = [], [], 0

    def flush():
        if para:
            out.append(".PP\n" + "\n".join(line_safe(md_inline(p)) for p in para) + "\n")
            para.clear()

    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if s.startswith("```"):
            flush()
            i += 1
            out.append(".PP\n.nf\n")
            while i < len(lines) and not lines[i].strip().startswith("```"):
                out.append(line_safe(esc(lines[i].rstrip())) + "\n")
                i += 1
            out.append(".fi\n")
        elif re.match(r"^#{2,4} ", s):
            flush()
            level = len(s.split(" ")[0])
            title = s[level + 1:]
            if level == 2:
                title = re.sub(r"^\d+\.\s*", "", title)
            out.append((".SH %s\n" % md_inline(title.upper())) if level == 2
                       else ".SS %s\n" % md_inline(title))
        elif s.startswith("|"):
            flush()
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                cells = [c.strip() for c in lines[i].strip().strip("|").split("|")]
                if not all(re.match(r"^:?-+:?$", c) for c in cells):
                    rows.append(cells)
                i += 1
            i -= 1
            head = rows[0]
            for r in rows[1:]:
                tag = ", ".join("%s %s" % (h, c) for h, c in zip(head[:-1], r[:-1]))
                out.append(".TP\n%s\n%s\n" % (line_safe(md_inline(tag)),
                                               line_safe(md_inline(r[-1] if len(r) == len(head) else " ".join(r[len(head) - 1:])))))
        elif re.match(r"^[-*] ", s):
            flush()
            item = [s[2:]]
            while i + 1 < len(lines) and lines[i + 1].startswith("  ") and lines[i + 1].strip():
                i += 1
                item.append(lines[i].strip())
            out.append(".IP \\(bu 2\n" + "\n".join(line_safe(md_inline(x)) for x in item) + "\n")
        elif not s:
            flush()
        else:
            para.append(s)
        i += 1
    flush()
    return "".join(out)


def md_page(doc, outpath, name, summ, wanted):
    lines = md_sections(open(doc, encoding="utf-8").read(), wanted)
    if not lines:
        raise SystemExit("xvlman: %s has no section %s" % (doc, wanted))
    body = md_to_roff(lines)
    text = "".join([th(name, "5", "xvloop file formats"), ".SH NAME\n",
                    "%s \\- %s\n" % (esc(name), esc(summ)), body,
                    ".SH SEE ALSO\n.BR xvl (1),\n.BR xvl\\-run (1),\n.BR libxvloop (3)\n"])
    write(outpath, text)


def main(argv):
    if len(argv) >= 3 and argv[1] == "help":
        cmd_help(argv[2], argv[3], argv[4:])
    elif len(argv) == 5 and argv[1] == "api":
        api_pages(argv[2], argv[3], argv[4])
    elif len(argv) >= 7 and argv[1] == "md":
        md_page(argv[2], argv[3], argv[4], argv[5], argv[6:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
