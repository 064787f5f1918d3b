#!/usr/bin/env python3
"""Turns the JSON lines of bench/gpu/check.sh (burn `gpu_step` + `torch_step.py`) into one
Markdown table: step time per fidelity, the burn/PyTorch ratio on the same card, and peak memory
per fidelity as a fraction of full fidelity. Standard library only (runs anywhere)."""
import json
import sys

MIB = 1024 * 1024


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


def frac(v, full):
    return "-" if v is None or not full else f"{v / full:.2f}"


def main():
    rows = load(sys.argv[1])
    card = next((r.get("card") for r in rows if r.get("impl") == "card"), "unknown card")
    burn = {r["fidelity"]: r for r in rows if r.get("impl") == "burn" and r.get("precision", "f32") == "f32"}
    other = [r for r in rows if r.get("impl") == "burn" and r.get("precision", "f32") != "f32"]
    torch = {}
    for r in rows:
        if r.get("impl") == "torch":
            torch.setdefault(r.get("mode", r.get("precision", "f32")), {})[r["fidelity"]] = r
    order = [f for f in ["full", "s", "t", "st"] if f in burn or any(f in t for t in torch.values())]
    for f in list(burn) + [f for t in torch.values() for f in t]:
        if f not in order:
            order.append(f)
    ref = torch.get("f32", {})
    print(f"Card: {card}\n")
    dev = next((r.get("device") for r in burn.values() if r.get("device")), "vulkan")
    tune = next((r.get("autotune") for r in burn.values() if r.get("autotune")), None)
    if tune:
        print(f"burn autotune level: {tune}\n")
    print(f"| fidelity | L x S | burn {dev} f32 step ms | torch f32 (no TF32) ms | burn / torch | "
          "torch TF32 ms | torch bf16 autocast ms | burn live peak MiB (x full) | burn reserved MiB | "
          "burn nvidia-smi +MiB (process) | torch max allocated MiB (x full) | torch bf16 MiB (x full) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    fb = (burn.get("full") or {}).get("peak_in_use_bytes")
    ft = (ref.get("full") or {}).get("peak_bytes")
    fbf = (torch.get("bf16", {}).get("full") or {}).get("peak_bytes")
    for f in order:
        b = burn.get(f, {})
        t = ref.get(f, {})
        t32 = torch.get("tf32", {}).get(f, {})
        bf = torch.get("bf16", {}).get(f, {})
        shape = next((f"{r['snippets']}x{r['size']}" for r in (b, t, bf) if "snippets" in r), "?")
        bs, ts = b.get("step_s_median"), t.get("step_s_median")
        ratio = f"{bs / ts:.2f}x" if bs and ts else "-"
        bcell = ms(bs) if "error" not in b else f"error: {b['error'][:60]}"
        tcell = ms(ts) if "error" not in t else f"error: {t['error'][:60]}"
        print(f"| {f} | {shape} | {bcell} | {tcell} | {ratio} | {ms(t32.get('step_s_median'))} | "
              f"{ms(bf.get('step_s_median'))} | {mib(b.get('peak_in_use_bytes'))} ({frac(b.get('peak_in_use_bytes'), fb)}) | "
              f"{mib(b.get('peak_bytes'))} | "
              f"{smi if (smi := b.get('smi_peak_mib_process', b.get('smi_peak_mib'))) is not None else '-'} | {mib(t.get('peak_bytes'))} ({frac(t.get('peak_bytes'), ft)}) | "
              f"{mib(bf.get('peak_bytes'))} ({frac(bf.get('peak_bytes'), fbf)}) |")
    for r in other:
        what = r.get("error") or f"{ms(r.get('step_s_median'))} ms, live {mib(r.get('peak_in_use_bytes'))} MiB"
        print(f"\nburn {r.get('device')} {r.get('precision')} {r.get('fidelity')}: {what}")
    print("\nStep = forward + G-TAD loss + backward + SGD update, 1 video, 1 frame per snippet; "
          "median of the timed steps after warm-up. burn live = bytes in use after the forward pass "
          "and after the step (memory_pool_usage, synced, warm-up steps), reserved = allocator pages; "
          "torch: max_memory_allocated per fidelity.")


if __name__ == "__main__":
    main()
