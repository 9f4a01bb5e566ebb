#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Man pages for awith, generated from the public headers.

The headers in include/awith/ are the one source of the reference: their
contract comments and declarations become the pages, so a page cannot say
something the header does not (docs/design.md, "Reference pages"). How a
header is read:

  - The comment at the top of the file describes the header: it becomes
    the header's page, awith-<stem>(3) (awith-core(3) for core.h). A
    paragraph of it that starts with "Errors" becomes that page's ERRORS.
  - A banner line, `/* ---...--- */`, starts a section; the comment right
    after it is the section's title (its first phrase, up to ':', ';' or
    '.') and introduction. Each section is one grouped page, named after
    the first public function or type declared in it (else its first
    public name), unless the title ends with a page name of its own: `/* The context-manager protocol   aw_with(3) */`.
  - Declarations before the first banner go on the header's page.
  - A comment directly followed by declarations (no blank line) documents
    them, and every declaration after them in the same paragraph; a
    comment followed by a blank line is a note of the section. A comment
    that documents only internal declarations but starts with a public
    name of its section (the comment of AW_FOR) documents that name.
  - Public names: identifiers starting with aw_ or AW_ but not aw__ or
    AW__ -- functions, types, struct and enum tags, enum constants --
    and every macro not starting with aw__, AW__ or _, include guards
    aside (AWITH_VERSION_MAJOR is public). A macro that only wraps the function of the
    same name (the location-recording macros) is that function's.
  - The `#ifdef __cplusplus` side of the header is skipped (the C view).

Every public name gets a page: its group page, or a link page (`.so`) to
it, so `man aw_pg_pool_acquire` shows the pool's page. awith(7) lists the
headers and their groups.

  gen_man.py --list INCLUDE_DIR          the page files it would write
  gen_man.py --out DIR [--version V] INCLUDE_DIR   write them
  gen_man.py --check INCLUDE_DIR         fail on a declaration with no comment
  gen_man.py --names INCLUDE_DIR         every public name and its page
  --skip HEADER.h (repeatable): leave out a header whose layer is not built
"""
import argparse
import glob
import os
import re
import sys

IDENT = r'[A-Za-z_][A-Za-z0-9_]*'


def is_public(name):
    return bool(re.match(r'(aw_|AW_)', name)) and not re.match(r'(aw__|AW__)', name)


def is_public_macro(name):
    # every macro of a public header is API (AWITH_VERSION_MAJOR too), but
    # the internal ones and reserved names
    return not re.match(r'(aw__|AW__|_)', name, re.I)


# ---------------------------------------------------------------------------
# Reading a header into chunks: comments, banners, blank lines, preprocessor
# lines and C declarations, in order, with the C++-only parts left out.

class Chunk:
    def __init__(self, kind, lines, line_no, text=''):
        self.kind = kind        # 'blank' 'comment' 'banner' 'pp' 'code'
        self.lines = lines      # the raw source lines
        self.line_no = line_no
        self.text = text        # comment text (without /* */ and * prefixes)


def c_view(lines):
    """The lines the C compiler sees of the __cplusplus conditionals (other
    conditionals are kept whole); each as (line_no, text)."""
    out = []
    stack = []  # per open conditional: (active, is_cplusplus)
    active = True
    i = 0
    while i < len(lines):
        line = lines[i]
        no = i + 1
        full = line
        while full.endswith('\\') and i + 1 < len(lines):
            i += 1
            full = full + '\n' + lines[i]
        i += 1
        m = re.match(r'\s*#\s*(ifdef|ifndef|if|else|elif|endif)\b\s*(.*)', full)
        if m:
            d, arg = m.group(1), m.group(2).strip()
            if d in ('ifdef', 'ifndef', 'if'):
                cpp = arg == '__cplusplus' and d in ('ifdef', 'ifndef')
                stack.append((active, cpp, d == 'ifdef'))
                if cpp:
                    active = active and d == 'ifndef'
                else:
                    out.append((no, full)) if active else None
                continue
            if not stack:
                continue
            outer, cpp, was_ifdef = stack[-1]
            if d in ('else', 'elif'):
                if cpp:
                    active = outer and was_ifdef   # the other side
                elif active or outer:
                    out.append((no, full)) if outer else None
                continue
            stack.pop()
            if not cpp and outer:
                out.append((no, full))
            active = outer
            continue
        if active:
            out.append((no, full))
    return out


def comment_text(raw):
    """The text of a /* */ comment: delimiters and ' * ' prefixes removed,
    box padding stripped, relative indentation kept."""
    body = raw.strip()
    assert body.startswith('/*') and body.endswith('*/')
    body = body[2:-2]
    lines = body.split('\n')
    out = []
    for ln in lines:
        ln = ln.expandtabs(8).rstrip()
        s = ln.lstrip()
        if s.startswith('*'):
            s = s[1:]
            if s.startswith(' '):
                s = s[1:]
        out.append(s.rstrip())
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    # dedent
    ind = min((len(l) - len(l.lstrip()) for l in out if l.strip()), default=0)
    return '\n'.join(l[ind:] for l in out)


def strip_comments(code):
    return re.sub(r'/\*.*?\*/', ' ', code, flags=re.S)


def chunks_of(path):
    with open(path, encoding='utf-8') as f:
        src = f.read().split('\n')
    view = c_view(src)
    chunks = []
    i = 0
    while i < len(view):
        no, line = view[i]
        s = line.strip()
        if not s:
            chunks.append(Chunk('blank', [line], no))
            i += 1
            continue
        if 'SPDX-License-Identifier' in s and (s.startswith('//') or s.startswith('/*') and s.endswith('*/')):
            i += 1      # the licence line is not documentation
            continue
        if s.startswith('//'):
            chunks.append(Chunk('comment', [line], no, s[2:].strip()))
            i += 1
            continue
        if s.startswith('/*'):
            raw = [line]
            while '*/' not in '\n'.join(raw)[2:] and i + 1 < len(view):
                i += 1
                raw.append(view[i][1])
            i += 1
            text = '\n'.join(raw)
            after = text[text.index('*/', 2) + 2:].strip()
            if after:   # code after a comment on the same line: treat as code
                chunks.append(Chunk('code', raw, no))
                continue
            if re.fullmatch(r'/\*\s*-{10,}\s*\*/', text.strip()):
                chunks.append(Chunk('banner', raw, no))
            else:
                ctext = comment_text(text)
                # an SPDX line inside the file's comment is not text either
                ctext = re.sub(r'^SPDX-License-Identifier:.*\n?', '', ctext, flags=re.M).strip('\n')
                chunks.append(Chunk('comment', raw, no, ctext))
            continue
        if s.startswith('#'):
            chunks.append(Chunk('pp', [line], no))
            i += 1
            continue
        # A C declaration: up to ';' at depth 0, or the '}' that ends a
        # function body (static inline) or a bare block.
        raw = []
        depth = 0
        done = False
        saw_body = False
        while i < len(view) and not done:
            no2, ln = view[i]
            raw.append(ln)
            i += 1
            code = strip_comments('\n'.join(raw))
            depth = 0
            for j, ch in enumerate(code):
                if ch in '({[':
                    depth += 1
                    if ch == '{':
                        saw_body = True
                elif ch in ')}]':
                    depth -= 1
            stripped = code.rstrip()
            if depth == 0 and stripped.endswith(';'):
                done = True
            elif depth == 0 and saw_body and stripped.endswith('}'):
                head = code[:code.index('{')]
                if ')' in head and 'struct' not in head.split('(')[0] and 'enum' not in head.split('(')[0] \
                        or head.strip().startswith('static'):
                    done = True
        chunks.append(Chunk('code', raw, no))
    return chunks


# ---------------------------------------------------------------------------
# Names declared by a chunk.

def names_of_code(code):
    """[(name, kind)] declared by one C declaration (comments stripped)."""
    c = ' '.join(strip_comments(code).split())
    out = []
    if c.startswith('extern "C"'):
        return out

    def enumerators(body):
        for part in body.split(','):
            m = re.match(r'\s*(' + IDENT + ')', part)
            if m:
                out.append((m.group(1), 'constant'))

    if c.startswith('typedef'):
        if '{' in c:
            head = c[:c.index('{')]
            close = c.rindex('}')
            m = re.search(r'\b(struct|union|enum)\s+(' + IDENT + r')\s*$', head.strip())
            if m:
                out.append((m.group(2), 'type'))
            if re.search(r'\benum\b', head):
                enumerators(c[c.index('{') + 1:close])
            for part in c[close + 1:].rstrip(';').split(','):
                m = re.search(r'(' + IDENT + r')\s*(\[.*\])?\s*$', part.strip())
                if m:
                    out.append((m.group(1), 'type'))
            return out
        m = re.search(r'\(\s*\*\s*(' + IDENT + r')\s*\)\s*\(', c)
        if m:
            return [(m.group(1), 'type')]
        m = re.search(r'(' + IDENT + r')\s*(\[[^\]]*\])?\s*;\s*$', c)
        return [(m.group(1), 'type')] if m else []
    m = re.match(r'(struct|union|enum)\s*(' + IDENT + r')?\s*\{', c)
    if m:
        if m.group(2):
            out.append((m.group(2), 'type'))
        if m.group(1) == 'enum':
            enumerators(c[c.index('{') + 1:c.rindex('}')])
        return out
    if re.match(r'(struct|union|enum)\s+' + IDENT + r'\s*;$', c):
        return []   # a forward declaration: the type is another header's
    head = c.split('{')[0] if c.startswith('static') else c
    m = re.match(r'[^(]*\(\s*\*\s*(' + IDENT + r')\s*\)\s*\(', head)
    if m:   # a pointer to a function: void (*aw_hook)(void);
        return [(m.group(1), 'variable')]
    # a function: the identifier before the first '(' at depth 0
    depth = 0
    for j, ch in enumerate(head):
        if ch == '(':
            if depth == 0:
                m = re.search(r'(' + IDENT + r')\s*$', head[:j])
                if m and m.group(1) not in ('__attribute__',):
                    return [(m.group(1), 'function')]
            depth += 1
        elif ch == ')':
            depth -= 1
    m = re.search(r'(' + IDENT + r')\s*(\[[^\]]*\])?\s*;\s*$', c)
    return [(m.group(1), 'variable')] if m else []


def define_of(line):
    m = re.match(r'\s*#\s*define\s+(' + IDENT + r')(\()?', line)
    return (m.group(1), bool(m.group(2))) if m else (None, False)


# ---------------------------------------------------------------------------
# Headers, sections, items.

class Item:
    def __init__(self, doc=None):
        self.doc = doc          # the leading comment's text, or None
        self.chunks = []        # code and pp chunks
        self.names = []         # public names, in order: (name, kind)
        self.wrappers = set()   # macros that wrap a function of the same name
        self.undocumented = False
        self.commented = False  # a comment inside a declaration (fields)
        self.first_internal = False  # the comment is on an internal declaration
        self.line_no = 0


class Section:
    def __init__(self, header, title, intro, line_no):
        self.header = header
        self.title = title
        self.intro = intro      # text, may be ''
        self.page_override = None
        self.parts = []         # Item or ('note', text), in order
        self.line_no = line_no
        self.page = None

    def items(self):
        return [p for p in self.parts if isinstance(p, Item)]

    def names(self):
        seen, out = set(), []
        for it in self.items():
            for n, k in it.names:
                if n not in seen:
                    seen.add(n)
                    out.append(n)
        return out


class Header:
    def __init__(self, path):
        self.path = path
        self.file = os.path.basename(path)
        self.stem = self.file[:-2]
        self.page = 'awith-' + self.stem
        self.doc = ''
        self.preamble = None    # Section for declarations before the first banner
        self.sections = []


def split_title(texts):
    """(title, intro, page override) from a section's title comments (one
    text per comment). A first comment of one phrase ("Cursors") followed
    by sentences is the title alone."""
    text = '\n'.join(texts)
    lines = text.split('\n')
    first = ' '.join(l.strip() for l in lines)
    override = None
    for k, line in enumerate(lines):
        m = re.search(r'\s(' + IDENT + r')\(3\)\s*$', line)
        if m:
            override = m.group(1)
            lines[k] = line[:m.start()].rstrip()
            first = ' '.join(l.strip() for l in lines)
            break
    if len(texts) > 1 and '\n' not in texts[0]:
        head = re.sub(r'\s' + IDENT + r'\(3\)\s*$', '', texts[0]).strip()
        if not re.search(r'[:;.]', head) and texts[1][:1].isupper():
            # one-line box comments in a row are one paragraph
            intro = texts[1]
            for a, b in zip(texts[1:], texts[2:]):
                intro += ('\n' if '\n' not in a and '\n' not in b else '\n\n') + b
            return head, intro, override
    m = re.match(r'(.*?)(:\s|;\s|\.\s|\.$|$)', first)
    title = m.group(1).strip()
    intro = first[len(m.group(0)):].strip() if m.group(2).strip() else ''
    if title.endswith(')') and '(' in title and intro == '' and len(title) > 60:
        pass
    return title, intro, override


def parse_header(path):
    h = Header(path)
    chunks = chunks_of(path)
    # the file's own comment: the first comment before any code
    k = 0
    while k < len(chunks) and chunks[k].kind == 'blank':
        k += 1
    if k < len(chunks) and chunks[k].kind == 'comment':
        h.doc = chunks[k].text
        k += 1
    guard = None
    h.preamble = Section(h, None, '', 1)
    sec = h.preamble
    item = None
    prev = 'blank'
    pending_doc = None
    idx = k
    while idx < len(chunks):
        ch = chunks[idx]
        nxt = chunks[idx + 1] if idx + 1 < len(chunks) else None
        if ch.kind == 'banner':
            # the title comment: the comments right after the banner
            title_lines = []
            line_no = ch.line_no
            idx += 1
            while idx < len(chunks) and chunks[idx].kind == 'comment':
                title_lines.append(chunks[idx].text)
                idx += 1
            title, intro, override = split_title(title_lines)
            sec = Section(h, title, intro, line_no)
            sec.page_override = override
            h.sections.append(sec)
            item = None
            prev = 'title'
            continue
        if ch.kind == 'blank':
            item = None
            prev = 'blank'
            idx += 1
            continue
        if ch.kind == 'comment':
            text = ch.text
            # adjacent comments (no blank line) read as one
            while nxt is not None and nxt.kind == 'comment':
                text += '\n\n' + nxt.text
                idx += 1
                nxt = chunks[idx + 1] if idx + 1 < len(chunks) else None
            if nxt is not None and nxt.kind in ('code', 'pp'):
                item = Item(text)
                item.line_no = ch.line_no
                sec.parts.append(item)
                prev = 'comment'
            else:
                sec.parts.append(('note', text))
                item = None
                prev = 'note'
            idx += 1
            continue
        # code or preprocessor
        if ch.kind == 'pp':
            m = re.match(r'\s*#\s*ifndef\s+(' + IDENT + r')\s*$', ch.lines[0])
            if m and guard is None:
                guard = m.group(1)
        if item is None:
            item = Item(None)
            item.line_no = ch.line_no
            # the first declarations of a section are its title's
            item.undocumented = prev == 'blank' and any(isinstance(p, Item) for p in sec.parts)
            sec.parts.append(item)
        item.chunks.append(ch)
        first = len(item.chunks) == 1
        if ch.kind == 'pp':
            name, _ = define_of(ch.lines[0])
            if name and name != guard and is_public_macro(name) and all(name != m for m, _ in item.names):
                item.names.append((name, 'macro'))
        else:
            for n, kind in names_of_code('\n'.join(ch.lines)):
                if is_public(n) and all(n != m for m, _ in item.names):
                    item.names.append((n, kind))
            if '/*' in '\n'.join(ch.lines):
                item.commented = True
        if first:
            declared = [n for n, _ in names_of_code('\n'.join(ch.lines))] if ch.kind == 'code' \
                else [n for n in [define_of(ch.lines[0])[0]] if n]
            item.first_internal = bool(declared) and not any(is_public(n) for n in declared)
        prev = 'code'
        idx += 1
    return h


def header_paths(include_dir, skip=()):
    """The headers to document: every one of include/awith/ but those whose
    layer the build leaves out (--skip io.h ...)."""
    return sorted(p for p in glob.glob(os.path.join(include_dir, 'awith', '*.h'))
                  if os.path.basename(p) not in skip)


def build(include_dir, skip=()):
    paths = header_paths(include_dir, skip)
    # the layers bottom up, then the rest by name: the order of awith(7)
    layers = ['core.h', 'io.h', 'http.h', 'client.h', 'pg.h']
    paths.sort(key=lambda p: (layers.index(os.path.basename(p)) if os.path.basename(p) in layers
                              else len(layers), os.path.basename(p)))
    headers = [parse_header(p) for p in paths]
    functions = set()
    for h in headers:
        for sec in [h.preamble] + h.sections:
            for it in sec.items():
                for n, k in it.names:
                    if k == 'function':
                        functions.add(n)
    # wrapper macros belong to their function
    for h in headers:
        for sec in [h.preamble] + h.sections:
            for it in sec.items():
                keep = []
                for n, k in it.names:
                    if k == 'macro' and n in functions:
                        it.wrappers.add(n)
                    else:
                        keep.append((n, k))
                it.names = keep
            # a comment on internal declarations is about them, not about
            # the public ones that follow in the same paragraph (AW_FOR
            # after aw__for_body_done) ...
            items = sec.items()
            def own_name(it):
                m = re.match(IDENT, it.doc or '')
                return m and any(n == m.group(0) for n, _ in it.names)
            for it in items:
                if it.first_internal and it.names and not own_name(it):
                    it.doc = None
                    it.undocumented = False
            for it in items:
                if it.names or not it.doc:
                    continue
                m = re.match(r'(' + IDENT + r')', it.doc)
                if not m or not is_public(m.group(1)):
                    continue
                for other in items:
                    if any(n == m.group(1) for n, _ in other.names):
                        other.doc = (other.doc + '\n\n' if other.doc else '') + it.doc
                        other.undocumented = False
                        it.doc = None
                        break
    # page names
    owner = {}
    for h in headers:
        h.preamble.page = h.page
        for sec in h.sections:
            names = sec.names()
            # named after its first function or type (a section's macros
            # and constants are mostly helpers), else its first name
            kinds = dict((n, k) for it in sec.items() for n, k in it.names)
            main = [n for n in names if kinds[n] in ('function', 'type')]
            sec.page = sec.page_override or (main[0] if main else names[0] if names else None)
        for sec in [h.preamble] + h.sections:
            if sec.page is None:
                continue
            for n in sec.names():
                owner.setdefault(n, sec)
    seen = {}
    for h in headers:
        for sec in h.sections:
            if sec.page in seen:
                sys.exit('%s:%d: section "%s" has the page name %s(3) of section "%s" (%s): '
                         'name it in its banner title' % (h.path, sec.line_no, sec.title, sec.page,
                                                           seen[sec.page].title, seen[sec.page].header.file))
            if sec.page:
                seen[sec.page] = sec
    return headers, owner


# ---------------------------------------------------------------------------
# roff

def esc(text):
    """Escape text for roff (fill or no-fill lines)."""
    out = []
    for ch in text:
        if ch == '\\':
            out.append('\\e')
        elif ch == '-':
            out.append('\\-')
        elif ord(ch) > 126:
            out.append('\\[u%04X]' % ord(ch))
        else:
            out.append(ch)
    s = ''.join(out)
    return s


def line_out(s):
    s = esc(s)
    if s.startswith('.') or s.startswith("'"):
        s = '\\&' + s
    return s


def render_text(text):
    """A comment as roff: paragraphs filled, indented lines (examples,
    lists, tables) as they are."""
    out = []
    blocks = re.split(r'\n\s*\n', text.strip('\n'))
    for b in blocks:
        lines = b.split('\n')
        if not any(l.strip() for l in lines):
            continue
        out.append('.PP' if not out else '.sp')
        # runs of lines at the margin are filled; indented lines (examples,
        # lists, tables) and list items stay as they are
        verbatim = False
        for l in lines:
            indented = l.startswith(' ') or l.startswith('- ')
            if indented and not verbatim:
                out.append('.nf')
                verbatim = True
            elif not indented and verbatim:
                out.append('.fi')
                verbatim = False
            out.append(line_out(l if verbatim else l.strip()) if l.strip() else '')
        if verbatim:
            out.append('.fi')
    return out


def th(name, section, version):
    # no hyphenation, ragged right: the text is full of identifiers
    return '.TH "%s" "%d" "" "awith %s" "awith manual"\n.nh\n.ad l' % (esc(name.upper()), section, version)


def synopsis_lines(item):
    """The item's declarations as the header has them: function bodies of
    static inline functions and wrapper macros left out, a macro whose
    definition uses internals shown by its name and parameters."""
    out = []
    for ch in item.chunks:
        if ch.kind == 'pp':
            name, fnlike = define_of(ch.lines[0])
            if not name or not is_public_macro(name) or name in item.wrappers:
                continue
            if not any(n == name for n, _ in item.names):
                continue
            full = '\n'.join(ch.lines)
            if '\n' in full or re.search(r'\b(aw__|AW__)', strip_comments(full)):
                m = re.match(r'(\s*#\s*define\s+' + IDENT + r'(\([^)]*\))?)', full)
                out.append(m.group(1).strip())
            else:
                out.append(full.strip())
            continue
        names = [n for n, _ in names_of_code('\n'.join(ch.lines))]
        if not any(is_public(n) for n in names):
            continue
        code = '\n'.join(ch.lines)
        if code.lstrip().startswith('static'):
            code = code[:code.index('{')].rstrip() + ';'
        out.extend(code.expandtabs(8).split('\n'))
    return out


def trailing_comments(item):
    """Comments at the end of a top-level declaration line, as
    (name, text): what a one-line declaration says about itself."""
    out = []
    for ch in item.chunks:
        if ch.kind != 'code' or len(ch.lines) != 1:
            continue
        m = re.search(r';\s*/\*(.*?)\*/\s*$', ch.lines[0]) or re.search(r'\}\s*/\*(.*?)\*/\s*$', ch.lines[0])
        if not m:
            continue
        names = [n for n, _ in names_of_code(ch.lines[0]) if is_public(n)]
        if names:
            out.append((names[0], ' '.join(m.group(1).split())))
    return out


def item_heading(item):
    parts = []
    for n, k in item.names:
        if k == 'function':
            parts.append(n + '()')
        elif k == 'constant':
            continue
        else:
            parts.append(n)
    consts = [n for n, k in item.names if k == 'constant']
    if consts:
        parts.append(consts[0] + (' ... ' + consts[-1] if len(consts) > 1 else ''))
    return ', '.join(parts)


def item_body(it):
    """The text under an item's heading: its comment, then what its
    one-line declarations say in their trailing comments."""
    out = []
    body = render_text(it.doc) if it.doc else []
    # the first paragraph goes in the tagged paragraph itself
    out.extend('.IP' if l in ('.sp', '.PP') else l for l in body[1:])
    for n, t in trailing_comments(it):
        if out:
            out.append('.br')
        out.append('\\fB%s\\fP: %s' % (esc(n), line_out(t)))
    if not out:
        out.append('The fields are described in the SYNOPSIS.' if it.commented else 'See the SYNOPSIS.')
    return out


def section_page(sec, headers, owner, version):
    h = sec.header
    names = sec.names()
    out = [th(sec.page, 3, version), '.SH NAME']
    out.append(esc(', '.join(names)) + ' \\- ' + esc(sec.title or h.stem))
    out.append('.SH SYNOPSIS')
    out.append('.nf')
    out.append('.B #include <awith/%s>' % esc(h.file))
    for it in sec.items():
        lines = synopsis_lines(it)
        if not lines:
            continue
        out.append('')
        for l in lines:
            out.append(line_out(l) if l.strip() else '')
    out.append('.fi')
    out.append('.SH DESCRIPTION')
    started = False
    if sec.intro:
        out.extend(render_text(sec.intro[:1].upper() + sec.intro[1:]))
        started = True
    for part in sec.parts:
        if isinstance(part, tuple):
            body = render_text(part[1])
            if started and body and body[0] == '.PP':
                pass
            out.extend(body)
            started = True
            continue
        it = part
        if not it.names:
            continue
        heading = item_heading(it)
        out.append('.TP')
        out.append('.B ' + esc(heading))
        out.extend(item_body(it))
        started = True
    if not started and not sec.items():
        out.append('Nothing is declared in this section yet.')
    returns, errors = outcome_sentences(sec)
    if returns:
        out.append('.SH RETURN VALUE')
        for heading, text in returns:
            out.append('.TP')
            out.append('.B ' + esc(heading))
            out.append(line_out(text))
    if errors or errors_of(h.doc):
        out.append('.SH ERRORS')
    if errors:
        out.append('The error codes the DESCRIPTION names, by function:')
        for heading, text in errors:
            out.append('.TP')
            out.append('.B ' + esc(heading))
            out.append(line_out(text))
    if errors_of(h.doc):
        if errors:
            out.append('.PP')
        out.append('The error codes of')
        out.append('.I <awith/%s>' % esc(h.file))
        out.append('are listed in')
        out.append('.BR %s (3).' % esc(h.page))
    out.append('.SH SEE ALSO')
    see = [h.page] + [s.page for s in h.sections if s.page and s is not sec]
    out.append(',\n'.join('.BR %s (3)' % esc(p) for p in see) + ',')
    out.append('.BR awith (7)')
    return '\n'.join(out) + '\n'


def sentences(text):
    flat = ' '.join(text.split())
    return re.split(r'(?<=[.;])\s+(?=[A-Z(-])', flat)


def outcome_sentences(sec):
    """What the comments of a section's functions say they return, and the
    error codes they name: ([(heading, text)], [(heading, text)])."""
    returns, errors = [], []
    for it in sec.items():
        if not it.doc or not any(k == 'function' for _, k in it.names):
            continue
        heading = item_heading(it)
        r = [x for x in sentences(it.doc) if re.match(r'(Returns?|returns?)\b', x)]
        e = [x for x in sentences(it.doc) if x not in r and re.search(r'(?<![\w])-(AW_)?E[A-Z0-9_]{2,}', x)]
        if r:
            returns.append((heading, ' '.join(r)))
        if e:
            errors.append((heading, ' '.join(e)))
    return returns, errors


def doc_paragraphs(doc):
    return re.split(r'\n\s*\n', doc.strip('\n')) if doc else []


def errors_of(doc):
    return [p for p in doc_paragraphs(doc) if p.startswith('Errors')]


def header_summary(h):
    paras = doc_paragraphs(h.doc)
    if not paras:
        return 'the declarations of <awith/%s>' % h.file
    first = ' '.join(paras[0].split())
    first = re.sub(r'^awith/' + re.escape(h.file) + r'\s*(\u2014|--|-)\s*', '', first)
    return first.rstrip('.')


def header_page(h, version):
    out = [th(h.page, 3, version), '.SH NAME']
    names = h.preamble.names()
    out.append(esc(', '.join([h.page] + names)) + ' \\- ' + esc(header_summary(h)))
    out.append('.SH SYNOPSIS')
    out.append('.nf')
    out.append('.B #include <awith/%s>' % esc(h.file))
    for it in h.preamble.items():
        lines = synopsis_lines(it)
        if lines:
            out.append('')
            out.extend(line_out(l) if l.strip() else '' for l in lines)
    out.append('.fi')
    out.append('.SH DESCRIPTION')
    paras = doc_paragraphs(h.doc)
    body = [p for p in paras[1:] if not p.startswith('Errors')]
    if body:
        out.extend(render_text('\n\n'.join(body)))
    for part in h.preamble.parts:
        if isinstance(part, tuple):
            out.extend(render_text(part[1]))
        elif part.names:
            out.append('.TP')
            out.append('.B ' + esc(item_heading(part)))
            out.extend(item_body(part))
    if h.sections:
        out.append('.SS Sections')
        out.append('Each section of the header has its page:')
        for s in h.sections:
            if not s.page:
                continue
            out.append('.TP')
            out.append('.BR %s (3)' % esc(s.page))
            out.append(line_out(s.title))
    errs = errors_of(h.doc)
    if errs:
        out.append('.SH ERRORS')
        out.extend(render_text('\n\n'.join(errs)))
    out.append('.SH SEE ALSO')
    out.append('.BR awith (7)')
    return '\n'.join(out) + '\n'


def overview_page(headers, version):
    out = [th('awith', 7, version), '.SH NAME', 'awith \\- async context managers (async with) for C',
           '.SH SYNOPSIS', '.nf']
    for h in headers:
        out.append('.B #include <awith/%s>' % esc(h.file))
    out.append('.fi')
    out.append('.SH DESCRIPTION')
    out.append('.PP')
    out.append('The reference pages are generated from the public headers, one page per')
    out.append('header and one per section of a header; every public function, macro')
    out.append('and type has a page (a link to its section\'s page).')
    for h in headers:
        out.append('.SS <awith/%s>: %s(3)' % (esc(h.file), esc(h.page)))
        out.append(line_out(header_summary(h)) + '.')
        for s in h.sections:
            if not s.page:
                continue
            out.append('.TP')
            out.append('.BR %s (3)' % esc(s.page))
            out.append(line_out(s.title))
    out.append('.SH SEE ALSO')
    out.append(',\n'.join('.BR %s (3)' % esc(h.page) for h in headers))
    return '\n'.join(out) + '\n'


def pages(headers, owner, version):
    """{relative path: text}"""
    out = {'man7/awith.7': overview_page(headers, version)}
    for h in headers:
        out['man3/%s.3' % h.page] = header_page(h, version)
        for sec in h.sections:
            if sec.page:
                out['man3/%s.3' % sec.page] = section_page(sec, headers, owner, version)
    for name, sec in owner.items():
        path = 'man3/%s.3' % name
        if path not in out:
            out[path] = '.so man3/%s.3\n' % sec.page
    return out


def undocumented(headers):
    bad = []
    for h in headers:
        for sec in [h.preamble] + h.sections:
            for it in sec.items():
                # functions and macros need words; a type is documented by
                # the comments of its fields or its section
                if any(k in ('function', 'macro') for _, k in it.names) and it.undocumented \
                        and not it.doc and not it.commented:
                    bad.append('%s:%d: %s: no contract comment (put one right before the declaration)'
                               % (h.path, it.chunks[0].line_no, ', '.join(n for n, _ in it.names)))
    return bad


def main():
    ap = argparse.ArgumentParser(description='awith man pages from the public headers')
    ap.add_argument('include_dir')
    ap.add_argument('--out')
    ap.add_argument('--list', action='store_true')
    ap.add_argument('--check', action='store_true')
    ap.add_argument('--names', action='store_true')
    ap.add_argument('--headers', action='store_true')
    ap.add_argument('--version', default='')
    ap.add_argument('--skip', action='append', default=[],
                    help='a header not to document (a layer the build leaves out)')
    a = ap.parse_args()
    if a.headers:
        for p in header_paths(a.include_dir, a.skip):
            print(p)
        return 0
    headers, owner = build(a.include_dir, a.skip)
    if a.names:
        for n, sec in owner.items():
            print(n, sec.page)
        return 0
    if a.check:
        bad = undocumented(headers)
        for b in bad:
            print(b)
        return 1 if bad else 0
    ps = pages(headers, owner, a.version)
    if a.list:
        for p in sorted(ps):
            print(p)
        return 0
    if a.out:
        for p, text in ps.items():
            path = os.path.join(a.out, os.path.basename(p))
            old = None
            if os.path.exists(path):
                with open(path, encoding='utf-8') as f:
                    old = f.read()
            if old != text:
                with open(path, 'w', encoding='utf-8') as f:
                    f.write(text)
        return 0
    ap.error('one of --out, --list, --check, --names, --headers')


if __name__ == '__main__':
    sys.exit(main())
