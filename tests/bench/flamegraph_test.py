#!/usr/bin/env python3
"""Unit tests of the flame graph maker (flamegraph.py)."""
import os
import re
import sys
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import flamegraph  # noqa: E402

# Three samples as `perf script -g` prints them: two of fio in the same
# stack, one of a daemon thread whose name has a space and whose innermost
# frame has no symbol.
PERF_SCRIPT = """\
fio   311 [001]   102.000101:    1001001 cpu-clock:ppp:
\tffffffff8110a1b2 copy_page_to_iter+0x42 ([kernel.kallsyms])
\tffffffff8110a000 blkdev_read_iter+0x10 ([kernel.kallsyms])
\t    7f00deadbeef __libc_pread64+0x1f (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t    55550000aaaa main+0x9 (/usr/local/bin/fio)

fio   311 [001]   102.001102:    1001001 cpu-clock:ppp:
\tffffffff8110a1b2 copy_page_to_iter+0x50 ([kernel.kallsyms])
\tffffffff8110a000 blkdev_read_iter+0x10 ([kernel.kallsyms])
\t    7f00deadbeef __libc_pread64+0x1f (/usr/lib/x86_64-linux-gnu/libc.so.6)
\t    55550000aaaa main+0x9 (/usr/local/bin/fio)

queue worker 0   400/402 [000]   102.002000:    1001001 cpu-clock:ppp:
\t    7f0000001234 [unknown] (/usr/lib/x86_64-linux-gnu/liburing.so.2.3)
\t    555500001111 ublkgw::engine::QueueWorker::Run()+0x77 (/usr/local/bin/ublkgwd)
"""


class Fold(unittest.TestCase):
    def test_same_stacks_add_up_outermost_first_offsets_dropped(self):
        stacks = flamegraph.fold(PERF_SCRIPT.splitlines(True))
        self.assertEqual(
            stacks["fio;main;__libc_pread64;blkdev_read_iter_[k];copy_page_to_iter_[k]"], 2)

    def test_command_with_spaces_and_unknown_symbol_named_by_its_library(self):
        stacks = flamegraph.fold(PERF_SCRIPT.splitlines(True))
        self.assertEqual(
            stacks["queue worker 0;ublkgw::engine::QueueWorker::Run();[liburing.so.2.3]"], 1)
        self.assertEqual(sum(stacks.values()), 3)

    def test_last_sample_counts_without_a_trailing_blank_line(self):
        stacks = flamegraph.fold(PERF_SCRIPT.rstrip("\n").splitlines(True))
        self.assertEqual(sum(stacks.values()), 3)

    def test_folded_lines_read_back(self):
        stacks = flamegraph.parse_folded(["a;b 3\n", "a;c 1\n", "a;b 2\n", "\n", "junk\n"])
        self.assertEqual(stacks, {"a;b": 5, "a;c": 1})


class Svg(unittest.TestCase):
    def frames(self, stacks):
        doc = ET.fromstring(flamegraph.svg(stacks, "t & <test>"))
        ns = "{http://www.w3.org/2000/svg}"
        out = {}
        for g in doc.iter(ns + "g"):
            title = g.find(ns + "title").text
            rect = g.find(ns + "rect")
            name, count = re.match(r"(.*) \((\d+) samples", title).groups()
            out[name] = (int(count), float(rect.get("x")), float(rect.get("width")),
                         float(rect.get("y")))
        return out

    def test_widths_are_shares_children_sit_on_parents(self):
        f = self.frames({"a;b": 3, "a;c": 1, "d": 4})
        total = f["all"][2]
        self.assertAlmostEqual(f["a"][2], total / 2, places=0)
        self.assertAlmostEqual(f["b"][2], total * 3 / 8, places=0)
        self.assertAlmostEqual(f["c"][2], total / 8, places=0)
        # b and c stand on a, side by side within it; a on the root.
        self.assertLess(f["b"][3], f["a"][3])
        self.assertEqual(f["b"][3], f["c"][3])
        self.assertGreaterEqual(f["b"][1], f["a"][1])
        self.assertLessEqual(f["c"][1] + f["c"][2], f["a"][1] + f["a"][2] + 0.1)
        self.assertEqual(f["all"][0], 8)

    def test_names_are_escaped_and_frames_too_narrow_left_out(self):
        stacks = {"x<y>&z": 10000, "tiny": 1}
        f = self.frames(stacks)
        self.assertIn("x<y>&z", f)
        self.assertNotIn("tiny", f)


if __name__ == "__main__":
    unittest.main()
