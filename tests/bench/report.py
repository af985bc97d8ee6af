#!/usr/bin/env python3
"""Turns a benchmark guest run into results.json, table.md and PNG plots.

Reads the guest's runs.tsv (one line per fio run, with the CPU ticks it
cost) and fio's JSON for each run. Every figure is the mean over the rounds;
ratios are to the kernel's nbd client measured in the same guest run.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

import compare

SYSTEMS = ["ublkgw-copy", "ublkgw-zero-copy", "ublkgw-fused", "kernel-nbd"]
# With --send-variants, write jobs also run zero copy with one send op only.
VARIANTS = ["ublkgw-zc-send", "ublkgw-zc-sendzc"]
# With --baseline, every job also runs on another revision's daemon.
BASELINE = {"ublkgw-copy": "base-copy", "ublkgw-zero-copy": "base-zero-copy"}
# With --fused, the fused path runs back to back with mainline zero copy.
FUSED = {"ublkgw-fused": "ublkgw-zero-copy"}



def server_title(server):
    """The table's name for a server of --servers: nbdkit's plugins by name,
    the others as they are (qemu-nbd, nbd-server: a raw file on tmpfs)."""
    return f"nbdkit {server}" if server in ("memory", "null") else f"{server} (raw file on tmpfs)"

def fio_figures(path, index=0):
    """The figures of job `index` of a fio JSON output (a run of two
    systems at once has one job per system)."""
    with open(path) as f:
        data = json.load(f)
    job = data["jobs"][index]
    ios = job["read"]["total_ios"] + job["write"]["total_ios"]
    side = job["read"] if job["read"]["total_ios"] >= job["write"]["total_ios"] else job["write"]
    pct = side["clat_ns"].get("percentile", {})
    return {
        "ios": ios,
        "bytes": job["read"]["io_bytes"] + job["write"]["io_bytes"],
        "seconds": job["job_runtime"] / 1000.0,
        "iops": job["read"]["iops"] + job["write"]["iops"],
        "bw_bytes": job["read"]["bw_bytes"] + job["write"]["bw_bytes"],
        "p50_us": pct.get("50.000000", 0) / 1000.0,
        "p99_us": pct.get("99.000000", 0) / 1000.0,
    }


def load_runs(guest_out):
    """One dict per system and run. Ticks a pair of systems run at the same
    time shares (runs.tsv's "shared": the guest's, the server's, and the
    daemon's when one serves both) are divided by the pair's I/Os, so they
    are the pair's average cost per I/O."""
    files = os.path.join(guest_out, "files")
    rows = []
    with open(os.path.join(files, "runs.tsv")) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t")))
            row["fig"] = fio_figures(os.path.join(files, "fio", row["run"] + ".json"),
                                     int(row.get("fio_job", 0) or 0))
            rows.append(row)
    run_ios = {}
    for row in rows:
        run_ios[row["run"]] = run_ios.get(row["run"], 0) + row["fig"]["ios"]
    runs = []
    for row in rows:
        fig = row["fig"]
        shared = set((row.get("shared") or "-").split(","))
        hz = float(row["hz"])
        own = max(fig["ios"], 1)
        pair = max(run_ios[row["run"]], 1)
        per_io = lambda ticks, name: (int(ticks) / hz * 1e6
                                      / (pair if name in shared else own))
        busy = per_io(row["guest_busy_ticks"], "busy")
        server = per_io(row["server_ticks"], "server")
        kib_per_io = max(fig["bytes"] / 1024.0, 1) / own
        fig.update({
            "server": row["server"], "system": row["system"], "job": row["job"],
            "round": int(row["round"]),
            "together": bool(shared - {"-"}),
            "cpu_us_per_io": busy,
            "daemon_us_per_io": per_io(row["daemon_ticks"], "daemon"),
            # Of that, in the kernel (system calls, io_uring's work in the
            # daemon's threads); 0 in runs.tsv files from before the column.
            "daemon_sys_us_per_io": per_io(row.get("daemon_sys_ticks") or 0, "daemon"),
            "server_us_per_io": server,
            # What the client side costs: everything but the server.
            "client_us_per_io": busy - server,
            "client_ns_per_kib": (busy - server) * 1e3 / kib_per_io,
            # The daemon's system interface cost per request (ublkgw only).
            "recvs_per_io": int(row.get("recvs", 0) or 0) / own,
            "enters_per_io": int(row.get("enters", 0) or 0) / own,
        })
        runs.append(fig)
    return runs


METRICS = ["iops", "bw_bytes", "p50_us", "p99_us", "cpu_us_per_io", "daemon_us_per_io",
           "daemon_sys_us_per_io",
           "server_us_per_io", "client_us_per_io", "client_ns_per_kib", "recvs_per_io",
           "enters_per_io"]


def aggregate(runs):
    out = {}
    for r in runs:
        key = (r["server"], r["job"], r["system"])
        out.setdefault(key, []).append(r)
    means = {}
    for key, rs in out.items():
        means[key] = {m: statistics.mean(r[m] for r in rs) for m in METRICS}
        means[key]["rounds"] = len(rs)
    return means


def ordered(values):
    seen = []
    for v in values:
        if v not in seen:
            seen.append(v)
    return seen


def ratio(a, b):
    return a / b if b else float("nan")


def targets(means, servers, jobs):
    """The issue's targets, checked on the memory server (or the first)."""
    server = "memory" if "memory" in servers else servers[0]
    lines = []

    def best(job, metric, higher=True):
        vals = [means[(server, job, s)][metric] for s in SYSTEMS if s != "kernel-nbd"
                and (server, job, s) in means]
        return (max if higher else min)(vals)

    def nbd(job, metric):
        return means[(server, job, "kernel-nbd")][metric]

    for job in jobs:
        if (server, job, "kernel-nbd") not in means:
            continue
        if "4k-qd32" in job:
            r = ratio(best(job, "iops"), nbd(job, "iops"))
            lines.append((f"{job}: best ublkgw IOPS >= kernel nbd", r >= 1.0, f"{r:.2f}x"))
        if job.startswith(("read-", "write-")):
            r = ratio(best(job, "bw_bytes"), nbd(job, "bw_bytes"))
            lines.append((f"{job}: best ublkgw bandwidth >= 1.1x kernel nbd", r >= 1.1, f"{r:.2f}x"))
            zc = means[(server, job, "ublkgw-zero-copy")]["client_ns_per_kib"]
            cp = means[(server, job, "ublkgw-copy")]["client_ns_per_kib"]
            lines.append((f"{job}: zero copy client CPU per byte < copy", zc < cp,
                          f"{zc:.0f} vs {cp:.0f} ns/KiB"))
        if "4k-qd32" in job or job.startswith(("read-", "write-")):
            r = ratio(best(job, "p99_us", higher=False), nbd(job, "p99_us"))
            lines.append((f"{job}: best ublkgw p99 <= kernel nbd", r <= 1.0, f"{r:.2f}x"))
    return server, lines


def per_io(system, value):
    return "-" if system == "kernel-nbd" else f"{value:.2f}"


def table(means, servers, jobs, header):
    md = [header, ""]
    for server in servers:
        md.append(f"### {server_title(server)}")
        md.append("")
        md.append("| job | system | IOPS | MiB/s | p50 us | p99 us "
                  "| CPU us/IO: total (daemon [of it in the kernel], server) "
                  "| IOPS vs nbd | p99 vs nbd | client CPU/IO vs nbd | RECVs/IO | enters/IO |")
        md.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for job in jobs:
            base = means.get((server, job, "kernel-nbd"))
            for system in SYSTEMS + VARIANTS + list(BASELINE.values()):
                m = means.get((server, job, system))
                if m is None:
                    continue
                rel = lambda k: f"{ratio(m[k], base[k]):.2f}x" if base else "-"
                md.append(
                    f"| {job} | {system} | {m['iops']:.0f} | {m['bw_bytes'] / 2**20:.1f} "
                    f"| {m['p50_us']:.0f} | {m['p99_us']:.0f} "
                    f"| {m['cpu_us_per_io']:.0f} ({m['daemon_us_per_io']:.0f} "
                    f"[{m['daemon_sys_us_per_io']:.0f}], "
                    f"{m['server_us_per_io']:.0f}) | {rel('iops')} | {rel('p99_us')} "
                    f"| {rel('client_us_per_io')} "
                    f"| {per_io(system, m['recvs_per_io'])} | {per_io(system, m['enters_per_io'])} |")
        md.append("")
    return md


def paired_table(runs, means, servers, jobs, pairs, title, words):
    """Systems run back to back or at once, `pairs` {new: old}: per job and path, the
    IOPS ratio (new / old) of every round, their median, the median's
    confidence interval and the verdict (compare.py), then whether every
    job holds (new not slower than old)."""
    if not any(r["system"] in pairs for r in runs) or \
            not any(r["system"] in pairs.values() for r in runs):
        return [], []
    by_round = {(r["server"], r["job"], r["system"], r["round"]): r for r in runs}
    together = any(r["together"] for r in runs if r["system"] in pairs)
    how = ("the two volumes run at the same time, one fio job each" if together
           else "two runs back to back")
    md = [f"### {title} (IOPS {words}, same run)", "",
          f"Each round's ratio comes from {how}; the interval is "
          f"the median's, at {compare.CONFIDENCE:.0%} or more (sign test). A job holds when "
          f"the interval reaches 1 and stays above {1 - compare.MARGIN:.2f}.", "",
          "| server | job | path | median | interval (coverage) | verdict | per round "
          "| RECVs/IO old / new | enters/IO old / new |",
          "|---|---|---|---:|---|---|---|---:|---:|"]
    verdicts = []
    for server in servers:
        for job in jobs:
            for new, old in pairs.items():
                n, o = means.get((server, job, new)), means.get((server, job, old))
                if not (n and o):
                    continue
                rounds = sorted(k[3] for k in by_round if k[:3] == (server, job, new))
                ratios = [ratio(by_round[(server, job, new, i)]["iops"],
                                by_round[(server, job, old, i)]["iops"])
                          for i in rounds if (server, job, old, i) in by_round]
                v = compare.verdict(ratios)
                path = new.removeprefix("ublkgw-")
                verdicts.append(dict(server=server, job=job, path=path, against=old,
                                     ratios=ratios, **v))
                interval = (f"{v['low']:.2f}-{v['high']:.2f} ({v['coverage']:.1%})"
                            if v["coverage"] else "-")
                # A revision older than the counters reports none: say so, not 0.
                count = lambda x: f"{x:.2f}" if x else "n/a"
                md.append(f"| {server} | {job} | {path} | {v['median']:.2f} | {interval} "
                          f"| {v['verdict']} | {', '.join(f'{x:.2f}' for x in ratios)} "
                          f"| {count(o['recvs_per_io'])} / {count(n['recvs_per_io'])} "
                          f"| {count(o['enters_per_io'])} / {count(n['enters_per_io'])} |")
    failing = [f"{v['job']} {v['path']} ({v['verdict']})" for v in verdicts if not v["holds"]]
    md += ["", ("No job slower: every job holds." if not failing else
                "No job slower: **not met**: " + ", ".join(failing) + "."), ""]
    return md, verdicts


def plot(means, server, jobs, out_dir):
    if not any((server, job, "kernel-nbd") in means for job in jobs):
        return None  # old against new only (--no-nbd): nothing to plot against nbd
    data = os.path.join(out_dir, f"plot-{server}.dat")
    with open(data, "w") as f:
        f.write("# job copy_iops zc_iops copy_cpu zc_cpu\n")
        for job in jobs:
            base = means.get((server, job, "kernel-nbd"))
            cp = means.get((server, job, "ublkgw-copy"))
            zc = means.get((server, job, "ublkgw-zero-copy"))
            if not (base and cp and zc):
                continue
            f.write(f"{job} {ratio(cp['iops'], base['iops']):.3f} "
                    f"{ratio(zc['iops'], base['iops']):.3f} "
                    f"{ratio(cp['client_us_per_io'], base['client_us_per_io']):.3f} "
                    f"{ratio(zc['client_us_per_io'], base['client_us_per_io']):.3f}\n")
    png = os.path.join(out_dir, f"bench-{server}.png")
    script = f"""
set terminal pngcairo size 1100,800 font ",10"
set output "{png}"
set multiplot layout 2,1 title "ublkgw vs the kernel's nbd client ({server_title(server)}, same guest run)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set key top left
set grid ytics
set xtics rotate by -20
set yrange [0:*]
set ylabel "throughput / kernel nbd"
plot "{data}" using 2:xtic(1) title "ublkgw copy", "" using 3 title "ublkgw zero copy", 1 with lines lc "black" dt 2 notitle
set ylabel "client CPU per I/O / kernel nbd"
plot "{data}" using 4:xtic(1) title "ublkgw copy", "" using 5 title "ublkgw zero copy", 1 with lines lc "black" dt 2 notitle
unset multiplot
"""
    subprocess.run(["gnuplot"], input=script.encode(), check=True)
    return png


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--guest-out", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--command", default="tests/bench/run-bench.sh")
    ap.add_argument("--queues", type=int, default=0)
    ap.add_argument("--runtime", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=0)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    runs = load_runs(args.guest_out)
    if not runs:
        sys.exit("report: no runs in " + args.guest_out)
    means = aggregate(runs)
    servers = ordered(r["server"] for r in runs)
    jobs = ordered(r["job"] for r in runs)
    with open(os.path.join(args.guest_out, "files", "kernel.txt")) as f:
        kernel = f.read().strip()
    header = (f"Kernel {kernel}, 2-vCPU TCG guest, {args.queues} queue(s)/connection(s) each, "
              f"{args.runtime} s per run, {args.rounds} rounds interleaved; command: "
              f"`{args.command}`")
    md = table(means, servers, jobs, header)
    against_base, verdicts = paired_table(runs, means, servers, jobs, BASELINE,
                                          "This tree against the baseline", "new / old")
    md += against_base
    against_zc, fused_verdicts = paired_table(runs, means, servers, jobs, FUSED,
                                              "Fused against mainline zero copy",
                                              "fused / zero copy")
    md += against_zc
    target_server, checks = targets(means, servers, jobs)
    if checks:
        md.append(f"### Targets ({server_title(target_server)})")
        md.append("")
        for name, ok, detail in checks:
            md.append(f"- {'met' if ok else 'NOT met'}: {name} ({detail})")
        md.append("")
    pngs = [p for p in (plot(means, s, jobs, args.out) for s in servers) if p]
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write("\n".join(md))
    result = {
        "kernel": kernel, "command": args.command, "queues": args.queues,
        "runtime_s": args.runtime, "rounds": args.rounds, "runs": runs,
        "means": [dict(server=k[0], job=k[1], system=k[2], **v) for k, v in means.items()],
        "targets": [dict(target=n, met=ok, detail=d) for n, ok, d in checks],
        "against_baseline": verdicts,
        "fused_against_zero_copy": fused_verdicts,
        "plots": [os.path.basename(p) for p in pngs],
    }
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    print("\n".join(md))


if __name__ == "__main__":
    main()
