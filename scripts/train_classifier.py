#!/usr/bin/env python3
"""Trains the bundled classifier sample (sample_runs/classify) and exports it to ONNX.

A MobileNetV3-Small (the architecture of Howard et al. 2019, as torchvision builds it: the same
blocks, widths, squeeze-excitation and hard-swish; written out here so the script needs torch
alone) for the 20-class synthetic polygons set of `prunescope synth --task classify`, trained
from scratch on the CPU. Preprocessing is prunescope's `torchvision` preset, as torchvision's
ImageNet evaluation transform does it: the shorter side resized to floor(size / 0.875) with
PIL's bilinear filter, a centred size x size crop, /255, ImageNet mean and std.

Run once, in a scratch virtualenv with torch, pillow, onnx and onnxscript (README, "The
classifier sample"):

    prunescope synth --task classify --out /tmp/polygons --train 400 --val 30 --seed 0
    python scripts/train_classifier.py --data /tmp/polygons --out sample_runs/classify

It writes polygons-mobilenetv3s.onnx (with its .onnx.data), polygons-mobilenetv3s.pt (the
PyTorch weights, not bundled) and train_report.json (per-epoch loss and accuracy, the
final validation top-1 and top-5 computed here by PyTorch) into --out.
"""

import argparse
import json
import math
import os
import random
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def make_divisible(v, divisor=8):
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


class ConvBNAct(nn.Sequential):
    def __init__(self, cin, cout, k, stride=1, groups=1, act=None):
        layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
        if act is not None:
            layers.append(act())
        super().__init__(*layers)


# Global average pooling is written as a mean: torch's ONNX exporter turns adaptive_avg_pool2d
# into a flatten-and-gather that is fixed at the example's batch size.


class SqueezeExcite(nn.Module):
    def __init__(self, channels):
        super().__init__()
        squeeze = make_divisible(channels // 4)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * s


class InvertedResidual(nn.Module):
    def __init__(self, cin, k, expanded, cout, se, act, stride):
        super().__init__()
        layers = []
        if expanded != cin:
            layers.append(ConvBNAct(cin, expanded, 1, act=act))
        layers.append(ConvBNAct(expanded, expanded, k, stride, groups=expanded, act=act))
        if se:
            layers.append(SqueezeExcite(expanded))
        layers.append(ConvBNAct(expanded, cout, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3Small(nn.Module):
    # kernel, expanded, out, squeeze-excite, activation, stride (torchvision's "mobilenet_v3_small")
    SETTINGS = [
        (3, 16, 16, True, nn.ReLU, 2),
        (3, 72, 24, False, nn.ReLU, 2),
        (3, 88, 24, False, nn.ReLU, 1),
        (5, 96, 40, True, nn.Hardswish, 2),
        (5, 240, 40, True, nn.Hardswish, 1),
        (5, 240, 40, True, nn.Hardswish, 1),
        (5, 120, 48, True, nn.Hardswish, 1),
        (5, 144, 48, True, nn.Hardswish, 1),
        (5, 288, 96, True, nn.Hardswish, 2),
        (5, 576, 96, True, nn.Hardswish, 1),
        (5, 576, 96, True, nn.Hardswish, 1),
    ]

    def __init__(self, classes):
        super().__init__()
        layers = [ConvBNAct(3, 16, 3, 2, act=nn.Hardswish)]
        cin = 16
        for k, e, c, se, act, s in self.SETTINGS:
            layers.append(InvertedResidual(cin, k, e, c, se, act, s))
            cin = c
        layers.append(ConvBNAct(cin, 576, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(
            nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(1024, classes)
        )

    def forward(self, x):
        x = self.features(x).mean((2, 3)).flatten(1)
        return self.classifier(x)


def load_split(root):
    names = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)))
    samples = []
    for i, n in enumerate(names):
        for f in sorted(os.listdir(os.path.join(root, n))):
            samples.append((os.path.join(root, n, f), i))
    return names, samples


def resized(path, size):
    """The shorter side resized to floor(size / 0.875), bilinear (torchvision's Resize on PIL)."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    short = int(size / 0.875)
    if w <= h:
        nw, nh = short, int(short * h / w)
    else:
        nw, nh = int(short * w / h), short
    return np.asarray(img.resize((nw, nh), Image.BILINEAR), dtype=np.uint8)


def crop_normalise(a, size, top=None, left=None):
    h, w, _ = a.shape
    if top is None:
        top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    x = a[top : top + size, left : left + size].astype(np.float32) / 255.0
    return ((x - MEAN) / STD).transpose(2, 0, 1)


def evaluate(model, images, labels, classes, batch=200):
    model.eval()
    confusion = np.zeros((classes, classes), dtype=np.int64)  # [predicted, true]
    top1 = top5 = 0
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(np.stack(images[i : i + batch]))
            y = torch.tensor(labels[i : i + batch])
            top = model(x).topk(5, 1).indices
            top1 += int((top[:, 0] == y).sum())
            top5 += int((top == y[:, None]).any(1).sum())
            for p, t in zip(top[:, 0].tolist(), y.tolist()):
                confusion[p, t] += 1
    n = len(images)
    return top1 / n, top5 / n, confusion


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="the synth output: train/CLASS and val/CLASS")
    ap.add_argument("--out", required=True)
    ap.add_argument("--size", type=int, default=96)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(os.cpu_count() or 2)

    names, train = load_split(os.path.join(args.data, "train"))
    val_names, val = load_split(os.path.join(args.data, "val"))
    assert names == val_names, "train and val name different classes"
    train_px = [resized(p, args.size) for p, _ in train]
    train_y = [c for _, c in train]
    val_x = [crop_normalise(resized(p, args.size), args.size) for p, _ in val]
    val_y = [c for _, c in val]
    print(f"{len(train)} training and {len(val)} validation images, {len(names)} classes", flush=True)

    model = MobileNetV3Small(len(names))
    params = sum(p.numel() for p in model.parameters())
    print(f"MobileNetV3-Small, {params} parameters", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    steps = args.epochs * math.ceil(len(train) / args.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
    history = []
    for epoch in range(args.epochs):
        model.train()
        started, order, loss_sum = time.time(), np.random.permutation(len(train)), 0.0
        for i in range(0, len(order), args.batch):
            xs, ys = [], []
            for k in order[i : i + args.batch]:
                a = train_px[k]
                # Augmentation: a random crop of the resized picture and a horizontal flip
                # (neither changes a polygon's class).
                top = random.randint(0, a.shape[0] - args.size)
                left = random.randint(0, a.shape[1] - args.size)
                x = crop_normalise(a, args.size, top, left)
                xs.append(x[:, :, ::-1].copy() if random.random() < 0.5 else x)
                ys.append(train_y[k])
            loss = F.cross_entropy(model(torch.from_numpy(np.stack(xs))), torch.tensor(ys), label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(ys)
        top1, top5, _ = evaluate(model, val_x, val_y, len(names))
        history.append({"epoch": epoch + 1, "loss": loss_sum / len(train), "val_top1": top1, "val_top5": top5})
        print(f"epoch {epoch + 1}: loss {loss_sum / len(train):.4f}  val top-1 {top1:.4f}  top-5 {top5:.4f}"
              f"  ({time.time() - started:.0f} s)", flush=True)

    top1, top5, confusion = evaluate(model, val_x, val_y, len(names))
    os.makedirs(args.out, exist_ok=True)
    onnx_path = os.path.join(args.out, "polygons-mobilenetv3s.onnx")
    torch.save(model.state_dict(), os.path.join(args.out, "polygons-mobilenetv3s.pt"))
    model.eval()
    example = torch.from_numpy(np.stack(val_x[:1]))
    torch.onnx.export(model, (example,), onnx_path, input_names=["images"], output_names=["logits"])
    report = {
        "made_by": "scripts/train_classifier.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()),
        "torch": torch.__version__,
        "params": params,
        "classes": names,
        "preprocess": "torchvision",
        "img_size": args.size,
        "history": history,
        "val_images": len(val),
        "val_top1": top1,
        "val_top5": top5,
        "val_confusion_pred_true": confusion.tolist(),
    }
    with open(os.path.join(args.out, "train_report.json"), "w") as f:
        json.dump(report, f, indent=1)
    print(f"validation: top-1 {top1:.4f}, top-5 {top5:.4f}; wrote {onnx_path}")


if __name__ == "__main__":
    main()
