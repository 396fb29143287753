# SPDX-License-Identifier: MIT
"""Section 3: one page per exported symbol, from include/xvloop/xvl.h.

The header is read as groups: runs of comments, struct/enum definitions,
prototypes and *_OPTS_INIT macros with no blank line between them.  Each
group with prototypes is one page (named after its first exported
function; the others are .so links to it).  The comment above a prototype
(or above a run of prototypes) is its description; the structs and enums
its prototypes name, transitively, are shown whole.  libxvloop.3 is the
header's file comment and a list of every symbol of the version script.

What the header and the version script disagree on, and a prototype with
no comment, is warned about and marked (DRIFT) for tests/e2e/man.sh to
fail on, so that the build goes on while other work catches up.
"""
import os
import re

from roff import DRIFT, esc, line_safe, see_also, th, warn, write

MANUAL = "xvloop library functions"


def map_symbols(path):
    """The symbols of a linker version script, in order."""
    text = re.sub(r"/\*.*?\*/", "", open(path, encoding="utf-8").read(), flags=re.S)
    return [m.group(1) for m in re.finditer(r"^\s*([A-Za-z_]\w*)\s*;", text, flags=re.M)]


def comment_text(c):
    """/* ... */ -> its lines, without the comment markers."""
    lines = [re.sub(r"^\s*\* ?", "", l).rstrip() for l in c[2:-2].split("\n")]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return [l.strip() if len(lines) == 1 else l for l in lines]


def next_line(text, k):
    """Index of the line after position k."""
    return text.find("\n", k) + 1 or len(text)


def read_item(text, i):
    """The item at i (a line start, blanks skipped): (item or None, next i).
    Items: ('comment', lines) ('type', 'struct x', text) ('proto', name, decl)
    ('define', name, text); a blank line is ('blank',)."""
    j = text.find("\n", i)
    j = len(text) if j < 0 else j
    s = text[i:j].strip()
    if text.startswith("/*", i):
        k = text.index("*/", i) + 2
        lines = comment_text(text[i:k])
        keep = lines and not lines[0].startswith("---") and "SPDX" not in lines[0]
        return (("comment", lines) if keep else None), (k + 1 if text.startswith("\n", k) else k)
    if not s:
        return ("blank",), j + 1
    if s.startswith("#"):
        m = re.match(r"#define\s+(XVL_[A-Z0-9_]*OPTS_INIT)\b", s)
        return (("define", m.group(1), s) if m else None), j + 1
    m = re.match(r"(struct|enum)\s+(\w+)\s*\{", s)
    if m:
        k = text.index("};", i) + 2
        return ("type", m.group(1) + " " + m.group(2), text[i:k]), next_line(text, k)
    if "(" in s and not s.startswith(("extern", "}")):
        k = text.index(";", i) + 1
        decl = " ".join(text[i:k].split())
        return ("proto", re.search(r"(\w+)\s*\(", decl).group(1), decl), next_line(text, k)
    return None, j + 1


def header_groups(text):
    """The header as groups of items, split at blank lines."""
    groups, cur, i = [], [], 0
    while i < len(text):
        while i < len(text) and text[i] in " \t":
            i += 1
        item, i = read_item(text, i)
        if item and item[0] == "blank":
            if cur:
                groups.append(cur)
            cur = []
        elif item:
            cur.append(item)
    if cur:
        groups.append(cur)
    return groups


def descriptions(group):
    """[(function names, comment lines or None)] of one group: each comment
    describes the prototypes that follow it."""
    out, comment, pending = [], None, []
    for it in group:
        if it[0] == "comment":
            if pending:
                out.append((pending, comment))
                pending = []
            comment = it[1]
        elif it[0] == "proto":
            pending.append(it[1])
    if pending:
        out.append((pending, comment))
    return out


def paragraphs(lines):
    """Comment lines -> roff paragraphs; name() set in bold."""
    paras, cur = [], []
    for l in lines + [""]:
        if l.strip():
            cur.append(l.strip())
        elif cur:
            paras.append(" ".join(cur))
            cur = []
    out = [line_safe(re.sub(r"\b(xvl_\w+)\(\)", r"\\fB\1\\fP()", esc(p))) for p in paras]
    return "\n.PP\n".join(out) + "\n"


def summary(lines):
    """The first sentence (to a full stop or semicolon), for NAME lines and lists."""
    text = " ".join(l.strip() for l in lines if l.strip())
    m = re.match(r"(.+?)[.;](\s|$)", text)
    s = (m.group(1) if m else text).rstrip(".:;")
    return s[0].lower() + s[1:] if s[:1].isupper() and not s[1:2].isupper() else s


class Header:
    def __init__(self, path):
        self.path = path
        text = open(path, encoding="utf-8").read()
        self.groups = header_groups(text)
        # The first comment after the license one is the file's: the overview.
        self.overview = comment_text(re.findall(r"/\*.*?\*/", text, flags=re.S)[1])
        items = [it for g in self.groups for it in g]
        self.types = {it[1]: it[2] for it in items if it[0] == "type"}
        self.protos = {it[1]: it[2] for it in items if it[0] == "proto"}
        self.defines = [it for it in items if it[0] == "define"]
        self.doc = {f: c for g in self.groups for fns, c in descriptions(g) for f in fns}

    def referenced(self, texts):
        """struct/enum definitions named in texts, transitively, in header order."""
        seen, todo = set(), list(texts)
        while todo:
            for m in re.finditer(r"\b(struct|enum) (\w+)", todo.pop()):
                k = m.group(1) + " " + m.group(2)
                if k in self.types and k not in seen:
                    seen.add(k)
                    todo.append(self.types[k])
        return [k for k in self.types if k in seen]

    def init_macros(self, types):
        """The XVL_*_OPTS_INIT lines of the structs in types."""
        return [d[2] for d in self.defines
                if "struct " + d[1][:-len("_INIT")].lower() in types]


def documented(header, desc):
    """desc with a DRIFT text where a prototype has no comment (warned)."""
    bare = [f for fns, c in desc if c is None for f in fns]
    if bare:
        warn("%s: no comment above %s: the man page is made from it" % (header.path, ", ".join(bare)))
    return [(fns, c if c is not None else [DRIFT + ": no comment above it in xvl.h."])
            for fns, c in desc]


def group_page(header, group, page, include="xvloop/xvl.h"):
    names = [it[1] for it in group if it[0] == "proto"]
    desc = documented(header, descriptions(group))
    decls = [header.protos[n] for n in names]
    types = header.referenced(decls + [it[2] for it in group if it[0] == "type"])
    out = [th(page, "3", MANUAL), ".SH NAME\n",
           ", ".join(esc(n) for n in names) + " \\- " + esc(summary(desc[0][1])) + "\n",
           ".SH LIBRARY\nxvloop (\\fIlibxvloop\\fP, \\fI\\-lxvloop\\fP; "
           "\\fBpkg\\-config \\-\\-libs xvloop\\fP)\n",
           ".SH SYNOPSIS\n.nf\n.B #include <%s>\n.PP\n" % include]
    out += [".B %s\n" % esc(d).replace('"', "\\(dq") for d in decls]
    out.append(".fi\n.SH DESCRIPTION\n")
    for fns, c in desc:
        tag = ".TP\n" + ", ".join("\\fB%s\\fP()" % esc(f) for f in fns) + "\n"
        out.append((tag if len(names) > 1 else ".PP\n") + paragraphs(c))
    if types:
        body = [line_safe(esc(l.replace("\t", "    ").rstrip()))
                for t in types for l in header.types[t].split("\n")]
        body += [line_safe(esc(d)) for d in header.init_macros(types)]
        out.append(".SH TYPES\n.nf\n" + "\n".join(body) + "\n.fi\n")
    out.append(see_also([("libxvloop", "3"), ("xvl", "1")]))
    return "".join(out)


def overview_page(header, syms):
    out = [th("libxvloop", "3", MANUAL), ".SH NAME\n",
           "libxvloop \\- virtio devices served from another compartment\n",
           ".SH SYNOPSIS\n.nf\n.B #include <xvloop/xvl.h>\n.fi\n.PP\n"
           "Link with \\fI\\-lxvloop\\fP (\\fBpkg\\-config \\-\\-cflags \\-\\-libs xvloop\\fP).\n",
           ".SH DESCRIPTION\n", paragraphs(header.overview), ".SH FUNCTIONS\n"]
    for s in syms:
        doc = header.doc.get(s) or [DRIFT]
        out.append(".TP\n.BR %s (3)\n%s\n" % (esc(s), line_safe(esc(summary(doc)))))
    out.append(see_also([("xvl", "1"), ("xvloop-window", "5")]))
    return "".join(out)


def undeclared_page(sym):
    return (th(sym, "3", MANUAL) + ".SH NAME\n%s \\- not declared\n.SH DESCRIPTION\n"
            "%s: exported by the version script, not declared in xvl.h.\n" % (esc(sym), DRIFT))


def merge_into(header, other):
    """header (xvl.h) also knows what other (an extra public header) declares."""
    header.groups += other.groups
    header.types.update(other.types)
    header.protos.update(other.protos)
    header.defines += other.defines
    header.doc.update(other.doc)


def api_pages(header_path, mapfile, outdir, extra=()):
    header = Header(header_path)
    include = {}
    for g in header.groups:
        include[id(g)] = "xvloop/" + os.path.basename(header_path)
    for path in extra:
        other = Header(path)
        for g in other.groups:
            include[id(g)] = "xvloop/" + os.path.basename(path)
        merge_into(header, other)
    syms = map_symbols(mapfile)
    missing = [s for s in syms if s not in header.protos]
    unlisted = [p for p in header.protos if p not in syms]
    if missing or unlisted:
        # Not fatal (the build goes on); tests/e2e/abi.sh and man.sh fail on it.
        warn("%s and %s disagree: exported but not declared %s, declared but not exported %s"
             % (mapfile, header_path, missing, unlisted))
    for s in missing:
        write(os.path.join(outdir, s + ".3"), undeclared_page(s))
    for g in header.groups:
        names = [it[1] for it in g if it[0] == "proto"]
        if not names:
            continue
        page = next((n for n in names if n in syms), names[0])
        write(os.path.join(outdir, page + ".3"), group_page(header, g, page, include[id(g)]))
        for n in names:
            if n != page:
                write(os.path.join(outdir, n + ".3"), ".so man3/%s.3\n" % page)
    write(os.path.join(outdir, "libxvloop.3"), overview_page(header, syms))
