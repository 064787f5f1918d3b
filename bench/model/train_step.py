#!/usr/bin/env python3
"""PyTorch counterpart of crates/lofi-model/benches/train_step.rs (not run in CI).

One training step (forward + backward + SGD, lr 0.1, weight decay 1e-4) of TSM-ResNet-18 +
G-TAD on 1 video x L snippets x F frames x S px on the CPU; prints seconds per step and the
growth of the process's peak resident memory over the step (VmHWM - VmRSS before it), the same
measures as the Rust bench. SGAlign uses the same gather-based, first-convolution-fused
formulation as lofi-model (see crates/lofi-model/src/gtad.rs) so that the two sides compute the
same thing.

Usage: python3 train_step.py --snippets 100 --size 224 [--frames 1] [--steps 2] [--threads 2]
       [--extract]

--extract measures feature extraction instead: the encoder's forward pass alone in eval mode
(BatchNorm on running statistics) under torch.inference_mode(), one video of L x F frames per
pass, like the Rust bench's --extract.
"""
import argparse
import math
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def status_kib(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    return 0


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
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x, t):
        y = F.relu(self.bn1(self.conv1(temporal_shift(x, t))))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class TsmR18(nn.Module):
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
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(video.reshape(b * l * f, c, h, w)))), 3, 2, 1)
        for blk in self.blocks:
            x = blk(x, l * f)
        return x.mean((2, 3)).view(b, l, f, -1).mean(2)


def knn(x, k):
    inner = torch.matmul(x.transpose(1, 2), x)
    sq = (x ** 2).sum(1, keepdim=True)
    neg = 2 * inner - sq - sq.transpose(1, 2)
    return neg.topk(k, dim=-1).indices


def gather_nb(x, idx):
    b, c, l = x.shape
    k = idx.shape[-1]
    flat = (idx + torch.arange(b).view(b, 1, 1) * l).reshape(-1)
    return x.transpose(1, 2).reshape(b * l, c)[flat].view(b, l, k, c).permute(0, 3, 1, 2)


class Gcnext(nn.Module):
    def __init__(self, ch, k=3, groups=32, wpg=4):
        super().__init__()
        w = groups * wpg
        self.k = k
        self.t = nn.Sequential(nn.Conv1d(ch, w, 1), nn.ReLU(), nn.Conv1d(w, w, 3, padding=1, groups=groups), nn.ReLU(),
                               nn.Conv1d(w, ch, 1))
        self.s = nn.Sequential(nn.Conv2d(2 * ch, w, 1), nn.ReLU(), nn.Conv2d(w, w, 1, groups=groups), nn.ReLU(),
                               nn.Conv2d(w, ch, 1))

    def forward(self, x):
        nb = gather_nb(x, knn(x.detach(), self.k))
        e = torch.cat([nb, x.unsqueeze(3).expand_as(nb)], 1)
        return F.relu(self.t(x) + self.s(e).max(3).values + x)


def table(l, d, slots, ratio=0.5):
    n = slots * d * l
    lo, hi = np.zeros(n, np.int64), np.zeros(n, np.int64)
    wl, wh = np.zeros(n, np.float32), np.zeros(n, np.float32)
    for dur in range(d):
        for t in range(l - dur):
            ln = dur + 1
            xmin, xmax = t - ln * ratio, t + dur + 1 + ln * ratio
            for i in range(slots):
                pos = xmin + (i + 0.5) * (xmax - xmin) / slots
                j = i * d * l + dur * l + t
                if pos < -1 or pos > l:
                    continue
                p = max(pos, 0.0)
                a = int(math.floor(p))
                if a >= l - 1:
                    a = b = l - 1
                    p = float(a)
                else:
                    b = a + 1
                fr = p - a
                lo[j], hi[j], wl[j], wh[j] = a, b, 1 - fr, fr
    return [torch.from_numpy(v) for v in (lo, hi, wl, wh)]


class Gtad(nn.Module):
    def __init__(self, cin, h=256, n=32, nc=4):
        super().__init__()
        self.n, self.nc = n, nc
        self.stem = nn.Conv1d(cin, h, 3, padding=1, groups=4)
        self.b1, self.b2 = Gcnext(h), Gcnext(h)
        self.sg, self.eg = Gcnext(h), Gcnext(h)
        self.so, self.eo = nn.Conv1d(h, 1, 1), nn.Conv1d(h, 1, 1)
        self.loc1 = nn.Conv2d(h * (n + nc), 512, 1)
        self.rest = nn.Sequential(nn.ReLU(), nn.Conv2d(512, 128, 1), nn.ReLU(), nn.Conv2d(128, 128, 1), nn.ReLU(),
                                  nn.Conv2d(128, 128, 1), nn.ReLU(), nn.Conv2d(128, 2, 1), nn.Sigmoid())
        self.tables = {}

    def align_project(self, x, ctx):
        b, c, l = x.shape
        if l not in self.tables:
            self.tables[l] = (table(l, l, self.n), table(l, l, self.nc))
        o = self.loc1.weight.shape[0]
        w = self.loc1.weight.view(o, c, self.n + self.nc).permute(2, 0, 1)
        acc = 0
        for (lo, hi, wl, wh), src, start, slots in [(self.tables[l][0], x, 0, self.n),
                                                   (self.tables[l][1], ctx, self.n, self.nc)]:
            y = torch.matmul(w[start:start + slots].reshape(1, slots * o, c), src)
            a = l * l
            for i in range(slots):
                yi = y[:, i * o:(i + 1) * o]
                s = slice(i * a, (i + 1) * a)
                acc = acc + yi[:, :, lo[s]] * wl[s] + yi[:, :, hi[s]] * wh[s]
        return (acc + self.loc1.bias.view(1, o, 1)).view(b, o, l, l)

    def forward(self, feats):
        b, _, l = feats.shape
        base = self.b1(F.relu(self.stem(feats)))
        start = torch.sigmoid(self.so(self.sg(base))).view(b, l)
        end = torch.sigmoid(self.eo(self.eg(base))).view(b, l)
        y = self.b2(base)
        ctx = gather_nb(y, knn(y.detach(), 3)).mean(3)
        return start, end, self.rest(self.align_project(y, ctx))


def targets(segs, l):
    gap = 1.0 / l
    half = 1.5 * gap

    def ioa(a0, a1, b0, b1):
        return max(min(a1, b1) - max(a0, b0), 0.0) / (a1 - a0)

    def iou(a0, a1, b0, b1):
        inter = max(min(a1, b1) - max(a0, b0), 0.0)
        return inter / ((a1 - a0) + (b1 - b0) - inter)

    st = [max(ioa((i - .5) * gap, (i + .5) * gap, s - half, s + half) for s, _ in segs) for i in range(l)]
    en = [max(ioa((i - .5) * gap, (i + .5) * gap, e - half, e + half) for _, e in segs) for i in range(l)]
    m = np.zeros((l, l), np.float32)
    mask = np.zeros((l, l), np.float32)
    for d in range(l):
        for t in range(l - d):
            m[d, t] = max(iou(t * gap, (t + d + 1) * gap, s, e) for s, e in segs)
            mask[d, t] = 1
    return torch.tensor(st), torch.tensor(en), torch.from_numpy(m), torch.from_numpy(mask)


def bce(p, gt, valid, thr, mean_all):
    pos = (gt > thr).float() * valid
    neg = (gt <= thr).float() * valid
    np_, nn_ = pos.sum(), neg.sum()
    ent = np_ + nn_
    c1 = 0.5 * ent / np_ if np_ > 0 else 0.0
    c0 = 0.5 * ent / nn_ if nn_ > 0 else 0.0
    norm = gt.numel() if mean_all else max(float(ent), 1.0)
    return -(c1 * pos * torch.log(p + 1e-6) + c0 * neg * torch.log(1 - p + 1e-6)).sum() / norm


def loss_fn(out, tg):
    start, end, maps = out
    gs, ge, gi, mask = tg
    ones = torch.ones_like(gs)
    lb = bce(start[0], gs, ones, 0.5, True) + bce(end[0], ge, ones, 0.5, True)
    reg, cls = maps[0, 0], maps[0, 1]
    h = (gi > 0.7).float() * mask
    m = ((gi <= 0.7) & (gi > 0.3)).float() * mask
    lo = (gi <= 0.3).float() * mask
    r = torch.rand_like(gi)
    nh = h.sum()
    w = h.clone()
    for band in (m, lo):
        keep = min(float(nh / band.sum()), 1.0) if nh > 0 and band.sum() > 0 else 1.0
        w = w + band * (r > 1 - keep).float()
    lr = 0.5 * (w * (reg - gi) ** 2).sum() / w.sum().clamp(min=1)
    lc = bce(cls, gi, mask, 0.9, False)
    return lb + 10 * lr + lc


def extract(a):
    enc = TsmR18().eval()
    video = torch.rand(1, a.snippets, a.frames, 3, a.size, a.size)
    base = status_kib("VmRSS:")
    times, cpu = [], 0.0
    with torch.inference_mode():
        for step in range(a.steps + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            float(enc(video).sum())
            if step > 0:
                times.append(time.perf_counter() - t0)
                cpu += time.process_time() - c0
    peak = status_kib("VmHWM:")
    mean = sum(times) / len(times)
    print(f"pytorch extract depth=18 L={a.snippets} F={a.frames} S={a.size} passes={a.steps} "
          f"sec_per_video={mean:.3f} cpu_sec_per_video={cpu / a.steps:.3f} frames_per_s={a.snippets * a.frames / mean:.2f} "
          f"peak_rss_mib={peak / 1024:.1f} growth_mib={(peak - base) / 1024:.1f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--snippets", type=int, default=100)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--frames", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--extract", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.extract:
        extract(a)
        return
    enc = TsmR18()
    head = Gtad(enc.out_channels)
    params = list(enc.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=0.1, weight_decay=1e-4)
    video = torch.rand(1, a.snippets, a.frames, 3, a.size, a.size)
    tg = targets([(0.1, 0.35), (0.5, 0.9)], a.snippets)
    head.tables[a.snippets] = (table(a.snippets, a.snippets, 32), table(a.snippets, a.snippets, 4))
    base = status_kib("VmRSS:")
    times, cpu = [], 0.0
    for step in range(a.steps + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        opt.zero_grad(set_to_none=True)
        out = head(enc(video).transpose(1, 2))
        loss = loss_fn(out, tg)
        loss.backward()
        opt.step()
        if step > 0:
            times.append(time.perf_counter() - t0)
            cpu += time.process_time() - c0
    peak = status_kib("VmHWM:")
    print(f"pytorch depth=18 L={a.snippets} F={a.frames} S={a.size} steps={a.steps} "
          f"sec_per_step={sum(times) / len(times):.3f} cpu_sec_per_step={cpu / a.steps:.3f} peak_rss_mib={peak / 1024:.1f} "
          f"growth_mib={(peak - base) / 1024:.1f}")


if __name__ == "__main__":
    main()
