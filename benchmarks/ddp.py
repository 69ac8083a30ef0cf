"""DistributedDataParallel on the CPU (issue 8): SASRec on amazon-beauty trained in 1 process and in 2 (gloo).

Both runs fit the training part of the leave-one-out split with the same hyper-parameters and seed for the
same number of epochs; `fit` holds out each user's latest training item and measures validation NDCG@10 after
every epoch (the target: 2 processes within 2% of 1). In 2 processes every mini-batch is split between the
workers and their gradients averaged, so a step sees the same batch as in one. Wall time includes starting the
workers; on a 2-core machine no speed-up is expected.

    python benchmarks/ddp.py --epochs 3 [--checkpoint-dir DIR]

Wall time counts only this invocation's epochs when a run resumed from --checkpoint-dir.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from recengine.data.sequences import load_s3rec
from recengine.data.splits import split
from recengine.engines.ddp import fit_distributed
from recengine.models.neural.sasrec import SASRec
from recengine.trained import TrainedModel

DATA = Path(os.environ.get("RECENGINE_DATASETS", Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--nproc", default="1,2", help="process counts to compare, the first the reference")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "ddp.json"))
    parser.add_argument("--checkpoint-dir", help="checkpoint each run's epochs under DIR/nprocN and continue from "
                        "there when rerun (a resumed run gives the weights of an uninterrupted one)")
    args = parser.parse_args()
    train = split(load_s3rec(DATA / "amazon-beauty"), "loo").train
    # patience = epochs: validation after every epoch, never stopping early, so both runs train alike.
    params = {"epochs": args.epochs, "patience": args.epochs, "device": args.device, "verbose": False}
    rows = []
    for nproc in (int(n) for n in args.nproc.split(",")):
        if args.checkpoint_dir:
            params.update(checkpoint_dir=str(Path(args.checkpoint_dir) / f"nproc{nproc}"), resume=True)
        start = time.perf_counter()
        if nproc == 1:
            model = SASRec(**params).fit(train)
        else:
            with tempfile.TemporaryDirectory() as out:
                fit_distributed(SASRec(**params), train, Path(out) / "model", nproc=nproc)
                model = TrainedModel.load(Path(out) / "model").model
        seconds = time.perf_counter() - start
        rows.append({"nproc": nproc, "validation_ndcg@10": max(model.validation_ndcg_),
                     "validation_curve": model.validation_ndcg_, "training_loss": model.training_loss_,
                     "wall_seconds": seconds, "seconds_per_epoch": model.seconds_per_epoch_})
        print(f"{nproc} process(es): validation NDCG@10 per epoch "
              f"{' '.join(f'{v:.4f}' for v in model.validation_ndcg_)}, wall {seconds:.0f} s, "
              f"{model.seconds_per_epoch_:.0f} s/epoch of batches", flush=True)
        summary = {"epochs": args.epochs, "device": args.device, "runs": rows, "gaps": gaps(rows)}
        # Written after every run, so that a later run's failure keeps the earlier ones.
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2))
    print(f"\nmachine: {platform.machine()} {os.cpu_count()} cores, device {args.device}, {args.epochs} epochs; "
          f"{train.n_users} users, {train.n_items} items; target: within 2% of {rows[0]['nproc']} process(es)")
    for gap in summary["gaps"]:
        print(f"{gap['nproc']} vs {rows[0]['nproc']} process(es): {gap['last_epoch']:+.2%} at the last epoch, "
              f"{gap['best_epoch']:+.2%} at the best; within 2%: {abs(gap['best_epoch']) <= 0.02}")


def gaps(rows: list[dict]) -> list[dict]:
    """Each run's validation NDCG@10 relative to the first run's, at the last epoch and at each run's best."""
    reference = rows[0]["validation_curve"]
    return [{"nproc": row["nproc"], "last_epoch": row["validation_curve"][-1] / reference[-1] - 1,
             "best_epoch": max(row["validation_curve"]) / max(reference) - 1} for row in rows[1:]]

if __name__ == "__main__":
    main()
