#!/usr/bin/env python3
"""Makes tests/fixtures/letterbox/: pictures and what Ultralytics' validation pipeline makes of
them at 160 px, the reference prunescope's `ultralytics` letterbox is held against.

Ultralytics (8.3/8.4) validates an exported detector on square inputs: `BaseDataset.load_image`
resizes the long side to the input size with OpenCV's INTER_LINEAR, the new sizes rounded up
(math.ceil, at most the input size), then `LetterBox(scaleup=False)` pads the picture to the
square, centred, grey 114. Boxes map back through `ratio_pad` = ((h / h0, w / w0), (left, top)).

The pictures are PNG (lossless: JPEG decoders differ between OpenCV and prunescope), with
smooth gradients and noise, at sizes that shrink, enlarge, keep, and exactly halve. Run once,
in a scratch virtualenv (the one of scripts/make_yolov8_83_fixture.py):

    python scripts/make_letterbox_fixture.py --out tests/fixtures/letterbox
"""

import argparse
import json
import math
import os

import cv2
import numpy as np
import ultralytics
from safetensors.numpy import save_file
from ultralytics.data.augment import LetterBox

SIZE = 160
SHAPES = [(120, 200), (211, 37), (300, 299), (60, 80), (160, 160), (320, 320), (481, 641), (159, 161), (2, 50), (90, 7)]


def picture(rng, h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([x * 255 / max(w - 1, 1), y * 255 / max(h - 1, 1), (x + y) * 127 / max(h + w - 2, 1)], -1)
    noise = rng.normal(0, 40, (h, w, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    os.makedirs(args.out, exist_ok=True)
    tensors, info = {}, {"ultralytics": ultralytics.__version__, "opencv": cv2.__version__, "size": SIZE, "images": {}}
    for h0, w0 in SHAPES:
        name = f"{w0}x{h0}"
        rgb = picture(rng, h0, w0)
        cv2.imwrite(os.path.join(args.out, name + ".png"), rgb[:, :, ::-1])  # stored RGB
        im = cv2.imread(os.path.join(args.out, name + ".png"))  # BGR, as Ultralytics reads it
        # BaseDataset.load_image (rect_mode): the long side to SIZE, sizes rounded up.
        r = SIZE / max(h0, w0)
        if r != 1:
            w, h = min(math.ceil(w0 * r), SIZE), min(math.ceil(h0 * r), SIZE)
            im = cv2.resize(im, (w, h), interpolation=cv2.INTER_LINEAR)
        h, w = im.shape[:2]
        lb = LetterBox(new_shape=(SIZE, SIZE), scaleup=False)
        out = lb(image=im)
        # The padding LetterBox applied (centre, round(d - 0.1)).
        top, left = round((SIZE - h) / 2 - 0.1), round((SIZE - w) / 2 - 0.1)
        chw = out[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)  # RGB, 0..255
        tensors["img." + name] = np.ascontiguousarray(chw)
        info["images"][name] = {"resized": [w, h], "ratio": [h / h0, w / w0], "pad": [left, top]}
    save_file(tensors, os.path.join(args.out, "expected.safetensors"))
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()
