"""Training with several processes (drsynth.distributed): the DDP step against one process, torchrun end to end
on CPU (Gloo on loopback), the per-rank feature cache, torchrun's environment, and --upload to a real S3 store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from train_fixtures import shapes_dataset, shapes_folder

from drsynth.checkpoint import load_checkpoint
from drsynth.distributed import Distributed, is_main_process, launch, read_env
from drsynth.errors import ConfigError
from drsynth.preprocess import preprocess_batch

TORCHRUN_VARS = ("WORLD_SIZE", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


# ----------------------------------------------------------------------------------------- the environment


def test_torchrun_environment_is_read_and_checked():
    assert read_env({}) == (0, 1, 0, 1) and is_main_process({})
    assert read_env({"WORLD_SIZE": "1", "RANK": "0"}) == (0, 1, 0, 1)  # torchrun --nproc-per-node 1
    env = {"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "h",
           "MASTER_PORT": "29500"}  # fmt: skip
    assert read_env(env) == (3, 4, 1, 2) and not is_main_process(env)
    with pytest.raises(ConfigError, match="RANK='x' is not an integer"):
        read_env({**env, "RANK": "x"})
    with pytest.raises(ConfigError, match="inconsistent torchrun variables"):
        read_env({**env, "RANK": "4"})
    with pytest.raises(ConfigError, match="MASTER_ADDR not set"):
        read_env({k: v for k, v in env.items() if k != "MASTER_ADDR"})
    with launch(torch.device("cpu"), env={}) as one:  # one process: no group, helpers change nothing
        assert one == Distributed() and not one.enabled and one.is_main
        assert not torch.distributed.is_initialized()
        head = torch.nn.Linear(2, 2)
        assert one.wrap(head) is head
        (s,) = one.sum(torch.tensor([1.0, 2.0]))
        assert s.tolist() == [1.0, 2.0] and one.max(3.5) == 3.5


# ------------------------------------------------------------------ the DDP step equals one-process training


def _ddp_rank(rank: int, world: int, port: int, data: dict, out: str) -> None:
    """One spawned rank: train the head on its halves of the batches (rank 0 has one extra), then evaluate."""
    from drsynth.models import build_model
    from drsynth.train import Precision, evaluate, train_one_epoch

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))  # fmt: skip
    torch.set_num_threads(1)
    cpu, prec = torch.device("cpu"), Precision("cpu", None)
    with launch(cpu) as dist:
        torch.manual_seed(0)
        model = build_model("small-cnn", 3, weights="none", frozen=True, dropout=0.0)
        head = dist.wrap(model.head)
        opt = torch.optim.Adam(model.head.parameters(), lr=1e-2)
        stats = train_one_epoch(model, torch.nn.CrossEntropyLoss(), opt, data["train"][rank], device=cpu,
                                precision=prec, features_in=True, trainable=head, dist=dist)  # fmt: skip
        res = evaluate(model, data["eval"][rank], device=cpu, precision=prec, classes="abc", features_in=True,
                       dist=dist)  # fmt: skip
        if dist.is_main:
            torch.save({"head": model.head.state_dict(), "stats": stats, "eval": res}, out)


@pytest.mark.slow
def test_ddp_training_step_matches_one_process_on_the_whole_batch(tmp_path):
    """Two Gloo ranks, each on half of every batch, end with the weights of one process trained on whole
    batches; when rank 1 runs out of batches (Join) rank 0's last step averages its gradient with zeros."""
    from drsynth.local_store import free_ports
    from drsynth.models import build_model
    from drsynth.train import Precision, evaluate

    gen = torch.Generator().manual_seed(1)
    feats, labels = torch.randn(44, 128, generator=gen), torch.randint(0, 3, (44,), generator=gen)
    full = [(feats[i : i + 8], labels[i : i + 8]) for i in range(0, 40, 8)]
    halves = [[(x[:4], y[:4]) for x, y in full], [(x[4:], y[4:]) for x, y in full]]
    halves[0].append((feats[40:], labels[40:]))  # rank 0: one more (half) batch than rank 1
    ev = torch.randn(30, 128, generator=gen), torch.randint(0, 3, (30,), generator=gen)
    data = {"train": halves, "eval": [[(ev[0][:17], ev[1][:17])], [(ev[0][17:], ev[1][17:])]]}
    out = tmp_path / "rank0.pt"
    torch.multiprocessing.spawn(_ddp_rank, args=(2, free_ports(1)[0], data, str(out)), nprocs=2, join=True)
    got = torch.load(out, weights_only=False)

    torch.manual_seed(0)
    model = build_model("small-cnn", 3, weights="none", frozen=True, dropout=0.0)
    opt = torch.optim.Adam(model.head.parameters(), lr=1e-2)
    ce = torch.nn.CrossEntropyLoss()
    model.train()
    loss_sum = 0.0
    for x, y, scale in [*((x, y, 1.0) for x, y in full), (feats[40:], labels[40:], 0.5)]:
        loss = ce(model.head(x), y)
        loss_sum += float(loss.detach()) * len(y)
        opt.zero_grad()
        (loss * scale).backward()  # DDP divides by the initial world size, also for a joined rank's step
        opt.step()
    for k, v in model.head.state_dict().items():
        torch.testing.assert_close(got["head"][k], v, rtol=1e-5, atol=1e-6)
    assert got["stats"]["n"] == 44 and got["stats"]["loss"] == pytest.approx(loss_sum / 44, rel=1e-5)
    whole = evaluate(model, [ev], device=torch.device("cpu"), precision=Precision("cpu", None), classes="abc",
                     features_in=True)  # fmt: skip
    assert got["eval"]["n"] == 30
    assert got["eval"]["accuracy"] == whole["accuracy"]
    assert got["eval"]["per_class_accuracy"] == whole["per_class_accuracy"]
    assert got["eval"]["loss"] == pytest.approx(whole["loss"], rel=1e-5)


# ------------------------------------------------------------------------------------------ torchrun end to end


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("shapes-ddp")
    return {"train": shapes_dataset(tmp, 40, seed=0), "other": str(shapes_folder(tmp / "other", 10, seed=1))}


def torchrun(args: list[str], tmp_path: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc-per-node N -m drsynth ARGS` on CPU, as a cluster would start it."""
    env = {k: v for k, v in os.environ.items() if k not in TORCHRUN_VARS}
    env.update(OMP_NUM_THREADS="1", DRSYNTH_CACHE=str(tmp_path / "cache"), GLOO_SOCKET_IFNAME="lo")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "drsynth", *args]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)


def split_sizes(uri: str) -> dict[str, int]:
    from drsynth.data import open_dataset

    return {s: len(open_dataset(uri, split=s, val_fraction=0.25)) for s in ("train", "val")}


@pytest.mark.slow
def test_torchrun_two_processes_train_one_checkpoint_above_chance(shapes, tmp_path):
    out = tmp_path / "ckpt"
    args = ["train", "--data", shapes["train"], "--out", str(out), "--backbone", "small-cnn", "--image-size", "32",
            "--epochs", "5", "--lr", "0.003", "--batch-size", "16", "--val-fraction", "0.25", "--workers", "0",
            "--eval", f"other={shapes['other']}", "--no-progress"]  # fmt: skip
    r = torchrun(args, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.count("best epoch") == 1 and r.stdout.count("epoch 1/5 |") == 1  # rank 0 alone prints
    # one checkpoint, written whole: no second folder and no leftover temporary sibling
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "ckpt"]
    files = ["curve.png", "history.json", "model.json", "model.safetensors"]
    assert sorted(p.name for p in out.iterdir()) == files

    hist = json.loads((out / "history.json").read_text())
    sizes = split_sizes(shapes["train"])
    assert hist["processes"] == 2
    for row in hist["epochs"]:  # the ranks read disjoint shares that add up to the whole data set
        seen = (row["train"]["n"], row["val"]["n"], row["eval"]["other"]["n"])
        assert seen == (sizes["train"], sizes["val"], 30)
    assert hist["best_val_accuracy"] >= 0.8  # chance is 1/3

    model, info = load_checkpoint(out)
    assert info.metrics["epoch"] == hist["best_epoch"] and info.frozen is False
    from drsynth.data import open_dataset

    val = list(open_dataset(shapes["train"], split="val", val_fraction=0.25, cache_dir=tmp_path / "cache"))
    x = torch.from_numpy(preprocess_batch([s["image"] for s in val], info.preprocess))
    with torch.no_grad():
        hits = (model(x).argmax(1) == torch.tensor([s["label"] for s in val])).float().mean().item()
    # rank 0's saved model reproduces the accuracy both ranks measured together on their shares
    assert hits == pytest.approx(hist["best_val_accuracy"])


@pytest.mark.slow
def test_torchrun_frozen_backbone_trains_the_head_from_per_rank_feature_caches(shapes, tmp_path):
    out = tmp_path / "frozen"
    args = ["train", "--data", shapes["train"], "--out", str(out), "--backbone", "small-cnn", "--weights", "none",
            "--freeze", "--cache-views", "1", "--image-size", "32", "--epochs", "4", "--lr", "0.02",
            "--batch-size", "16", "--val-fraction", "0.25", "--workers", "1", "--eval", f"other={shapes['other']}",
            "--no-progress"]  # fmt: skip
    r = torchrun(args, tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    hist = json.loads((out / "history.json").read_text())
    sizes = split_sizes(shapes["train"])
    assert [row["train"]["cached"] for row in hist["epochs"]] == [False, True, True, True]
    # DataLoader workers of both ranks read disjoint parts: every sample once per epoch, cached or not
    assert {row["train"]["n"] for row in hist["epochs"]} == {sizes["train"]}
    # each rank cached its own share (float16 features of 128 + int64 label per image), summed over ranks
    images = sizes["train"] + sizes["val"] + 30
    assert hist["feature_cache_bytes"] == images * (128 * 2 + 8)
    assert hist["best_val_accuracy"] >= 0.6  # a head on random conv features; chance is 1/3
    _, info = load_checkpoint(out)
    assert info.frozen is True and info.train_config["cache_views"] == 1


# ------------------------------------------------------------------------------------------------ --upload


@pytest.mark.slow
def test_upload_copies_the_checkpoint_to_the_store(shapes, tmp_path, s3_uri):
    from drsynth.storage import open_store
    from drsynth.train import TrainConfig, main

    torch.set_num_threads(1)
    uri = s3_uri.replace("/datasets/ds", "/models/small")
    cfg = TrainConfig(data=shapes["train"], out=str(tmp_path / "o"), backbone="small-cnn", image_size=32, epochs=1,
                      workers=0, progress=False, upload=uri, dataset_cache=str(tmp_path / "cache"))  # fmt: skip
    main(cfg)
    store = open_store(uri)
    names = [o.key for o in store.list()]
    assert names == ["curve.png", "history.json", "model.json", "model.safetensors"]
    local = tmp_path / "fetched"
    for name in names:
        store.download(name, local / name)
    model, info = load_checkpoint(local)
    assert info.train_config["upload"] == uri and info.classes == ["circle", "square", "triangle"]
    with pytest.raises(ConfigError, match="already exists.*--overwrite"):  # checked before training
        main(cfg.model_copy(update={"out": str(tmp_path / "o2")}))
    assert not (tmp_path / "o2").exists()
