#!/usr/bin/env python3
"""The PyTorch peer of `gpu_step` (crates/lofi-model/benches/gpu_step.rs): one LoFi training step
of a TSM-ResNet-18 encoder + a G-TAD head (sizes from docs/shared gtad.md: stem 256 groups 4,
GCNeXt k=3 with 32 groups of width 4, SGAlign 32 + 4 samples with 0.5 extension, map convs
9216 -> 512 -> 128 -> 128 -> 128 -> 2, D = L) + a G-TAD-style loss + backward + SGD update.

Why it exists: issue 6 asks for the ratio of our step time to PyTorch's on the same card and the
memory per fidelity. This script prints one JSON object per fidelity, like the Rust bench, with
the median of the timed steps (after warm-up, with torch.cuda.synchronize around each) and the
peak memory from torch.cuda.max_memory_allocated, twice: over the whole run of a fidelity
(`peak_bytes`, warm-up included) and over the timed steps alone (`steady_peak_bytes`, the peak
statistics reset after the warm-up). They differ because cudnn.benchmark tries convolution
algorithms with large workspaces during the first steps at a new shape (on the H200 a T-fidelity
f32 run peaked at 39.9 GiB that way); the steady figure is what a training run holds, and what
burn's in-use samples measure.

SGAlign here samples with a dense gather into the [B, 256*36, D, L] map, then the 1x1 conv, as the
published G-TAD code does with its sampling matrix; our Rust head fuses the gather with the first
map convolution, so memory differences at the head are expected and are part of what is measured.

`--mode extract` times the encoder's forward pass alone (eval mode, no autograd), as feature
extraction runs it, and reports frames per second like `gpu_step --mode extract`.

Self-contained (torch only, no torchvision). `--device cpu --tiny` runs in seconds for tests.
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

FIDELITIES = {"full": (100, 224), "s": (100, 112), "t": (25, 224), "st": (50, 158)}


def temporal_shift(x, n_segment, fold_div=8):
    nt, c, h, w = x.shape
    v = x.view(nt // n_segment, n_segment, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]
    out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]
    out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


class Basic(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.down = None
        if stride != 1 or cin != planes:
            self.down = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x, n_segment):
        y = F.relu(self.bn1(self.conv1(temporal_shift(x, n_segment))))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


class TsmResNet18(nn.Module):
    def __init__(self, w=64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        blocks, cin = [], w
        for i in range(4):
            planes = w << i
            blocks += [Basic(cin, planes, 1 if i == 0 else 2), Basic(planes, planes, 1)]
            cin = planes
        self.blocks = nn.ModuleList(blocks)
        self.out_channels = cin

    def forward(self, video):
        b, l, f, c, h, w = video.shape
        x = video.reshape(b * l * f, c, h, w)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for blk in self.blocks:
            x = blk(x, l * f)
        return x.mean((2, 3)).view(b, l, f, -1).mean(2)  # [B, L, C]


def knn(x, k):
    d = torch.cdist(x.transpose(1, 2), x.transpose(1, 2))  # [B, L, L]
    return d.topk(k, dim=-1, largest=False).indices  # [B, L, k]


def neighbours(x, idx):
    b, c, l = x.shape
    k = idx.shape[-1]
    flat = idx.reshape(b, 1, l * k).expand(b, c, l * k)
    return x.gather(2, flat).view(b, c, l, k)


class Gcnext(nn.Module):
    def __init__(self, ch, k, groups, wpg):
        super().__init__()
        w = groups * wpg
        self.k = k
        self.t1, self.t2, self.t3 = nn.Conv1d(ch, w, 1), nn.Conv1d(w, w, 3, padding=1, groups=groups), nn.Conv1d(w, ch, 1)
        self.s1, self.s2, self.s3 = nn.Conv2d(2 * ch, w, 1), nn.Conv2d(w, w, 1, groups=groups), nn.Conv2d(w, ch, 1)

    def forward(self, x):
        t = self.t3(F.relu(self.t2(F.relu(self.t1(x)))))
        nb = neighbours(x, knn(x.detach(), self.k))
        e = torch.cat([nb, x.unsqueeze(3).expand_as(nb)], 1)
        s = self.s3(F.relu(self.s2(F.relu(self.s1(e))))).max(3).values
        return F.relu(t + s + x)


def sample_table(l, slots, ratio, device):
    """Per (slot, duration, start): low index, high index, weight, validity; as flat [slots, D*L]."""
    d = torch.arange(l, device=device, dtype=torch.float32).view(l, 1)
    t = torch.arange(l, device=device, dtype=torch.float32).view(1, l)
    ln = d + 1
    xmin = t - ln * ratio
    xmax = t + ln + ln * ratio
    i = torch.arange(slots, device=device, dtype=torch.float32).view(slots, 1, 1)
    pos = xmin + (i + 0.5) * (xmax - xmin) / slots  # [slots, D, L]
    valid = ((t + ln) <= l) & (pos >= -1.0) & (pos <= l)
    p = pos.clamp(min=0.0)
    lo = p.floor()
    top = lo >= l - 1
    lo = torch.where(top, torch.full_like(lo, l - 1), lo)
    hi = torch.where(top, lo, lo + 1)
    f = torch.where(top, torch.zeros_like(p), p - lo)
    f = f * valid
    w_lo = (1 - f) * valid
    return lo.long().view(slots, -1), hi.long().view(slots, -1), w_lo.view(slots, -1), f.view(slots, -1)


def sgalign(src, table):
    lo, hi, w_lo, w_hi = table  # [S, D*L]
    b, c, l = src.shape
    s, n = lo.shape
    g_lo = src[:, :, lo.reshape(-1)].view(b, c, s, n)
    g_hi = src[:, :, hi.reshape(-1)].view(b, c, s, n)
    return g_lo * w_lo + g_hi * w_hi  # [B, C, S, D*L]


class GtadHead(nn.Module):
    def __init__(self, cin, hidden=256, k=3, groups=32, wpg=4, n=32, nc=4, map_hidden=512, map_ch=128, ratio=0.5):
        super().__init__()
        self.k, self.n, self.nc, self.ratio = k, n, nc, ratio
        self.stem = nn.Conv1d(cin, hidden, 3, padding=1, groups=4)
        self.backbone1 = Gcnext(hidden, k, groups, wpg)
        self.start_gcn, self.end_gcn = Gcnext(hidden, k, groups, wpg), Gcnext(hidden, k, groups, wpg)
        self.start_out, self.end_out = nn.Conv1d(hidden, 1, 1), nn.Conv1d(hidden, 1, 1)
        self.backbone2 = Gcnext(hidden, k, groups, wpg)
        self.loc = nn.ModuleList([nn.Conv2d(hidden * (n + nc), map_hidden, 1), nn.Conv2d(map_hidden, map_ch, 1),
                                  nn.Conv2d(map_ch, map_ch, 1), nn.Conv2d(map_ch, map_ch, 1)])
        self.out = nn.Conv2d(map_ch, 2, 1)
        self.tables = {}

    def forward(self, x):
        b, c, l = x.shape
        if l not in self.tables:
            self.tables[l] = (sample_table(l, self.n, self.ratio, x.device), sample_table(l, self.nc, self.ratio, x.device))
        base = self.backbone1(F.relu(self.stem(x)))
        start = torch.sigmoid(self.start_out(self.start_gcn(base))).view(b, l)
        end = torch.sigmoid(self.end_out(self.end_gcn(base))).view(b, l)
        y = self.backbone2(base)
        ctx = neighbours(y, knn(y.detach(), self.k)).mean(3)
        ti, tc = self.tables[l]
        m = torch.cat([sgalign(y, ti), sgalign(ctx, tc)], 2).reshape(b, -1, l, l)
        for conv in self.loc:
            m = F.relu(conv(m))
        return start, end, torch.sigmoid(self.out(m))


def targets(l, device, segs=((0.1, 0.35), (0.5, 0.9))):
    """Boundary and IoU targets for two fixed segments (same as the Rust bench)."""
    t = (torch.arange(l, device=device, dtype=torch.float32) + 0.5) / l
    start = torch.zeros(l, device=device)
    end = torch.zeros(l, device=device)
    w = 3.0 / l
    for s, e in segs:
        start = torch.maximum(start, ((t - s).abs() <= w / 2).float())
        end = torch.maximum(end, ((t - e).abs() <= w / 2).float())
    d = torch.arange(l, device=device, dtype=torch.float32).view(l, 1)
    a0 = torch.arange(l, device=device, dtype=torch.float32).view(1, l) / l
    a1 = a0 + (d + 1) / l
    iou = torch.zeros(l, l, device=device)
    for s, e in segs:
        inter = (torch.minimum(a1, torch.tensor(e)) - torch.maximum(a0, torch.tensor(s))).clamp(min=0)
        iou = torch.maximum(iou, inter / ((a1 - a0) + (e - s) - inter))
    mask = (a1 <= 1.0 + 1e-6).float()
    return start, end, iou * mask, mask


def wbce(p, g, mask=None):
    eps = 1e-6
    if mask is None:
        mask = torch.ones_like(g)
    pos = (g > 0.5).float() * mask
    num = mask.sum()
    npos = pos.sum().clamp(min=1)
    ratio = num / npos
    c1 = 0.5 * ratio / (ratio - 1).clamp(min=eps)
    c0 = 0.5 * ratio
    loss = c1 * pos * torch.log(p + eps) + c0 * (1 - pos) * mask * torch.log(1 - p + eps)
    return -loss.sum() / num


def gtad_loss(out, tgt):
    start, end, maps = out
    gs, ge, giou, mask = tgt
    b = start.shape[0]
    boundary = wbce(start, gs.expand(b, -1)) + wbce(end, ge.expand(b, -1))
    reg = (((maps[:, 0] - giou) ** 2) * mask).sum() / (mask.sum() * b)
    cls = wbce(maps[:, 1], (giou > 0.9).float().expand(b, -1, -1), mask.expand(b, -1, -1))
    return boundary + 10 * reg + cls


def run(args, name, l, size, device):
    torch.manual_seed(7)
    enc = TsmResNet18(args.base_width).to(device)
    head = GtadHead(enc.out_channels, **({} if not args.tiny else dict(hidden=16, groups=4, n=8, nc=2, map_hidden=32, map_ch=16))).to(device)
    opt = torch.optim.SGD(list(enc.parameters()) + list(head.parameters()), lr=0.01)
    video = (torch.rand(args.batch, l, args.frames, 3, size, size, device=device) * 4 - 2)
    tgt = targets(l, device)
    amp = args.precision == "bf16"
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    times, warm, warm_peak = [], 0.0, None
    t_start = time.perf_counter()
    loss_v = float("nan")
    for step in range(args.warmup + args.steps):
        if step >= args.warmup and times and time.perf_counter() - t_start > args.time_cap_s:
            break
        sync()
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            feats = enc(video)
            out = head(feats.transpose(1, 2))
        loss = gtad_loss(tuple(o.float() for o in out), tgt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_v = loss.item()
        sync()
        dt = time.perf_counter() - t0
        if step < args.warmup:
            warm += dt
        else:
            times.append(dt)
        if not math.isfinite(loss_v):
            raise RuntimeError(f"loss is {loss_v} at step {step}")
        if step == args.warmup - 1:
            warm_peak = end_warmup(device)
    peak, steady = peaks(device, warm_peak)
    reserved = torch.cuda.max_memory_reserved() if device.type == "cuda" else None
    return {"impl": "torch", "kind": "step", "device": str(device), "precision": args.precision, "fidelity": name,
            "snippets": l, "size": size, "frames": args.frames, "batch": args.batch,
            "step_s_median": statistics.median(times), "step_s_min": min(times), "steps": len(times),
            "warmup_s": round(warm, 3), "peak_bytes": peak, "steady_peak_bytes": steady,
            "peak_reserved_bytes": reserved,
            "model_bytes": base if device.type == "cuda" else None, "loss": loss_v,
            "torch": torch.__version__,
            "card": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}


def end_warmup(device):
    """The peak of the warm-up steps, then the peak statistics reset for the timed steps."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    return peak


def peaks(device, warm_peak):
    """(peak over the whole run, peak over the timed steps) after the timed steps; None off CUDA."""
    if device.type != "cuda":
        return None, None
    steady = torch.cuda.max_memory_allocated()
    return (steady if warm_peak is None else max(warm_peak, steady)), steady


def run_extract(args, name, l, size, device):
    torch.manual_seed(7)
    enc = TsmResNet18(args.base_width).to(device).eval()
    video = (torch.rand(args.batch, l, args.frames, 3, size, size, device=device) * 4 - 2)
    amp = args.precision == "bf16"
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    times, warm, warm_peak = [], 0.0, None
    t_start = time.perf_counter()
    mean = float("nan")
    with torch.inference_mode():
        for step in range(args.warmup + args.steps):
            if step >= args.warmup and times and time.perf_counter() - t_start > args.time_cap_s:
                break
            sync()
            t0 = time.perf_counter()
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                feats = enc(video)
            mean = feats.float().mean().item()
            sync()
            dt = time.perf_counter() - t0
            if step < args.warmup:
                warm += dt
            else:
                times.append(dt)
            if not math.isfinite(mean):
                raise RuntimeError(f"features are not finite at pass {step}")
            if step == args.warmup - 1:
                warm_peak = end_warmup(device)
    med = statistics.median(times)
    peak, steady = peaks(device, warm_peak)
    return {"impl": "torch", "kind": "extract", "device": str(device), "precision": args.precision,
            "fidelity": name, "snippets": l, "size": size, "frames": args.frames, "batch": args.batch,
            "step_s_median": med, "step_s_min": min(times), "steps": len(times),
            "warmup_s": round(warm, 3), "frames_per_s": args.batch * l * args.frames / med,
            "peak_bytes": peak, "steady_peak_bytes": steady, "loss": mean, "torch": torch.__version__}


def parse_fidelity(f):
    if f in FIDELITIES:
        return f, *FIDELITIES[f]
    l, _, s = f.partition("x")
    if not (l.isdigit() and s.isdigit() and int(l) > 0 and int(s) > 0):
        raise argparse.ArgumentTypeError(f"unknown fidelity {f!r} (full, s, t, st or LxS)")
    return f, int(l), int(s)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--fidelity", default="full,s,t,st")
    ap.add_argument("--base-width", type=int, default=64)
    ap.add_argument("--tiny", action="store_true", help="small G-TAD head (tests)")
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--time-cap-s", type=float, default=60.0)
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--no-tf32", action="store_true", help="keep f32 matmuls/convs in full f32")
    ap.add_argument("--mode", choices=["step", "extract"], default="step",
                    help="a training step, or the encoder's forward pass alone (frames/s)")
    args = ap.parse_args()
    if args.no_tf32:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    failed = False
    for f in args.fidelity.split(","):
        name, l, s = parse_fidelity(f.strip())
        try:
            fn = run_extract if args.mode == "extract" else run
            print(json.dumps(fn(args, name, l, s, device)), flush=True)
        except Exception as e:  # report and carry on with the next fidelity
            failed = True
            print(json.dumps({"impl": "torch", "kind": args.mode, "fidelity": name,
                              "error": f"{type(e).__name__}: {e}"}), flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
