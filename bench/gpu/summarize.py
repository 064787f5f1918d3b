#!/usr/bin/env python3
"""Turns the JSON lines of bench/gpu/check.sh (burn `gpu_step`, `torch_step.py`, `lofi demo`)
into Markdown: one table of training-step time and peak memory per fidelity for every
implementation, backend and precision that ran (with burn / PyTorch ratios at equal precision),
then extraction throughput, the start-up of a first run against a run with the kernel cache, the
demo, and whatever failed or was skipped. Standard library only (runs anywhere)."""
import json
import sys

MIB = 1024 * 1024
ORDER = ["full", "s", "t", "st"]


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass
    return rows


def ms(v):
    return "-" if v is None else f"{v * 1000:.1f}"


def mib(v):
    return "-" if v is None else f"{v / MIB:.0f}"


def column(r):
    """The table column of a result: (label, precision, is_torch)."""
    prec = r.get("precision", "f32")
    if r.get("impl") == "torch":
        return (f"torch {prec}", prec, True)
    return (f"burn-{r.get('device', '?')} {prec}", prec, False)


def peak(r):
    """Peak live bytes: PyTorch's max_memory_allocated over the timed steps (older result files:
    over the whole run, cuDNN's algorithm search included), burn's allocator bytes in use."""
    if r.get("impl") == "burn":
        return r.get("peak_in_use_bytes")
    return r.get("steady_peak_bytes", r.get("peak_bytes"))


# The `start` of a backend's first process: an empty kernel cache, or one seeded from an earlier
# run's (check.sh's SEED).
FIRST = ("cold", "seeded")


def main():
    rows = load(sys.argv[1])
    card = next((r.get("card") for r in rows if r.get("impl") == "card"), "") or "no GPU (dry run)"
    print(f"Card: {card}\n")
    tune = next((r.get("autotune") for r in rows if r.get("autotune")), None)
    if tune:
        print(f"burn autotune level: {tune}\n")

    steps = [r for r in rows if r.get("kind", "step") == "step" and r.get("impl") in ("torch", "burn")
             and r.get("start", "cold") in FIRST and r.get("fidelity") != "*"]
    cols, cells = [], {}
    for r in steps:
        c = column(r)
        if c not in cols:
            cols.append(c)
        cells.setdefault((c, r["fidelity"]), r)
    cols.sort(key=lambda c: (not c[2], c[0].split()[0], c[1] != "f32"))
    fids = [f for f in ORDER if any(f == k[1] for k in cells)]
    fids += sorted({k[1] for k in cells} - set(fids))
    torch_of = {c[1]: c for c in cols if c[2]}
    measured = {c for (c, _), r in cells.items() if "step_s_median" in r}
    ratios = [(c, torch_of[c[1]]) for c in cols if not c[2] and c[1] in torch_of and c in measured]

    def shape(f):
        for c in cols:
            r = cells.get((c, f), {})
            if "snippets" in r:
                return f"{r['snippets']}x{r['size']}"
        return "?"

    def cell(c, f):
        r = cells.get((c, f))
        if r is None:
            return "-"
        if "error" in r:
            return "error: " + r["error"][:50].replace("|", "/")
        full = cells.get((c, "full"), {})
        p, pf = peak(r), peak(full)
        rel = f" ({p / pf:.2f}x full)" if p and pf else ""
        return f"{ms(r.get('step_s_median'))} ms (n={r.get('steps')}), {mib(p)} MiB{rel}"

    steady = any("steady_peak_bytes" in r for r in steps)
    torch_peak = ("max_memory_allocated over the timed steps, so without cuDNN's algorithm search "
                  "of the first steps" if steady else
                  "max_memory_allocated over the whole run, cuDNN's algorithm search of the first "
                  "steps included")
    print("Training step (forward + G-TAD loss + backward + SGD, 1 video, 1 frame per snippet): median "
          f"step time over n timed steps after warm-up, and peak live memory (PyTorch: {torch_peak}; "
          "burn: allocator bytes in use, sampled after the forward pass and after the step).\n")
    head = ["fidelity", "L x S"] + [c[0] for c in cols] + [f"{b[0]} / {t[0]}" for b, t in ratios]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for f in fids:
        line = [f, shape(f)] + [cell(c, f) for c in cols]
        for b, t in ratios:
            rb, rt = cells.get((b, f), {}), cells.get((t, f), {})
            vb, vt = rb.get("step_s_median"), rt.get("step_s_median")
            line.append(f"{vb / vt:.2f}x" if vb and vt else "-")
        print("| " + " | ".join(line) + " |")

    ext = [r for r in rows if r.get("kind") == "extract" and "frames_per_s" in r]
    if ext:
        print("\nExtraction (the encoder's forward pass alone, no autodiff):\n")
        print("| implementation | L x S | frames / s | ms per video | peak live MiB |")
        print("|---|---|---:|---:|---:|")
        for r in ext:
            print(f"| {column(r)[0]} | {r['snippets']}x{r['size']} | {r['frames_per_s']:.1f} | "
                  f"{ms(r.get('step_s_median'))} | {mib(peak(r))} |")

    burn = [r for r in rows if r.get("impl") == "burn" and "first_step_s" in r and r.get("kind") == "step"
            and r.get("precision") == "f32"]
    starts = {}
    for r in burn:
        starts.setdefault(r.get("device"), {}).setdefault(r.get("start"), r)
    if starts:
        print("\nStart-up: the first training step of a process (kernels compiled and autotuned on an "
              "empty kernel cache, or on one seeded from an earlier run's, then read back from it by "
              "a second process):\n")
        print("| backend | fidelity | first process's cache | first step, first process (s) | "
              "first step, warm cache (s) |")
        print("|---|---|---|---:|---:|")
        for dev, by in starts.items():
            kind = next((k for k in FIRST if k in by), "cold")
            cold, warm = by.get(kind, {}), by.get("warm", {})
            f = warm.get("fidelity") or cold.get("fidelity")
            cold = next((r for r in burn if r.get("device") == dev and r.get("start") == kind
                         and r.get("fidelity") == f), cold)
            c, w = cold.get("first_step_s"), warm.get("first_step_s")
            label = "empty" if kind == "cold" else "seeded"
            print(f"| burn-{dev} | {f} | {label} | {'-' if c is None else f'{c:.2f}'} | "
                  f"{'-' if w is None else f'{w:.2f}'} |")

    # Each burn process once (a process writes a line per fidelity; the process columns repeat).
    def process(r):
        return (r.get("device"), r.get("precision"), r.get("kind"), r.get("start"), r.get("wall_s"))

    procs, seen = [], set()
    for r in rows:
        if r.get("impl") == "burn" and "wall_s" in r and process(r) not in seen:
            seen.add(process(r))
            procs.append(r)
    if procs:
        print("\nburn processes: wall and CPU seconds of the whole process (start-up, compilation, "
              "autotune and steps) and the GPU's mean utilisation meanwhile (nvidia-smi, 100 ms "
              "samples). CPU seconds near the wall time with an idle GPU mean compilation on one "
              "CPU thread.\n")
        print("| backend | precision | kind | start | fidelities reached | wall s | CPU s | GPU busy % | nvidia-smi peak MiB |")
        print("|---|---|---|---|---|---:|---:|---:|---:|")
        for p in procs:
            reached = [r.get("fidelity") for r in rows if r.get("impl") == "burn" and "step_s_median" in r
                       and process(r) == process(p)]
            def v(x):
                return "-" if x is None else x
            print(f"| burn-{p.get('device')} | {p.get('precision')} | {p.get('kind')} | {p.get('start')} | "
                  f"{', '.join(reached) or 'none'} | {v(p.get('wall_s'))} | {v(p.get('cpu_s'))} | "
                  f"{v(p.get('gpu_busy_pct'))} | {v(p.get('smi_peak_mib_process'))} |")

    kern = [r for r in rows if r.get("impl") == "kernels"]
    if kern:
        print("\nKernels (cubecl's records in each backend's kernel cache; details in kernels.md):\n")
        print("| backend | processes | compiled | compile s | loaded from cache | autotune keys | autotune s | costliest family |")
        print("|---|---:|---:|---:|---:|---:|---:|---|")
        for k in kern:
            top = (k.get("top_families") or [{}])[0]
            fam = f"`{top.get('family')}` ({top.get('compiled')}, {top.get('compile_s')} s)" if top else "-"
            print(f"| {k.get('device')} | {len(k.get('processes', []))} | {k.get('kernels_compiled')} | "
                  f"{k.get('compile_s')} | {k.get('kernels_loaded')} | {k.get('autotune_records')} | "
                  f"{k.get('autotune_wall_s')} | {fam} |")

    for r in rows:
        if r.get("kind") == "demo" and "error" not in r:
            ok = "completed" if r.get("rc") == 0 else f"FAILED (exit {r.get('rc')})"
            print(f"\n`lofi --device {r.get('device')} demo --size tiny`: {ok} in {r.get('seconds')} s "
                  "(demo.json and demo.log beside this table).")

    for r in (r for r in rows if "error" in r and r.get("fidelity") == "*"):
        what = "lofi" if r.get("impl") == "lofi" else column(r)[0]
        print(f"\n{what} {r.get('kind', 'step')} ({r.get('device')}): {r['error']}")


if __name__ == "__main__":
    main()
