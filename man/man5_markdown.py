# SPDX-License-Identifier: MIT
"""Section 5: a page from chosen '## ' sections of a markdown document.

Handles what docs/ uses: headings, paragraphs, fenced code, bullet lists
with continuation lines, tables (one tagged paragraph per row: the last
column is the text, the others its tag), **bold**, `code`, [links](url).
"""
import re

from roff import esc, line_safe, see_also, th, write

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
                    see_also([("xvl", "1"), ("xvl-run", "1"), ("libxvloop", "3")])])
    write(outpath, text)
