"""Load and fault benchmark for `drsynth serve` (loopback only, bounded in count and time).

    .venv/bin/python benchmarks/serve_load.py                      # MobileNetV2 (4-class head), real photos
    .venv/bin/python benchmarks/serve_load.py --model model.onnx   # an exported drsynth model
    .venv/bin/python benchmarks/serve_load.py --quick              # small counts, for a smoke run

What it does:
1. Model: --model, else drsynth's MobileNetV2 classifier (paper head 1280 -> 128 -> 4 classes) saved as a
   checkpoint and exported by drsynth.export (ImageNet backbone weights from ../shared/weights when present,
   else random: the timing is the same). Images: ../shared/data/real photos when present, else seeded synthetic JPEGs.
2. Reference answers: every image through OnnxClassifier locally (the same preprocessing, no server).
3. Load: `drsynth serve` in a subprocess on 127.0.0.1 (port picked by the server). For each concurrency
   level (1, 8, 32) a closed loop of single-image v1 requests, until --requests or --duration: throughput,
   p50/p99 latency, mean onnxruntime batch size (from /metrics), wrong answers. Then the highest level again
   against a server with --max-batch 1 (no batching), to measure what batching buys.
4. Fault run: --malformed (1000) malformed requests of ~25 kinds mixed at random (seeded) with --good (500)
   good ones (v1, v2 and raw-image forms), sent at concurrency 16. Pass: zero 5xx, zero transport errors,
   zero wrong answers on the good ones, and the server still ready afterwards.

The CPU is shared with the client (and, on a dev machine, with other work): the load average is printed
beside the figures. Exit status 1 if any fault-run criterion fails.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import io
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("DRSYNTH_SHARED", REPO.parent / "shared"))
CLASSES = ["bicycle", "car", "cat", "dog"]
PAYLOAD_LIMIT = 2 * 1024 * 1024  # the server under test gets --max-payload-bytes 2MiB
PROB_ATOL = 1e-3  # batched vs single onnxruntime runs differ in the last float bits, not more


# ---- model and images ----------------------------------------------------------------------------------


def build_mobilenet_onnx(path: Path, *, seed: int) -> str:
    """A drsynth MobileNetV2 classifier (drsynth.models, paper head, 4 classes) exported by drsynth.export.

    The head is seeded, not trained: serving cost does not depend on the weights. Returns a description.
    """
    import torch

    from drsynth.checkpoint import CheckpointInfo, HeadInfo, save_checkpoint
    from drsynth.export import export_checkpoint
    from drsynth.models import build_model
    from drsynth.preprocess import Preprocess

    weights_file = SHARED / "weights" / "mobilenet_v2_imagenet.pth"
    weights = str(weights_file) if weights_file.is_file() else "none"
    torch.manual_seed(seed)  # the head's initialisation
    net = build_model("mobilenet_v2", len(CLASSES), weights=weights, dropout=0.3)
    info = CheckpointInfo(
        classes=CLASSES,
        backbone="mobilenet_v2",
        weights=weights,
        head=HeadInfo(hidden=128, dropout=0.3),
        frozen=True,
        preprocess=Preprocess(),
    )
    save_checkpoint(path.parent / "checkpoint", net.eval(), info)
    result = export_checkpoint(path.parent / "checkpoint", path)
    source = f"ImageNet backbone from {weights_file}" if weights != "none" else "random backbone (no ../shared)"
    return f"drsynth mobilenet_v2 224px, 4-class head, exported by drsynth.export ({source}; parity {result.max_abs_diff:.1e})"


def load_images(count: int, *, seed: int) -> tuple[list[bytes], str]:
    real = SHARED / "data" / "real"
    files = sorted(real.glob("*/*.jpg")) if real.is_dir() else []
    if files:
        rng = np.random.default_rng(seed)
        picked = [files[i] for i in rng.choice(len(files), size=min(count, len(files)), replace=False)]
        return [p.read_bytes() for p in picked], f"{len(picked)} real photos from {real}"
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        arr = rng.integers(0, 256, (192, 256, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=85)
        out.append(buf.getvalue())
    return out, f"{count} synthetic seeded JPEGs (../shared absent)"


# ---- the server under test -------------------------------------------------------------------------------


class Server:
    def __init__(self, model: Path, extra: list[str], log_path: Path):
        self.log = open(log_path, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "drsynth", "serve", "--model", str(model), "--host", "127.0.0.1", "--port", "0",
             "--max-payload-bytes", str(PAYLOAD_LIMIT), *extra],
            stdout=subprocess.PIPE, stderr=self.log, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        found: list[str] = []

        def read():
            for line in self.proc.stdout:
                m = re.search(r"listening on (http://\S+)", line)
                if m:
                    found.append(m.group(1))
                    return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        t.join(120)
        if not found:
            self.stop()
            raise SystemExit(f"server did not start; see {log_path}")
        self.url = found[0]
        assert self.url.startswith("http://127.0.0.1:"), self.url  # loopback only

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def metric_sum(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


# ---- requests --------------------------------------------------------------------------------------------


@dataclass
class Req:
    kind: str
    method: str
    path: str
    content: bytes = b""
    headers: dict = field(default_factory=dict)
    expect_image: int | None = None  # index of the image whose reference answer a good request must match
    protocol: str = "v1"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def good_request(i: int, image: bytes, form: str) -> Req:
    if form == "v1":
        body = json.dumps({"instances": [{"image_bytes": {"b64": b64(image)}}]}).encode()
        return Req("good-v1", "POST", "/v1/models/model:predict", body, {"content-type": "application/json"}, i)
    if form == "v2":
        body = json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64(image)]}]})
        return Req("good-v2", "POST", "/v2/models/model/infer", body.encode(), {"content-type": "application/json"},
                   i, "v2")  # fmt: skip
    return Req("good-raw", "POST", "/v1/models/model:predict", image, {"content-type": "image/jpeg"}, i)


def malformed_requests(n: int, images: list[bytes], rng: np.random.Generator) -> list[Req]:
    """n malformed requests, kinds drawn uniformly (seeded)."""
    from PIL import Image

    big = io.BytesIO()
    Image.new("1", (8000, 8000)).save(big, format="PNG")  # 64 MP in a few kB: a decompression bomb
    bomb = big.getvalue()
    j = {"content-type": "application/json"}
    v1, v2 = "/v1/models/model:predict", "/v2/models/model/infer"

    def tensor_v2(dtype: str, shape: list[int], data: list) -> bytes:
        return json.dumps({"inputs": [{"name": "input", "shape": shape, "datatype": dtype, "data": data}]}).encode()

    def binary_v2_nan() -> tuple[bytes, dict]:
        raw = np.full((1, 3, 224, 224), np.nan, np.float32).tobytes()
        head = json.dumps({"inputs": [{"name": "input", "shape": [1, 3, 224, 224], "datatype": "FP32",
                                       "parameters": {"binary_data_size": len(raw)}}]}).encode()  # fmt: skip
        return head + raw, {"content-type": "application/octet-stream", "inference-header-content-length": str(len(head))}

    def img() -> bytes:
        return images[int(rng.integers(len(images)))]

    kinds = {
        "json-syntax-v1": lambda: Req("", "POST", v1, b'{"instances": [{"b64": ', j),
        "json-syntax-v2": lambda: Req("", "POST", v2, b'{"inputs": [', j),
        "json-not-object": lambda: Req("", "POST", v1, b"[1, 2, 3]", j),
        "instances-not-list": lambda: Req("", "POST", v1, b'{"instances": "cat"}', j),
        "instances-empty": lambda: Req("", "POST", v1, b'{"instances": []}', j),
        "too-many-instances": lambda: Req("", "POST", v1, json.dumps({"instances": [{"b64": "AA=="}] * 65}).encode(), j),
        "bad-base64": lambda: Req("", "POST", v1, b'{"instances": [{"b64": "%%%not base64%%%"}]}', j),
        "not-an-image": lambda: Req("", "POST", v1, json.dumps({"instances": [{"b64": b64(rng.bytes(2000))}]}).encode(), j),
        "truncated-jpeg": lambda: Req("", "POST", v1, json.dumps({"instances": [{"b64": b64(img()[:300])}]}).encode(), j),
        "decompression-bomb": lambda: Req("", "POST", v1, json.dumps({"instances": [{"b64": b64(bomb)}]}).encode(), j),
        "tensor-wrong-shape": lambda: Req("", "POST", v1, json.dumps({"instances": [np.zeros((3, 8, 8)).tolist()]}).encode(), j),
        "tensor-strings": lambda: Req("", "POST", v1, json.dumps({"instances": [[["x"] * 4] * 3]}).encode(), j),
        "instance-wrong-type": lambda: Req("", "POST", v1, b'{"instances": [null, true]}', j),
        "v2-wrong-dtype": lambda: Req("", "POST", v2, tensor_v2("INT32", [1, 3], [1, 2, 3]), j),
        "v2-shape-mismatch": lambda: Req("", "POST", v2, tensor_v2("FP32", [1, 3, 224, 224], [0.0] * 10), j),
        "v2-bytes-not-base64": lambda: Req("", "POST", v2, json.dumps({"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": ["@@"]}]}).encode(), j),
        "v2-missing-fields": lambda: Req("", "POST", v2, b'{"inputs": [{"name": "image"}]}', j),
        "v2-binary-bad-header": lambda: Req("", "POST", v2, b"{}garbage", {"content-type": "application/octet-stream", "inference-header-content-length": "7x"}),
        "v2-binary-nan-tensor": lambda: Req("", "POST", v2, *binary_v2_nan()),
        "unknown-model-v1": lambda: Req("", "POST", "/v1/models/resnet50:predict", b'{"instances": []}', j),
        "unknown-model-v2": lambda: Req("", "POST", "/v2/models/resnet50/infer", b'{"inputs": []}', j),
        "payload-over-limit": lambda: Req("", "POST", v1, b"{" + b" " * (PAYLOAD_LIMIT + 1000) + b"}", j),
        "wrong-content-type": lambda: Req("", "POST", v1, rng.bytes(500), {"content-type": "text/plain"}),
        "non-utf8-json": lambda: Req("", "POST", v1, b"\xff\xfe\x00{" + rng.bytes(100), j),
        "model-unload": lambda: Req("", "POST", "/v2/repository/models/model/unload"),
        "wrong-method": lambda: Req("", "GET", v1),
    }
    names = sorted(kinds)
    out = []
    for _ in range(n):
        name = names[int(rng.integers(len(names)))]
        req = kinds[name]()
        req.kind = name
        out.append(req)
    return out


@dataclass
class Result:
    kind: str
    status: int  # -1: transport error
    seconds: float
    wrong: bool = False
    error: str = ""


def check_answer(req: Req, body: bytes, reference: np.ndarray) -> bool:
    """True when the response's label and probabilities match the local reference for that image."""
    try:
        data = json.loads(body)
        if req.protocol == "v2":
            outs = {o["name"]: o for o in data["outputs"]}
            label, probs = outs["label"]["data"][0], np.asarray(outs["probabilities"]["data"], np.float32)
        else:
            pred = data["predictions"][0]
            label, probs = pred["label"], np.asarray([pred["probabilities"][c] for c in CLASSES], np.float32)
    except (ValueError, KeyError, IndexError, TypeError):
        return False
    ref = reference[req.expect_image]
    return label == CLASSES[int(ref.argmax())] and bool(np.abs(probs - ref).max() <= PROB_ATOL)


async def send_all(url: str, reqs: list[Req], concurrency: int, reference: np.ndarray, *, deadline: float) -> list[Result]:
    """Closed loop: `concurrency` workers take the next request until the list or the time runs out."""
    import httpx

    results: list[Result] = []
    queue = collections.deque(reqs)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker():
            while queue and time.monotonic() < deadline:
                req = queue.popleft()
                t0 = time.perf_counter()
                try:
                    r = await client.request(req.method, req.path, content=req.content, headers=req.headers)
                    res = Result(req.kind, r.status_code, time.perf_counter() - t0)
                    if req.expect_image is not None:
                        res.wrong = r.status_code != 200 or not check_answer(req, r.content, reference)
                        if res.wrong:
                            res.error = r.text[:200]
                except httpx.HTTPError as e:
                    res = Result(req.kind, -1, time.perf_counter() - t0, error=f"{type(e).__name__}: {e}")
                results.append(res)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def load_level(server: Server, images, reference, concurrency: int, n: int, duration: float, form: str = "v1") -> dict:
    import httpx

    reqs = [good_request(i % len(images), images[i % len(images)], form) for i in range(n)]
    asyncio.run(send_all(server.url, reqs[: max(4, concurrency)], concurrency, reference, deadline=time.monotonic() + 30))
    before = httpx.get(server.url + "/metrics").text
    t0 = time.perf_counter()
    results = asyncio.run(send_all(server.url, reqs, concurrency, reference, deadline=time.monotonic() + duration))
    wall = time.perf_counter() - t0
    after = httpx.get(server.url + "/metrics").text
    runs = metric_sum(after, "drsynth_serve_batch_size_count") - metric_sum(before, "drsynth_serve_batch_size_count")
    inst = metric_sum(after, "drsynth_serve_batch_size_sum") - metric_sum(before, "drsynth_serve_batch_size_sum")
    lat = np.array([r.seconds for r in results if r.status == 200]) * 1000
    return {
        "concurrency": concurrency,
        "form": form,
        "requests": len(results),
        "ok": int(sum(r.status == 200 for r in results)),
        "wrong": int(sum(r.wrong for r in results)),
        "errors": int(sum(r.status != 200 for r in results)),
        "seconds": round(wall, 2),
        "throughput_rps": round(len(results) / wall, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
        "mean_batch": round(inst / runs, 2) if runs else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, help="an exported drsynth model.onnx (default: build MobileNetV2)")
    ap.add_argument("--concurrency", default="1,8,32", help="comma-separated levels (default 1,8,32)")
    ap.add_argument("--requests", type=int, default=400, help="most requests per level (default 400)")
    ap.add_argument("--duration", type=float, default=20.0, help="most seconds per level (default 20)")
    ap.add_argument("--malformed", type=int, default=1000, help="malformed requests in the fault run")
    ap.add_argument("--good", type=int, default=500, help="good requests mixed into the fault run")
    ap.add_argument("--max-batch", type=int, default=32, help="server --max-batch (default 32)")
    ap.add_argument("--batch-wait-ms", type=float, default=0.0, help="server --batch-wait-ms (default 0)")
    ap.add_argument("--threads", type=int, default=None, help="server --threads (onnxruntime)")
    ap.add_argument("--server-arg", action="append", default=[], help="extra `drsynth serve` argument (repeat)")
    ap.add_argument("--no-compare", action="store_true", help="skip the --max-batch 1 comparison")
    ap.add_argument("--quick", action="store_true", help="small counts for a smoke run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = ap.parse_args()
    if args.quick:
        args.requests, args.duration, args.malformed, args.good = 60, 8.0, 200, 100
    levels = [int(c) for c in args.concurrency.split(",")]
    rng = np.random.default_rng(args.seed)

    from drsynth.onnx_model import OnnxClassifier
    from drsynth.preprocess import load_image

    tmp = Path(tempfile.mkdtemp(prefix="drsynth-serve-load-"))
    if args.model:
        model_path, model_desc = args.model, str(args.model)
    else:
        model_path = tmp / "model.onnx"
        model_desc = build_mobilenet_onnx(model_path, seed=args.seed)
    images, image_desc = load_images(64, seed=args.seed)
    clf = OnnxClassifier.load(model_path)
    global CLASSES
    CLASSES = clf.classes
    reference = np.concatenate([clf.predict_proba([load_image(b)]) for b in images])
    print(f"model: {model_desc}\nimages: {image_desc}\nload average before: {os.getloadavg()}", flush=True)

    extra = ["--max-batch", str(args.max_batch), "--batch-wait-ms", str(args.batch_wait_ms)]
    if args.threads:
        extra += ["--threads", str(args.threads)]
    extra += args.server_arg
    report: dict = {"model": model_desc, "images": image_desc, "cpus": os.cpu_count(), "levels": []}
    server = Server(model_path, extra, tmp / "server.log")
    try:
        for c in levels:
            row = load_level(server, images, reference, c, args.requests, args.duration)
            report["levels"].append(row)
            print(json.dumps(row), flush=True)
        row = load_level(server, images, reference, max(8, levels[0]), args.requests // 2, args.duration / 2, "v2")
        report["v2"] = row
        print(json.dumps(row), flush=True)

        # Fault run: malformed requests shuffled among good ones.
        good = [good_request(int(i), images[int(i)], str(rng.choice(["v1", "v2", "raw"])))
                for i in rng.integers(len(images), size=args.good)]  # fmt: skip
        mixed = malformed_requests(args.malformed, images, rng) + good
        mixed = [mixed[i] for i in rng.permutation(len(mixed))]
        t0 = time.perf_counter()
        results = asyncio.run(send_all(server.url, mixed, 16, reference, deadline=time.monotonic() + 300))
        import httpx

        ready = httpx.get(server.url + "/v2/health/ready").status_code == 200
        by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        for r in results:
            by_kind[r.kind][r.status] += 1
        fault = {
            "malformed": args.malformed,
            "good": args.good,
            "sent": len(results),
            "seconds": round(time.perf_counter() - t0, 1),
            "5xx": int(sum(r.status >= 500 for r in results)),
            "transport_errors": int(sum(r.status == -1 for r in results)),
            "good_wrong_or_failed": int(sum(r.wrong for r in results)),
            "malformed_answered_2xx": int(sum(200 <= r.status < 300 for r in results if not r.kind.startswith("good"))),
            "ready_after": ready,
            "status_by_kind": {k: dict(sorted(v.items())) for k, v in sorted(by_kind.items())},
        }
        report["fault"] = fault
        samples = [r.error for r in results if r.error][:5]
        print(json.dumps(fault, indent=1), flush=True)
        if samples:
            print("sample problems:", *samples, sep="\n  ")
    finally:
        server.stop()

    if not args.no_compare:
        c = max(levels)
        no_batch = ["--max-batch", "1"] + (["--threads", str(args.threads)] if args.threads else []) + args.server_arg
        server = Server(model_path, no_batch, tmp / "server-nobatch.log")
        try:
            row = load_level(server, images, reference, c, args.requests, args.duration)
            row["max_batch"] = 1
            report["no_batching"] = row
            print(json.dumps(row), flush=True)
        finally:
            server.stop()

    report["load_average_after"] = os.getloadavg()
    print(f"\nload average after: {report['load_average_after']}  ({os.cpu_count()} CPUs)")
    print("\n| concurrency | requests | throughput (req/s) | p50 (ms) | p99 (ms) | mean batch | wrong |")
    print("|---|---|---|---|---|---|---|")
    rows = report["levels"] + ([report["no_batching"]] if "no_batching" in report else [])
    for r in rows:
        tag = " (max-batch 1)" if r.get("max_batch") == 1 else ""
        print(f"| {r['concurrency']}{tag} | {r['requests']} | {r['throughput_rps']} | {r['p50_ms']} | {r['p99_ms']} | "
              f"{r['mean_batch']} | {r['wrong']} |")  # fmt: skip
    f = report["fault"]
    passed = (f["5xx"] == 0 and f["transport_errors"] == 0 and f["good_wrong_or_failed"] == 0
              and f["malformed_answered_2xx"] == 0 and f["ready_after"])  # fmt: skip
    print(f"\nfault run: {f['malformed']} malformed + {f['good']} good -> 5xx {f['5xx']}, transport errors "
          f"{f['transport_errors']}, good wrong/failed {f['good_wrong_or_failed']}, malformed answered 2xx "
          f"{f['malformed_answered_2xx']}, ready after: {f['ready_after']}  => {'PASS' if passed else 'FAIL'}")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
