#!/usr/bin/env python3
"""Flame graphs from `perf script` output, with nothing but Python.

  flamegraph.py fold   PERF_SCRIPT_TXT > FOLDED      stacks, one line each
  flamegraph.py svg    FOLDED TITLE > SVG            the picture

A folded line is `frame;frame;...;frame COUNT`, outermost frame first and
the sampled command as the root. Kernel frames end in `_[k]`, so they can be
told apart (and are drawn in another colour). The SVG is static: hover a
frame for its name, samples and share; the widest frames are where the CPU
went.
"""

import collections
import hashlib
import html
import re
import sys

# A frame line of `perf script -g`: address, symbol(+offset), (dso).
_FRAME = re.compile(r"^\s+([0-9a-fA-F]+)\s+(.*?)\s+\((.*)\)\s*$")
_OFFSET = re.compile(r"\+0x[0-9a-fA-F]+$")


def _frame_name(symbol, dso):
    name = _OFFSET.sub("", symbol.strip())
    if not name or name == "[unknown]":
        base = dso.rsplit("/", 1)[-1] if dso and dso != "[unknown]" else "unknown"
        name = f"[{base}]"
    if dso.startswith("[kernel") or dso.endswith(".ko") or "kallsyms" in dso:
        name += "_[k]"
    return name


def fold(lines):
    """Counts each distinct stack in `perf script` text: {stack: samples}."""
    stacks = collections.Counter()
    comm, frames = None, []

    def flush():
        if comm is not None:
            stacks[";".join([comm] + frames[::-1])] += 1

    for raw in lines:
        line = raw.rstrip("\n")
        if not line.strip():
            flush()
            comm, frames = None, []
            continue
        if line[0] in " \t":
            m = _FRAME.match(line)
            if m and comm is not None:
                frames.append(_frame_name(m.group(2), m.group(3)))
            continue
        # A sample's header: `comm pid[/tid] [cpu] time: period event:`. The
        # command may hold spaces and digits; the field before `[cpu]` is
        # the pid.
        flush()
        fields = line.split()
        cpu = next((i for i, f in enumerate(fields) if re.fullmatch(r"\[\d+\]", f)), None)
        cut = cpu - 1 if cpu is not None and cpu > 1 else 1
        comm, frames = " ".join(fields[:cut]) or "?", []
    flush()
    return stacks


def parse_folded(lines):
    stacks = collections.Counter()
    for line in lines:
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks[stack] += int(count)
    return stacks


class _Node:
    __slots__ = ("name", "count", "children")

    def __init__(self, name):
        self.name, self.count, self.children = name, 0, {}


def _tree(stacks):
    root = _Node("all")
    for stack, count in stacks.items():
        node = root
        node.count += count
        for name in stack.split(";"):
            node = node.children.setdefault(name, _Node(name))
            node.count += count
    return root


def _colour(name):
    # Stable per name: the same function has the same colour in every graph.
    h = int(hashlib.md5(name.encode()).hexdigest()[:6], 16)
    if name.endswith("_[k]"):
        return f"rgb({190 + h % 40},{120 + (h >> 8) % 60},{40 + (h >> 16) % 40})"
    return f"rgb({220 + h % 35},{80 + (h >> 8) % 110},{40 + (h >> 16) % 30})"


def svg(stacks, title, width=1200, frame_height=16, min_width=0.3):
    """The flame graph of `stacks` as an SVG document (a string)."""
    root = _tree(stacks)
    total = max(root.count, 1)
    scale = (width - 20) / total
    rects = []
    depth_max = 0

    def walk(node, x, depth):
        nonlocal depth_max
        w = node.count * scale
        if w < min_width:
            return
        depth_max = max(depth_max, depth)
        rects.append((node, x, depth, w))
        cx = x
        for child in sorted(node.children.values(), key=lambda n: n.name):
            walk(child, cx, depth + 1)
            cx += child.count * scale

    walk(root, 10.0, 0)
    top = 40
    height = top + (depth_max + 1) * frame_height + 20
    out = [
            '<?xml version="1.0" standalone="no"?>',
            f'<svg version="1.1" width="{width}" height="{height}" '
            f'xmlns="http://www.w3.org/2000/svg" font-family="monospace" font-size="11">',
            f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f8f8f0"/>',
            f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15">'
            f'{html.escape(title)}</text>',
            f'<text x="10" y="34" font-size="10">{total} samples; width is share of samples, '
            "bottom is the outermost frame; hover for detail</text>",
    ]
    for node, x, depth, w in rects:
        y = height - 20 - (depth + 1) * frame_height
        share = 100.0 * node.count / total
        label = html.escape(node.name)
        out.append(f'<g><title>{label} ({node.count} samples, {share:.2f}%)</title>'
                              f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{frame_height - 1}" '
                              f'fill="{_colour(node.name)}" rx="2"/>')
        chars = int((w - 4) / 6.6)
        if chars >= 3:
            text = node.name if len(node.name) <= chars else node.name[:chars - 2] + ".."
            out.append(f'<text x="{x + 2:.1f}" y="{y + frame_height - 4}">{html.escape(text)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) == 3 and argv[1] == "fold":
        with open(argv[2], errors="replace") as f:
            stacks = fold(f)
        for stack, count in sorted(stacks.items()):
            print(f"{stack} {count}")
        return 0
    if len(argv) == 4 and argv[1] == "svg":
        with open(argv[2]) as f:
            stacks = parse_folded(f)
        if not stacks:
            print(f"flamegraph: no stacks in {argv[2]}", file=sys.stderr)
            return 1
        sys.stdout.write(svg(stacks, argv[3]))
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
