"""Which renders teach transfer? The paper's head trained on subsets chosen by ImageNet group probability.

    .venv/bin/drsynth render --scenario assets/scenarios/cats_dogs.yaml --count 4000 --out /tmp/c0 --seed 0
    .venv/bin/python benchmarks/curation_subsets.py --renders /tmp/c0 [--cache /tmp/c0-features.npz]

The backbone features (frozen ImageNet MobileNetV2, two views per render: the eval crop and its mirror)
and the score `drsynth curate` uses (softmax mass of the class's ImageNet group) are computed once. Then the
paper's head (Linear(1280,128)-ReLU-Dropout(0.3)-Linear, Adam 1e-3, 1,500 steps of 64) is trained on: all
renders; per class the best-scored fraction f; a random fraction f; the worst-scored fraction f; for 5
seeds each. Reported: the mean real-photo accuracy of the last 40% of training (every 100 steps), so one
lucky step does not decide. This is the offline analysis behind `drsynth curate`'s default; the product
path is `benchmarks/synthetic_to_real.py --keep F`. Cats and dogs only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRSYNTH_SHARED", REPO.parent / "shared"))
CLASSES = ("cat", "dog")


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--renders", required=True, help="render folder of a cats/dogs scenario (drsynth render)")
    p.add_argument("--real", default=str(SHARED / "data/real"), help="real photos DIR/{cat,dog}/*.jpg")
    p.add_argument("--weights", default=str(SHARED / "weights/mobilenet_v2_imagenet.pth"))
    p.add_argument("--cache", default=None, help="features file (.npz): written once, reused after")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.75, 0.5, 0.4, 0.25])
    p.add_argument("--seeds", type=int, default=5)
    return p


def extract(args: argparse.Namespace) -> dict[str, np.ndarray]:
    import torch
    from PIL import Image

    from drsynth.preprocess import Preprocess, normalize, resize_and_crop
    from drsynth.realism import ImageNetClassifier, imagenet_group

    clf = ImageNetClassifier(args.weights).load()
    net, pre = clf._net, Preprocess()
    groups = [list(imagenet_group(c)) for c in CLASSES]

    def run(paths: list[Path]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        views, flips, probs = [], [], []
        for i in range(0, len(paths), 64):
            x = torch.from_numpy(
                np.stack(
                    [
                        normalize(np.asarray(resize_and_crop(Image.open(p).convert("RGB"), pre)), pre)
                        for p in paths[i : i + 64]
                    ]
                )
            )
            with torch.inference_mode():
                for xx, out in ((x, views), (torch.flip(x, [3]), flips)):
                    f = torch.nn.functional.adaptive_avg_pool2d(net.features(xx), 1).flatten(1)
                    out.append(f.numpy().astype(np.float16))
                    if out is views:
                        probs.append(torch.softmax(net.classifier(f), 1).numpy())
            print(f"  features {min(i + 64, len(paths))}/{len(paths)}", file=sys.stderr, flush=True)
        p = np.concatenate(probs)
        return np.concatenate(views), np.concatenate(flips), np.stack([p[:, g].sum(1) for g in groups], 1)

    records = sorted((Path(args.renders) / "samples").glob("*.json"))
    y = np.array([CLASSES.index(json.loads(r.read_text())["class"]) for r in records])
    F, F2, G = run([r.with_suffix(".jpg") for r in records])
    real, yr = [], []
    for k, c in enumerate(CLASSES):
        files = sorted((Path(args.real) / c).glob("*.jpg"))
        real += files
        yr += [k] * len(files)
    FR, _, _ = run(real)
    return {"F": F, "F2": F2, "y": y, "score": G[np.arange(len(y)), y], "FR": FR, "yr": np.array(yr)}


def main(args: argparse.Namespace) -> dict:
    import torch

    for path in (Path(args.real), Path(args.weights)):
        if not path.exists():
            sys.exit(f"{path} not found: this benchmark needs ../shared (or --real / --weights)")
    if args.cache and Path(args.cache).exists():
        d = dict(np.load(args.cache))
    else:
        d = extract(args)
        if args.cache:
            np.savez(args.cache, **d)
    torch.set_num_threads(1)
    F, F2 = torch.tensor(d["F"]).float(), torch.tensor(d["F2"]).float()
    y, FR, yr = torch.tensor(d["y"]), torch.tensor(d["FR"]).float(), torch.tensor(d["yr"])
    score = d["score"]

    def train(idx: np.ndarray, seed: int, steps: int = 1500, bs: int = 64) -> float:
        torch.manual_seed(seed)
        head = torch.nn.Sequential(
            torch.nn.Linear(F.shape[1], 128), torch.nn.ReLU(), torch.nn.Dropout(0.3), torch.nn.Linear(128, 2)
        )
        opt = torch.optim.Adam(head.parameters(), 1e-3)
        idx_t, accs = torch.tensor(idx), []
        for s in range(steps):
            b = idx_t[torch.randint(len(idx_t), (bs,))]
            x = torch.where(torch.rand(bs, 1) < 0.5, F[b], F2[b])
            loss = torch.nn.functional.cross_entropy(head(x), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if s >= steps * 0.6 and s % 100 == 99:
                head.eval()
                with torch.no_grad():
                    accs.append((head(FR).argmax(1) == yr).float().mean().item())
                head.train()
        return float(np.mean(accs))

    def subset(frac: float, how: str, seed: int) -> np.ndarray:
        out = []
        for c in range(len(CLASSES)):
            ii = np.where(d["y"] == c)[0]
            k = int(len(ii) * frac)
            if how == "random":
                out += list(np.random.default_rng(seed).choice(ii, k, replace=False))
            else:
                order = np.argsort(-score[ii] if how == "best" else score[ii], kind="stable")
                out += list(ii[order[:k]])
        return np.array(out)

    seeds = range(args.seeds)
    result = {
        "renders": len(d["y"]),
        "all": float(np.mean([train(np.arange(len(d["y"])), s) for s in seeds])),
    }
    print(f"all {len(d['y'])} renders: {result['all']:.1%}", flush=True)
    for frac in args.fractions:
        row = {
            how: float(np.mean([train(subset(frac, how, s), s) for s in seeds]))
            for how in ("best", "random", "worst")
        }
        result[f"{frac:g}"] = row
        print(
            f"fraction {frac:g}: best {row['best']:.1%}  random {row['random']:.1%}  worst {row['worst']:.1%}",
            flush=True,
        )
    return result


if __name__ == "__main__":
    main(get_args_parser().parse_args())
