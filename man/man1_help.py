# SPDX-License-Identifier: MIT
"""Section 1: xvl.1 and xvl-CMD.1 from `xvl --help` and `xvl CMD --help`.

The --help texts are laid out as man pages already (HEADINGS at column 0,
bodies indented by 4): headings become .SH, plain paragraphs are filled,
anything laid out in columns (option lists, synopses, examples) is kept
as it is (.nf).
"""
import os
import re
import subprocess

from roff import esc, line_safe, see_also, th, warn, write

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


def help_page(text, name, related):
    sections = help_sections(text)
    if not sections or sections[0][0] != "NAME":
        raise SystemExit("xvlman: %s --help has no NAME section" % name)
    out = [th(name, "1", "xvloop manual"), ".SH NAME\n", name_line(sections[0][1]) + "\n"]
    for head, body in sections[1:]:
        out.append(".SH %s\n" % esc(head))
        for b in blocks(body):
            out.append(render_block(b))
    out.append(see_also(related))
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
