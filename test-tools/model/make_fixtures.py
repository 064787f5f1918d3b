#!/usr/bin/env python3
"""Reference fixtures for lofi-model, computed with PyTorch (not run in CI).

Builds small versions of the networks of crates/lofi-model with the same parameter names, runs
them in float64 and writes one .safetensors file per case into crates/lofi-model/tests/fixtures:
the weights (PyTorch conventions: BatchNorm weight/bias, conv [out, in/groups, k...]), the inputs
(`io.*`), the outputs and a few gradients (`grad.*`) of `sum(output * io.probe)`.

Cases: one TSM basic block (with shortcut and BatchNorm in training mode) and one GCNeXt block.
The implementations below are written from the published descriptions, independently of the Rust
code. SGAlign and the whole G-TAD head are checked against the official G-TAD code's behaviour
instead: see test-tools/gtad/.

Usage (torch in a throw-away venv):
    python3 -m venv /tmp/torchenv && /tmp/torchenv/bin/pip install torch safetensors numpy
    /tmp/torchenv/bin/python test-tools/model/make_fixtures.py
"""
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

torch.manual_seed(1234)
DT = torch.float64
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "crates", "lofi-model", "tests", "fixtures")


def temporal_shift(x, n_segment, fold_div=8):
    nt, c, h, w = x.shape
    v = x.view(nt // n_segment, n_segment, c, h, w)
    fold = c // fold_div
    out = torch.zeros_like(v)
    out[:, :-1, :fold] = v[:, 1:, :fold]  # frame t reads t + 1
    out[:, 1:, fold:2 * fold] = v[:, :-1, fold:2 * fold]  # frame t reads t - 1
    out[:, :, 2 * fold:] = v[:, :, 2 * fold:]
    return out.view(nt, c, h, w)


class Shortcut(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, stride, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.bn(self.conv(x))


class TsmBasicBlock(nn.Module):
    def __init__(self, cin, planes, stride, n_segment):
        super().__init__()
        self.n_segment = n_segment
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = Shortcut(cin, planes, stride)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(temporal_shift(x, self.n_segment))))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.downsample(x))


def knn(x, k):
    # x [B, C, L]; squared distances, self included; returns [B, L, k]
    d = (x.unsqueeze(3) - x.unsqueeze(2)).pow(2).sum(1)  # [B, L, L]
    return d.topk(k, dim=-1, largest=False).indices


def neighbours(x, idx):
    # x [B, C, L], idx [B, L, k] -> [B, C, L, k]
    b, c, l = x.shape
    k = idx.shape[-1]
    out = torch.stack([x[i][:, idx[i].reshape(-1)].view(c, l, k) for i in range(b)])
    return out


class Gcnext(nn.Module):
    def __init__(self, ch, k, groups, wpg):
        super().__init__()
        w = groups * wpg
        self.k = k
        self.tconv1 = nn.Conv1d(ch, w, 1)
        self.tconv2 = nn.Conv1d(w, w, 3, padding=1, groups=groups)
        self.tconv3 = nn.Conv1d(w, ch, 1)
        self.sconv1 = nn.Conv2d(2 * ch, w, 1)
        self.sconv2 = nn.Conv2d(w, w, 1, groups=groups)
        self.sconv3 = nn.Conv2d(w, ch, 1)

    def forward(self, x):
        t = self.tconv3(F.relu(self.tconv2(F.relu(self.tconv1(x)))))
        nb = neighbours(x, knn(x.detach(), self.k))
        me = x.unsqueeze(3).expand_as(nb)
        e = torch.cat([nb, me], 1)
        s = self.sconv3(F.relu(self.sconv2(F.relu(self.sconv1(e))))).max(3).values
        return F.relu(t + s + x)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def dump(name, module, inputs, outputs, probes, grads):
    tensors = {k: f32(v) for k, v in module.state_dict().items() if "num_batches_tracked" not in k}
    for k, v in inputs.items():
        tensors["io." + k] = f32(v)
    for k, v in outputs.items():
        tensors["io.out." + k] = f32(v)
    for k, v in probes.items():
        tensors["io.probe." + k] = f32(v)
    for k, v in grads.items():
        tensors["grad." + k] = f32(v)
    path = os.path.join(OUT, name + ".safetensors")
    save_file(tensors, path)
    print(f"{path}: {os.path.getsize(path)} bytes")


def probe_loss(outputs):
    probes = {k: torch.randn_like(v) for k, v in outputs.items()}
    loss = sum((outputs[k] * probes[k]).sum() for k in outputs)
    return loss, probes


def randomise_bn(module):
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


def tsm_block():
    blk = TsmBasicBlock(16, 32, 2, n_segment=4).to(DT)
    randomise_bn(blk)
    blk.train()
    x = torch.randn(2 * 4, 16, 8, 8, dtype=DT, requires_grad=True)
    y = blk(x)
    loss, probes = probe_loss({"y": y})
    loss.backward()
    grads = {"x": x.grad, "conv1.weight": blk.conv1.weight.grad, "bn1.weight": blk.bn1.weight.grad,
             "downsample.conv.weight": blk.downsample.conv.weight.grad}
    dump("tsm_block", blk, {"x": x}, {"y": y}, probes, grads)


def gcnext_block():
    blk = Gcnext(32, 3, 8, 4).to(DT)
    x = torch.randn(2, 32, 12, dtype=DT, requires_grad=True)
    y = blk(x)
    loss, probes = probe_loss({"y": y})
    loss.backward()
    grads = {"x": x.grad, "tconv2.weight": blk.tconv2.weight.grad, "sconv1.weight": blk.sconv1.weight.grad,
             "sconv3.bias": blk.sconv3.bias.grad}
    dump("gcnext_block", blk, {"x": x}, {"y": y}, probes, grads)


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    tsm_block()
    gcnext_block()


# ---------------------------------------------------------------------------------------------
# A whole TSM-ResNet-18 (width 4) in the TSM authors' checkpoint layout, saved as a .pth, with
# the snippet features it gives in eval mode (BatchNorm running statistics), to test .pth import.

class TorchvisionBasic(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv2d(cin, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x, n_segment):
        y = F.relu(self.bn1(self.conv1(temporal_shift(x, n_segment))))
        y = self.bn2(self.conv2(y))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class TsmResNet18(nn.Module):
    def __init__(self, w, classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, w, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w)
        cin = w
        for i in range(4):
            planes = w << i
            stride = 1 if i == 0 else 2
            blocks = nn.ModuleList([TorchvisionBasic(cin, planes, stride), TorchvisionBasic(planes, planes, 1)])
            setattr(self, f"layer{i + 1}", blocks)
            cin = planes
        self.fc = nn.Linear(cin, classes)

    def forward(self, video):
        b, l, f, c, h, w = video.shape
        x = video.reshape(b * l * f, c, h, w)
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(4):
            for blk in getattr(self, f"layer{i + 1}"):
                x = blk(x, l * f)
        feats = x.mean((2, 3)).view(b, l, f, -1).mean(2)
        return feats, self.fc(feats.mean(1))


def tsm_resnet18_pth():
    net = TsmResNet18(4, 5).to(DT)
    randomise_bn(net)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    net.eval()
    video = torch.randn(1, 3, 2, 3, 32, 32, dtype=DT)
    with torch.no_grad():
        feats, logits = net(video)
    sd = {}
    for k, v in net.state_dict().items():
        k = k.replace(".conv1.", ".conv1.net.") if k.startswith("layer") else k
        k = "module.new_fc." + k[3:] if k.startswith("fc.") else "module.base_model." + k
        sd[k] = v.to(torch.float32)
    path = os.path.join(OUT, "tsm_r18_w4.pth")
    torch.save({"epoch": 1, "state_dict": sd}, path)
    print(f"{path}: {os.path.getsize(path)} bytes")
    save_file({"io.video": f32(video), "io.out.features": f32(feats), "io.out.logits": f32(logits)},
              os.path.join(OUT, "tsm_r18_w4_io.safetensors"))


if __name__ == "__main__":
    tsm_resnet18_pth()


# ---------------------------------------------------------------------------------------------
# A small R(2+1)D-18 (layer1 width 4) with torchvision's module layout (stem.0/1/3/4,
# layerX.Y.convZ.0.{0,1,3}, convZ.1, downsample.0/1), saved as a .pth, with its eval-mode clip
# features, to check the R(2+1)D trunk and its import.

def conv2plus1d(cin, cout, mid, stride):
    return nn.Sequential(
        nn.Conv3d(cin, mid, (1, 3, 3), (1, stride, stride), (0, 1, 1), bias=False),
        nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
        nn.Conv3d(mid, cout, (3, 1, 1), (stride, 1, 1), (1, 0, 0), bias=False))


class R21Block(nn.Module):
    def __init__(self, cin, planes, stride):
        super().__init__()
        mid = (cin * planes * 27) // (cin * 9 + 3 * planes)
        self.conv1 = nn.Sequential(conv2plus1d(cin, planes, mid, stride), nn.BatchNorm3d(planes), nn.ReLU(inplace=True))
        self.conv2 = nn.Sequential(conv2plus1d(planes, planes, mid, 1), nn.BatchNorm3d(planes))
        self.downsample = None
        if stride != 1 or cin != planes:
            self.downsample = nn.Sequential(nn.Conv3d(cin, planes, 1, stride, bias=False), nn.BatchNorm3d(planes))

    def forward(self, x):
        y = self.conv2(self.conv1(x))
        return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class R2Plus1d18(nn.Module):
    def __init__(self, w):
        super().__init__()
        mid = 45 * w // 64
        self.stem = nn.Sequential(
            nn.Conv3d(3, mid, (1, 7, 7), (1, 2, 2), (0, 3, 3), bias=False), nn.BatchNorm3d(mid), nn.ReLU(inplace=True),
            nn.Conv3d(mid, w, (3, 1, 1), 1, (1, 0, 0), bias=False), nn.BatchNorm3d(w), nn.ReLU(inplace=True))
        cin = w
        for i in range(4):
            planes = w << i
            stride = 1 if i == 0 else 2
            setattr(self, f"layer{i + 1}", nn.Sequential(R21Block(cin, planes, stride), R21Block(planes, planes, 1)))
            cin = planes

    def forward(self, clips):
        x = self.stem(clips)
        for i in range(4):
            x = getattr(self, f"layer{i + 1}")(x)
        return x.mean((2, 3, 4))


def r2plus1d_pth():
    net = R2Plus1d18(4).to(DT)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm3d):
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    net.eval()
    video = torch.randn(1, 2, 4, 3, 32, 32, dtype=DT)  # [B, L, F, 3, S, S]
    with torch.no_grad():
        feats = net(video.reshape(2, 4, 3, 32, 32).transpose(1, 2)).view(1, 2, -1)
    sd = {k: v.to(torch.float32) for k, v in net.state_dict().items()}
    path = os.path.join(OUT, "r2plus1d18_w4.pth")
    torch.save(sd, path)
    print(f"{path}: {os.path.getsize(path)} bytes")
    save_file({"io.video": f32(video), "io.out.features": f32(feats)},
              os.path.join(OUT, "r2plus1d18_w4_io.safetensors"))


if __name__ == "__main__":
    r2plus1d_pth()
