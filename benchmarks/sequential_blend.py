"""Sequential models blended with EASE on amazon-beauty (issue 5), every choice made on validation.

The protocol of sequential.py: leave-one-out, the latest item tests, the one before validates, full ranking
over all items with the history excluded, every user.

1. Selection. Each neural model is fitted on the test split's training part with early stopping on the
   validation item (as in sequential.py; with resume=True its checkpoint directory keeps the chosen epoch's
   weights, so a finished run is restored, not retrained). EASE's l2 is picked on validation. These models
   never trained on a validation item, so they score the validation split, and the weights of a z-score blend
   of them (`WeightedHybrid`) are picked from a grid on its validation NDCG@10.
2. Refit. The same neural models with refit=True: after the early stopping of 1 (restored from its
   checkpoint), trained again on the whole training part, validation items included, for the chosen number of
   epochs; EASE refitted on the whole training part. The test split is scored once for each
   single model and for the chosen blend, with the selection-stage models and with the refitted ones.

    python benchmarks/sequential_blend.py --checkpoints DIR                  # fmlp, sasrec and EASE
    python benchmarks/sequential_blend.py --checkpoints DIR --models fmlp --epochs 40
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
from pathlib import Path

from sequential import DATA, REFERENCE, TARGET, shown, target_metrics

from recengine.data.sequences import load_s3rec
from recengine.data.splits import split, validation_split
from recengine.evaluation import evaluate
from recengine.models.hybrid import WeightedHybrid
from recengine.models.registry import create_model

EASE_L2 = (50.0, 300.0)
#: Blend weights relative to the first neural model's 1: each further neural model, then EASE.
NEURAL_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
EASE_WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0)


def blend(components: dict, weights: tuple[float, ...]) -> WeightedHybrid:
    """The z-score blend of already fitted components: its fitted state set by hand, since fitting a
    WeightedHybrid would fit its components again."""
    model = WeightedHybrid(models=list(components), weights=list(weights))
    model.components_ = list(components.values())
    model.n_items_ = next(iter(components.values())).n_items_
    return model


def scores(model, on) -> dict[str, float | list[float]]:
    """The target metrics of a fitted model on a split, each with its 95% interval."""
    return target_metrics(evaluate(model, on, ks=(10,)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="fmlp,sasrec", help="neural components, the first with weight 1")
    parser.add_argument("--epochs", type=int, default=40, help="cap on the selection-stage epochs")
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--checkpoints", required=True, help="directory of the neural models' checkpoints")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "sequential_blend.json"))
    args = parser.parse_args()
    test_split = split(load_s3rec(DATA / "amazon-beauty"), "loo")
    validation = validation_split(test_split)
    checkpoints = Path(args.checkpoints)
    neural = args.models.split(",")
    result: dict = {"models": {}, "blends": [], "test": {}}

    stage_one, selected, refitted = {}, {}, {}
    for name in neural:
        stage_one[name] = {"epochs": args.epochs, "patience": args.patience, "resume": True,
                           "checkpoint_dir": str(checkpoints / name)}
        model = create_model(name, **stage_one[name]).fit(test_split.train)
        selected[name] = model
        result["models"][name] = {"best_epoch": model.best_epoch_, "validation_curve": model.validation_ndcg_,
                                  "seconds_per_epoch": model.seconds_per_epoch_}
        print(f"{name}: best epoch {model.best_epoch_}, validation NDCG@10 {max(model.validation_ndcg_):.4f}",
              flush=True)

    ease_on_validation = {l2: create_model("ease", l2=l2).fit(validation.train) for l2 in EASE_L2}
    ease_validation = {l2: scores(model, validation)["ndcg@10"] for l2, model in ease_on_validation.items()}
    l2 = max(ease_validation, key=ease_validation.get)
    result["models"]["ease"] = {"validation ndcg@10 by l2": ease_validation, "l2": l2}
    print(f"ease: validation NDCG@10 by l2 {ease_validation}, chose {l2}", flush=True)

    on_validation = {**selected, "ease": ease_on_validation[l2]}
    grid = [(1.0, *rest) for rest in itertools.product(*[NEURAL_WEIGHTS] * (len(neural) - 1), EASE_WEIGHTS)]
    for weights in grid:
        row = {"weights": weights, **scores(blend(on_validation, weights), validation)}
        result["blends"].append(row)
        print(f"blend {weights}: validation NDCG@10 {row['ndcg@10']:.4f}", flush=True)
    chosen = max(result["blends"], key=lambda row: row["ndcg@10"])["weights"]
    result["chosen_weights"] = chosen

    for name in neural:
        refitted[name] = create_model(name, **stage_one[name], refit=True).fit(test_split.train)
        # Of the refit's epochs alone (a restored checkpoint keeps the time its run took).
        result["models"][name]["refit_seconds_per_epoch"] = refitted[name].seconds_per_epoch_
    ease = create_model("ease", l2=l2).fit(test_split.train)
    for stage, components in (("selected", {**selected, "ease": ease}), ("refitted", {**refitted, "ease": ease})):
        rows = {name: scores(model, test_split) for name, model in components.items()}
        rows["blend"] = scores(blend(components, chosen), test_split)
        result["test"][stage] = rows
        for name, row in rows.items():
            print(f"test, {stage:9s} {name:6s} {shown(row)}", flush=True)
    print(f"\nchosen blend weights {chosen} ({', '.join([*neural, 'ease'])}); machine: {platform.machine()} "
          f"{os.cpu_count()} cores, Python {platform.python_version()}; target HR@10 >= {TARGET['hr@10']}, "
          f"NDCG@10 >= {TARGET['ndcg@10']} ({REFERENCE})")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
