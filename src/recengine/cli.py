"""The `recengine` command line: the one place that wires data, models and evaluation together."""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from recengine.console import err as console
from recengine.console import leaderboard_view, out, print_frame
from recengine.errors import ConfigError, RecengineError

if TYPE_CHECKING:  # imported where used: every command loads only what it needs
    from recengine.serving import Service
    from recengine.serving.lifecycle import Retrainer

#: Models `evaluate` and `--model auto` consider by default.
DEFAULT_CANDIDATES = ("popular", "itemknn", "rp3beta", "ease", "ials")


# ------------------------------------------------------------------------------------------------- helpers
def cutoffs(text: str) -> tuple[int, ...]:
    """--k 10,20,100 → (10, 20, 100)."""
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        ks = ()
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give positive integers separated by commas, e.g. 10,20")
    return ks


def parse_params(pairs: Sequence[str], model_name: str, engine: str = "local") -> dict[str, Any]:
    """key=value strings into typed hyper-parameters (types follow the model's defaults on that engine)."""
    if engine == "spark":
        from recengine.engines.spark.training import create_trainer

        defaults = create_trainer(model_name).get_params()
    else:
        from recengine.models.registry import get_model_class

        defaults = get_model_class(model_name)().get_params()
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigError(f"--param {pair!r}: write it as key=value")
        if key not in defaults:
            raise ConfigError(f"{model_name} has no parameter {key!r}; valid: {', '.join(sorted(defaults))}")
        params[key] = _coerce(key, raw, defaults[key])
    return params


def _coerce(key: str, raw: str, default: Any) -> Any:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key} takes true or false, got {raw!r}")
    elif isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
            raise ConfigError(f"{key} takes an integer, got {raw!r}")
        value = int(value)
    elif isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{key} takes a number, got {raw!r}")
        value = float(value)
    return value


def model_params(pairs: Sequence[str], names: Sequence[str], engine: str = "local") -> dict[str, dict[str, Any]]:
    """--param model.key=value (or key=value when there is one model) grouped per model."""
    grouped: dict[str, list[str]] = {name: [] for name in names}
    for pair in pairs:
        head, _, rest = pair.partition(".")
        if head in grouped and "=" not in head:
            grouped[head].append(rest)
        elif len(names) == 1:
            grouped[names[0]].append(pair)
        else:
            raise ConfigError(f"--param {pair!r}: with several models write model.key=value")
    return {name: parse_params(p, name, engine) for name, p in grouped.items()}


def load_input(args: argparse.Namespace):
    """The data named by --dataset (a known source) or --events (a file read with --columns)."""
    from recengine.data.sources import load_events_file, load_source

    if getattr(args, "dataset", None):
        return load_source(args.dataset)
    if getattr(args, "events", None):
        return load_events_file(args.events, columns=args.columns, items=getattr(args, "items", None),
                                reject_path=getattr(args, "reject_file", None))
    raise ConfigError("give the data with --dataset SOURCE or --events FILE")


def as_split(data, protocol: str | None, seed: int):
    """The data split by `protocol` (default temporal-user), or the source's own split as it is."""
    from recengine.data.split import Split
    from recengine.data.splits import split

    if isinstance(data, Split):
        if protocol and protocol != data.protocol:
            console.print(f"note: this source is already a {data.protocol} split; --protocol {protocol} is ignored")
        return data
    return split(data, protocol or "temporal-user", random_state=seed)


def spark_for(args: argparse.Namespace):
    """The SparkSession of --master, its JVM output kept in --spark-log (a file) rather than the terminal."""
    from recengine.engines.spark.cluster import quiet_session

    session, log = quiet_session(args.master, args.spark_log)
    console.print(f"spark {session.version} on {session.sparkContext.master}; its logs → {log}", highlight=False)
    return session


def spark_events(args: argparse.Namespace, spark):
    """--events read by Spark (any path it reads: files, folders, partitioned Parquet) with --columns."""
    from recengine.data.sources import column_fields
    from recengine.engines.spark.data import read_events

    unsupported = [flag for flag, value in (("--dataset", getattr(args, "dataset", None)),
                                            ("--items", getattr(args, "items", None))) if value]
    if unsupported or not args.events:
        raise ConfigError("--engine spark reads its data with --events PATH" +
                          (f"; {unsupported[0]} is for --engine local" if unsupported else ""))
    events = read_events(spark, args.events, columns=column_fields(args.columns), reject_path=args.reject_file)
    console.print(f"read {events.kept:,} events" + (f" ({events.rejected:,} bad rows → {events.reject_path})"
                                                     if events.rejected else ""), highlight=False)
    return events


def fit_on_spark(args: argparse.Namespace) -> None:
    from recengine.engines.spark.training import fit_bundle

    params = parse_params(args.param, args.model, "spark")  # an unknown model stops here, before Spark starts
    spark = spark_for(args)
    events = spark_events(args, spark)
    dataset = events.to_dataset(name=Path(args.events.rstrip("/")).stem)
    console.print(f"collected the training data: {dataset}", highlight=False)
    trained = fit_bundle(events.frame, dataset, args.model, params,
                         progress=lambda line: console.print(line, highlight=False))
    trained.save(args.out)
    console.print(f"wrote {trained.model!r} → {args.out}", highlight=False)


def recommend_on_spark(args: argparse.Namespace) -> None:
    from recengine.engines.spark.scoring import recommend_bundle, write_parquet

    for flag, value in (("--users", args.users), ("--explain", args.explain)):
        if value:
            raise ConfigError(f"{flag} is for --engine local; --engine spark writes every training user's list")
    if not args.out:
        raise ConfigError("--engine spark writes Parquet: give --out PATH (a folder, any path Spark writes)")
    spark = spark_for(args)
    start = time.perf_counter()
    write_parquet(recommend_bundle(spark, args.model_dir, args.k, exclude_seen=not args.include_seen), args.out)
    console.print(f"top-{args.k} for every user in {time.perf_counter() - start:.1f}s → {args.out} "
                  f"(Parquet: user, item, rank, score)", highlight=False)


def evaluate_on_spark(args: argparse.Namespace) -> None:
    from recengine.engines.spark.training import evaluate_models

    if args.negatives:
        raise ConfigError("--negatives is for --engine local; --engine spark ranks the whole catalogue")
    names = args.models.split(",") if args.models else ["ials", "itemknn"]
    params = model_params(args.param, names, "spark")
    spark = spark_for(args)
    events = spark_events(args, spark)
    rows = evaluate_models(events.frame, names, params, args.protocol or "temporal-user", args.k,
                           random_state=args.seed, progress=lambda line: console.print(line, highlight=False))
    metric = args.metric or f"ndcg@{20 if 20 in args.k else args.k[-1]}"
    board = pd.DataFrame(rows).sort_values(metric, ascending=False)
    print_frame(board.round(4), title=f"spark · {args.protocol or 'temporal-user'} · sorted by {metric}")
    if args.out:
        Path(args.out).write_text(json.dumps({"engine": "spark", "protocol": args.protocol or "temporal-user",
                                              "models": params, "k": list(args.k), "results": rows}, indent=2))
        console.print(f"report → {args.out}")


# ------------------------------------------------------------------------------------------------ commands
def cmd_fit(args: argparse.Namespace) -> None:
    from recengine.data.split import Split
    from recengine.data.splits import split as make_split
    from recengine.engines.ddp import launched_by_torchrun
    from recengine.evaluation.tuning import select_model
    from recengine.models.registry import create_model
    from recengine.trained import TrainedModel

    if args.engine == "spark":
        return fit_on_spark(args)
    dataset = load_input(args)
    if isinstance(dataset, Split):
        raise ConfigError(f"--dataset {args.dataset} is an evaluation split (train + test); fit on a dataset "
                          f"(bundled, movielens:DIR, sequences:DIR) or an --events file")
    name = args.model
    if name == "auto":
        if args.param:
            raise ConfigError("--param cannot be combined with --model auto")
        candidates = list(args.candidates.split(",")) if args.candidates else list(DEFAULT_CANDIDATES)
        validation = make_split(dataset, args.protocol, random_state=args.seed)
        console.print(f"auto: comparing {', '.join(candidates)} on a {args.protocol} validation split of the "
                      f"training data by {args.metric}")
        name, table = select_model(candidates, validation, metric=args.metric)
        print_frame(table, title=f"--model auto: validation {args.metric}")
        console.print(f"auto: picked [bold]{name}[/] (highest validation {args.metric})")
    params = parse_params(args.param, name)
    if args.nproc != 1 or launched_by_torchrun():
        from recengine.engines.ddp import fit_distributed

        model = create_model(name, **params)
        fit_distributed(model, dataset, args.out, nproc=args.nproc)
        if int(os.environ.get("RANK", "0")) == 0:
            console.print(f"fitted {model!r} with DistributedDataParallel → {args.out}")
        return
    with console.status(f"fitting {name} on {dataset.n_interactions:,} interactions"):
        trained = TrainedModel.fit(create_model(name, **params), dataset)
    trained.save(args.out)
    console.print(f"fitted {trained.model!r} in {trained.info['fit_seconds']:.1f}s → {args.out}")


def _read_users(path: str | None, trained) -> list[str]:
    if path is None:
        return list(trained.dataset.users.ids)
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise ConfigError(f"cannot read users file {path}: {error.strerror}") from error
    return [line.strip() for line in lines if line.strip()]


def cmd_recommend(args: argparse.Namespace) -> None:
    from recengine.trained import TrainedModel

    if args.engine == "spark":
        return recommend_on_spark(args)
    trained = TrainedModel.load(args.model_dir)
    users = _read_users(args.users, trained)
    start = time.perf_counter()
    frame = trained.recommend(users, args.k, exclude_seen=not args.include_seen, explain=args.explain)
    seconds = time.perf_counter() - start
    unknown = int((frame["source"] != trained.model.name).groupby(frame["user"]).any().sum()) if len(frame) else 0
    frame = frame.drop(columns="source")
    _write(frame, args.out)
    console.print(f"top-{args.k} for {len(users):,} users in {seconds:.2f}s"
                  + (f" ({unknown} without history answered by popularity)" if unknown else "")
                  + (f" → {args.out}" if args.out else ""))


def cmd_score(args: argparse.Namespace) -> None:
    from recengine.trained import TrainedModel

    trained = TrainedModel.load(args.model_dir)
    try:
        pairs = pd.read_csv(args.pairs, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as error:
        raise ConfigError(f"cannot read pairs file {args.pairs}: {error}") from error
    frame = trained.score_pairs(pairs)
    unknown = int(frame["score"].isna().sum())
    _write(frame, args.out)
    if unknown:
        console.print(f"{unknown} pair(s) name items the model has never seen: their score is empty")


def _write(frame: pd.DataFrame, path: str | None) -> None:
    if path:
        frame.to_csv(path, index=False)
    else:
        frame.to_csv(sys.stdout, index=False)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from recengine.data.splits import sampled_candidates
    from recengine.evaluation import fit_and_evaluate, leaderboard
    from recengine.models.registry import create_model

    if args.engine == "spark":
        return evaluate_on_spark(args)
    data = load_input(args)
    names = args.models.split(",") if args.models else list(DEFAULT_CANDIDATES)
    params = model_params(args.param, names)
    split = as_split(data, args.protocol, args.seed)
    if args.negatives:
        split = replace(split, candidates=sampled_candidates(split, args.negatives, random_state=args.seed))
    ks = args.k
    console.print(f"{split.protocol}: {split.train.n_interactions:,} train interactions, "
                  f"{split.n_users:,} evaluated users")
    reports = []
    # Intra-list diversity over the items' genres or categories, where the data has them.
    categories = split.train.category_matrix()
    for name in names:
        model = create_model(name, **params[name])
        with console.status(f"fitting and evaluating {model!r}"):
            reports.append(fit_and_evaluate(model, split, ks=ks, item_features=categories))
    metric = args.metric or (f"ndcg@{20 if 20 in ks else ks[-1]}")
    board = leaderboard(reports, sort_by=metric, intervals=True)
    print_frame(leaderboard_view(board, ks), title=f"{split.train.name} · {split.protocol} · sorted by {metric}")
    if args.out:
        payload = {"config": {"protocol": split.protocol, "models": {n: params[n] for n in names},
                              "seed": args.seed, "k": list(ks), "split": split.info},
                   "dataset": split.train.stats(), "results": [r.to_dict() for r in reports]}
        Path(args.out).write_text(json.dumps(payload, indent=2, default=float))
        console.print(f"report → {args.out}")


def cmd_tune(args: argparse.Namespace) -> None:
    from recengine.data.splits import validation_split
    from recengine.evaluation.tuning import default_study_name, redact_url, tune

    data = load_input(args)
    split = as_split(data, args.protocol, args.seed)
    validation = validation_split(split, random_state=args.seed)
    console.print(f"tuning {args.model} on a validation split carved from the training data "
                  f"({validation.n_users:,} users), {args.trials} trials"
                  + (f", {args.budget:.0f}s budget" if args.budget else "")
                  + (f", {args.workers} workers" if args.workers > 1 else ""))
    if args.storage:
        console.print(f"study {args.study or default_study_name(args.model, args.metric)!r} in "
                      f"{redact_url(args.storage)}: "
                      "the same command on another machine joins it", highlight=False)
    result = tune(args.model, validation, metric=args.metric, n_trials=args.trials, timeout=args.budget,
                  random_state=args.seed, storage=args.storage, study_name=args.study, n_workers=args.workers)
    console.print(f"best validation {result.metric} = {result.best_value:.4f} after {len(result.trials)} trials "
                  f"in {result.seconds:.0f}s")
    out.print_json(data=result.best_params)
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "metric": result.metric,
                                              "value": result.best_value, "params": result.best_params},
                                             indent=2))


def cmd_ope(args: argparse.Namespace) -> None:
    from recengine.online.ope import evaluate, read_log, read_target

    log, target = read_log(args.log), read_target(args.target)
    results = evaluate(log, target, switch_tau=args.switch_tau, seed=args.seed)
    Path(args.out).write_text(json.dumps({name: e.to_dict() for name, e in results.items()}, indent=2))
    rows = [{"estimator": name, "estimate": f"{e.estimate:.5g}", "95% interval": f"{e.ci_low:.5g} … {e.ci_high:.5g}",
             "ess": f"{e.ess:,.0f}"} for name, e in results.items()]
    print_frame(pd.DataFrame(rows), title=f"off-policy value per impression ({len(log):,} logged impressions, "
                                          f"{results['ips'].n_rounds:,} rounds; iips: per round)")
    console.print(f"estimates → {args.out}", highlight=False)


def cmd_models(args: argparse.Namespace) -> None:
    from recengine.models.registry import available_models

    rows = [{"model": name, "feedback": cls.feedback, "class": cls.__name__,
             "defaults": ", ".join(f"{k}={v}" for k, v in cls().get_params().items())}
            for name, cls in available_models().items()]
    print_frame(pd.DataFrame(rows), title="models")


def cmd_info(args: argparse.Namespace) -> None:
    from recengine.trained import TrainedModel

    trained = TrainedModel.load(args.model_dir)
    out.print_json(data={**trained.info, "dataset": trained.dataset.stats()})


def _users_data(args: argparse.Namespace):
    """The data whose users `profile` and `segments` describe: a model directory's training data, or a source."""
    from recengine.data.split import Split
    from recengine.trained import TrainedModel

    given = [flag for flag, value in (("--dataset", args.dataset), ("--events", args.events)) if value]
    if args.model_dir:
        if given:
            raise ConfigError(f"give --model-dir or {given[0]}, not both")
        return TrainedModel.load(args.model_dir).dataset
    if not given:
        raise ConfigError("give the users' data with --model-dir DIR, --dataset SOURCE or --events FILE")
    data = load_input(args)
    if isinstance(data, Split):
        raise ConfigError(f"--dataset {args.dataset} is an evaluation split (train + test); profile a dataset "
                          f"(bundled, movielens:DIR, sequences:DIR), an --events file or a --model-dir")
    return data


def _half_life(args: argparse.Namespace) -> float | None:
    """--half-life in days: the library's default when not given, None (no recency weighting) for 0."""
    from recengine.profiles import DEFAULT_HALF_LIFE_DAYS

    return DEFAULT_HALF_LIFE_DAYS if args.half_life is None else args.half_life or None


def cmd_profile(args: argparse.Namespace) -> None:
    from recengine.profiles import segment_users, user_profile

    dataset = _users_data(args)
    half_life = _half_life(args)
    segments = None
    if args.segments:
        try:
            segments = segment_users(dataset, args.segments, random_state=args.seed, half_life_days=half_life)
        except RecengineError as error:  # a profile is still worth showing without its segment
            console.print(f"note: no segment: {error}", highlight=False, soft_wrap=True)
    profile = user_profile(dataset, args.user, half_life_days=half_life, top=args.top, segments=segments)
    if args.json:
        print(json.dumps(profile.to_dict(), indent=2))
        return
    a = profile.activity
    segment = f" · segment {profile.segment}: {profile.segment_name}" if profile.segment is not None else ""
    out.print(f"[bold]user {profile.user}[/]{segment}", highlight=False)
    out.print(f"{a.interactions:,} interactions with {a.distinct_items:,} items, {a.first_seen} → {a.last_seen}, "
              f"{a.active_days:,} active days ({a.per_active_day:.1f} a day)", highlight=False)
    if a.mean_rating is not None:
        out.print(f"{a.ratings:,} ratings, mean {a.mean_rating:.2f}", highlight=False)
    if a.mainstreamness is not None:
        out.print(f"mainstreamness {a.mainstreamness:.0%} (share of their items among the catalogue's most "
                  f"popular 10%)", highlight=False)
    out.print(f"shares of recency-weighted interactions, half-life {half_life:g} days" if half_life
              else "shares of interactions, no recency weighting", highlight=False)
    for title, rows in ((profile.category_column, profile.categories), ("tags", profile.tags)):
        if rows:
            print_frame(pd.DataFrame({"name": [n for n, _ in rows], "share": [f"{w:.1%}" for _, w in rows]}),
                        title=title)
    for note in profile.notes:
        out.print(f"note: {note}", highlight=False)


def cmd_segments(args: argparse.Namespace) -> None:
    from recengine.profiles import segment_users

    dataset = _users_data(args)
    segments = segment_users(dataset, args.n, random_state=args.seed, half_life_days=_half_life(args))
    if args.json:
        print(json.dumps(segments.to_dict(), indent=2))
        return
    frame = segments.to_frame()
    frame["share"] = [f"{s:.0%}" for s in frame["share"]]
    print_frame(frame, title=f"{dataset.name}: {segments.n_segments} segments by {segments.space}")
    unplaced = int((segments.labels_ < 0).sum())
    if unplaced:
        console.print(f"{unplaced:,} user(s) have no categorised items and are in no segment")


def cmd_ingest(args: argparse.Namespace) -> None:
    from recengine.data.sources import column_fields
    from recengine.store import Store
    from recengine.store.ingest import ingest_file

    if args.reject_file and len(args.files) > 1:
        raise ConfigError("--reject-file takes one file; ingest files with bad rows one at a time")
    columns = column_fields(args.columns)
    with Store.open(args.store) as store:
        # Each file is its own transaction: those before a bad file stay loaded, and the lines above say so.
        for path in args.files:
            report = ingest_file(store, path, kind=args.kind, columns=columns, reject_path=args.reject_file)
            rate = f" ({report.rows / report.seconds:,.0f} {report.kind}/s)" if report.seconds > 0 else ""
            rejected = f", {report.rejected:,} bad rows → {report.reject_path}" if report.rejected else ""
            console.print(f"{path}: {report.rows:,} {report.kind} in {report.seconds:.2f}s{rate}{rejected}",
                          highlight=False)
        counts = store.counts()
    console.print(f"{store.url}: {counts['users']:,} users, {counts['items']:,} items, {counts['events']:,} events",
                  highlight=False)


def cmd_export(args: argparse.Namespace) -> None:
    from recengine.store import Store

    with Store.open(args.store) as store:
        rows = store.export(args.out, what=args.what, format=args.format)
    console.print(f"{rows:,} {args.what} → {args.out}", highlight=False)


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from recengine.serving import Service, Settings
    from recengine.serving.api import create_app

    settings = Settings.from_env(store=args.store, model_dir=args.model_dir)
    # Opened before the port is bound: a bad store URL or model directory ends here with one line and exit 2.
    service = Service.open(settings)
    retrainer = None
    try:
        info = service.model_info()
        console.print(f"serving {info['model']} ({info['users']:,} users, {info['items']:,} items) from "
                      f"{info['source']['model_dir']} with {service.store.url} on http://{args.host}:{args.port} "
                      f"(API documentation at /docs)", highlight=False)
        app = create_app(settings, service)
        if args.retrain_every is not None or args.models_root is not None:
            retrainer = _retrainer(service, args.models_root, args.retrain_every)
            # The models router serves this one instead of starting an on-demand one of its own.
            app.state.retrainer = retrainer
        # What is loaded by now (libraries, the model) lives as long as the server: out of the collector's full
        # scans, which otherwise stall every request in flight (about 200,000 objects: 106-123 ms a scan,
        # measured with ItemKNN on MovieLens).
        gc.collect()
        gc.freeze()
        uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    finally:
        if retrainer is not None:
            retrainer.stop()
        service.close()


def _retrainer(service: Service, models_root: str | None, interval: float | None) -> Retrainer:
    from recengine.serving.lifecycle import Retrainer, default_models_root

    root = models_root or default_models_root(service.store.url)
    retrainer = Retrainer(service, root, interval=interval).start()
    when = f"every {interval:g} s and " if interval is not None else ""
    console.print(f"retraining {when}on POST /v1/models/train; versions saved in {root}", highlight=False,
                  soft_wrap=True)
    return retrainer


def cmd_train(args: argparse.Namespace) -> None:
    from recengine.serving.lifecycle import METRICS, default_models_root, promote_if_not_worse, train_version
    from recengine.store import Store

    with Store.open(args.store) as store:
        name, params = args.model, {}
        if name is None:
            active = store.active_version()
            if active is None:
                raise ConfigError(f"{store.url} has no active model version to retrain; name a model with --model "
                                  f"(see `recengine models`)")
            name, params = active.name, dict(active.params)
        params.update(parse_params(args.param, name))
        root = args.models_root or default_models_root(store.url)
        with console.status(f"training {name} from {store.url} (global-temporal evaluation, then all events)"):
            result = train_version(store, name, params, root)
        version = result.version
        metrics = ", ".join(f"{m} {version.metrics[m]:.4f}" for m in METRICS)
        console.print(f"model version {version.id} ({name}) ready: {metrics}; saved in {version.artifact_path}",
                      highlight=False, soft_wrap=True)
        if args.promote:
            with console.status("comparing with the active version on the same split"):
                decision = promote_if_not_worse(store, result)
            console.print(f"{'promoted' if decision.promoted else 'not promoted'}: {decision.reason}",
                          highlight=False, soft_wrap=True)
    print(version.id)  # stdout carries only the id, for scripts


def cmd_versions(args: argparse.Namespace) -> None:
    from recengine.serving.lifecycle import METRICS
    from recengine.store import Store

    with Store.open(args.store) as store:
        rows = [{"id": v.id, "model": v.name, "status": v.status,
                 **{m: (v.metrics or {}).get(m, "") for m in METRICS},
                 "created": v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                 "artifact or error": v.artifact_path or (v.metrics or {}).get("error", "")}
                for v in store.versions()]
        print_frame(pd.DataFrame(rows, columns=["id", "model", "status", *METRICS, "created", "artifact or error"]),
                    title=f"model versions in {store.url}")


def cmd_rollback(args: argparse.Namespace) -> None:
    from recengine.serving.lifecycle import rollback
    from recengine.store import Store

    with Store.open(args.store) as store:
        version, _ = rollback(store, args.version)
    console.print(f"model version {version.id} ({version.name}) is active; a running server serves it from its "
                  f"next start (POST /v1/models/{version.id}/activate switches one at once)", highlight=False)


def cmd_keys(args: argparse.Namespace) -> None:
    from recengine.serving.api.deps import SCOPE_LEVELS
    from recengine.store import Store

    with Store.open(args.store) as store:
        if args.action == "create":
            scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
            unknown = [s for s in scopes if s not in SCOPE_LEVELS]
            if not scopes or unknown:
                raise ConfigError(f"--scopes {args.scopes!r}: choose from {', '.join(SCOPE_LEVELS)} (admin "
                                  f"includes write, write includes read)")
            key = store.create_api_key(args.name, scopes)
            console.print(f"API key {args.name!r} ({', '.join(scopes)}); it is shown only this once, keep it:")
            print(key)
        elif args.action == "list":
            print_frame(store.api_keys(), title=f"API keys in {store.url}")
        else:
            store.revoke_api_key(args.id)
            console.print(f"API key {args.id} revoked")


def _shares(text: str | None) -> dict[str, float] | None:
    """--shares control=0.5,b=0.5 → {"control": 0.5, "b": 0.5}."""
    if text is None:
        return None
    shares = {}
    for pair in text.split(","):
        name, sep, raw = pair.partition("=")
        try:
            shares[name.strip()] = float(raw)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise ConfigError(f"--shares {text!r}: write variant=share pairs, e.g. control=0.5,treatment=0.5")
    return shares


def _variant(text: str) -> dict[str, Any]:
    """--variant NAME=SHARE[,model_version=N][,diversity=X] → a variant of recengine.serving.experiments."""
    head, *options = text.split(",")
    name, sep, share = head.partition("=")
    try:
        variant: dict[str, Any] = {"name": name.strip(), "share": float(share)}
        for option in options:
            key, _, value = option.partition("=")
            if key.strip() not in ("model_version", "diversity"):
                raise ValueError
            variant[key.strip()] = int(value) if key.strip() == "model_version" else float(value)
    except ValueError:
        raise ConfigError(f"--variant {text!r}: write NAME=SHARE[,model_version=N][,diversity=X], e.g. "
                          f"treatment=0.5,diversity=0.3") from None
    if not sep:
        raise ConfigError(f"--variant {text!r}: give the share as NAME=SHARE")
    return variant


def cmd_experiment_admin(args: argparse.Namespace) -> None:
    """experiment create / list / stop, on the store (a running service reads the change within seconds)."""
    from recengine.serving.experiments import Experiments
    from recengine.store import Store

    with Store.open(args.store) as store:
        experiments = Experiments(store)
        if args.action == "create":
            created = experiments.create(args.name, [_variant(v) for v in args.variant], surface=args.surface,
                                         holdout=args.holdout, allocation=args.allocation,
                                         primary_metric=args.primary_metric, guardrail_metrics=args.guardrail or ())
            console.print(f"experiment {created.name!r} on surface {created.surface!r} runs from "
                          f"{created.starts_at:%Y-%m-%d %H:%M} UTC", highlight=False)
        elif args.action == "stop":
            console.print(f"experiment {experiments.stop(args.name).name!r} stopped", highlight=False)
        else:
            rows = [{"name": e.name, "surface": e.surface, "allocation": e.allocation,
                     "variants": ", ".join(f"{v.name} {v.share:g}" for v in e.variants), "holdout": e.holdout,
                     "metric": e.primary_metric, "starts": f"{e.starts_at:%Y-%m-%d %H:%M}",
                     "stops": "" if e.stops_at is None else f"{e.stops_at:%Y-%m-%d %H:%M}"}
                    for e in experiments.all()]
            print_frame(pd.DataFrame(rows), title=f"experiments in {store.url}")


def cmd_experiment(args: argparse.Namespace) -> None:
    from recengine.online.experiments import analyze, power, read_units, sample_size

    if args.action in ("create", "list", "stop"):
        cmd_experiment_admin(args)
        return
    if args.action == "power":
        n = sample_size(args.baseline, args.lift, alpha=args.alpha, power=args.power)
        console.print(f"{n:,} units per variant (one exposure each) detect a {args.lift:+.2%} relative lift over a "
                      f"{args.baseline:.2%} conversion rate with {power(args.baseline, args.lift, n, args.alpha):.1%} "
                      f"power at two-sided alpha {args.alpha:g}", highlight=False, soft_wrap=True)
        print(n)  # stdout carries only the number, for scripts
        return
    result = analyze(read_units(args.units), shares=_shares(args.shares), mixture_sd=args.mixture_sd)
    Path(args.out).write_text(json.dumps(result, indent=2))
    control = result["control"]
    rows = [{"variant": control["variant"], "units": control["units"], "rate": control["rate"], "lift": "",
             "95% interval": "", "p": "", "p sequential": ""}]


    def shown(value: float | None, spec: str) -> str:  # None: undefined (e.g. no variance at all)
        return "—" if value is None else format(value, spec)

    rows += [{"variant": name, "units": v["units"], "rate": v["rate"], "lift": shown(v["lift"], "+.2%"),
              "95% interval": f"{shown(v['ci_low'], '+.2%')} … {shown(v['ci_high'], '+.2%')}",
              "p": shown(v["p_value"], ".4f"), "p sequential": shown(v["p_value_sequential"], ".4f")}
             for name, v in result["variants"].items()]
    print_frame(pd.DataFrame(rows), title=f"conversions per exposure · {result['units']:,} units")
    srm = f"sample-ratio p = {result['srm_p_value']:.3g}"
    console.print(f"[red]warning:[/] {srm}: the split does not match the design; do not trust the lifts until the "
                  f"assignment is fixed" if result["srm_flag"] else srm, highlight=False, soft_wrap=True)
    console.print(f"analysis → {args.out}", highlight=False)


def cmd_demo(args: argparse.Namespace) -> None:
    from recengine.demo import DEMO_MODELS, run_demo

    models = DEMO_MODELS if args.models is None else tuple(m.strip() for m in args.models.split(",") if m.strip())
    if not models:
        raise ConfigError(f"--models {args.models!r}: name at least one model, e.g. popular,itemknn")
    run_demo(users=args.users, random_state=args.seed, models=models, directory=args.dir, serve=not args.no_serve,
             host=args.host, port=args.port)


# ----------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recengine", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def data_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--dataset", help="a known source: bundled, movielens:DIR, grouplens:DIR:u1, "
                                         "sequences:DIR, ncf:PREFIX")
        p.add_argument("--events", help="events file (CSV/TSV/Parquet/JSON lines) with a header")
        p.add_argument("--columns", help="column mapping, e.g. user=userId,item=movieId,timestamp=ts")
        p.add_argument("--items", help="item metadata file (id, title, categories, ...)")
        p.add_argument("--reject-file", help="write bad rows here instead of stopping at the first one")
        p.add_argument("--seed", type=int, default=42)

    def engine_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--engine", choices=["local", "spark"], default="local",
                       help="local (this process) or spark (ials, ials-cg, itemknn, biased-mf; needs "
                            "recengine[spark] and Java)")
        p.add_argument("--master", help="with --engine spark: a Spark master URL (local[4], spark://HOST:7077, "
                                        "yarn, ...; default: what spark-submit set, else local[2])")
        p.add_argument("--spark-log", help="with --engine spark: file for Spark's own logs (default "
                                           "recengine-spark.log in the temp directory; - for the terminal)")

    p = sub.add_parser("fit", help="fit a model and write a model directory")
    data_options(p)
    engine_options(p)
    p.add_argument("--model", required=True, help="model name (see `recengine models`) or auto")
    p.add_argument("--param", action="append", default=[], help="hyper-parameter key=value (repeatable)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--candidates", help="comma-separated models for --model auto")
    p.add_argument("--protocol", default="temporal-user", help="validation protocol for --model auto")
    p.add_argument("--metric", default="ndcg@20", help="selection metric for --model auto")
    p.add_argument("--nproc", type=int, default=1, help="neural models: train with DistributedDataParallel in N "
                                                        "processes on this machine (under torchrun: its workers)")
    p.set_defaults(run=cmd_fit)

    p = sub.add_parser("recommend", help="batch top-K for all or listed users, seen items excluded")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--users", help="file with one user id a line (default: every training user)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--include-seen", action="store_true", help="allow items the user already has")
    p.add_argument("--explain", action="store_true",
                   help="add reason and text columns (\"Because you liked ...\"); one explanation a row, slower")
    p.add_argument("--out", help="CSV to write (user,item,rank,score; with --engine spark a Parquet folder); "
                                 "default stdout")
    engine_options(p)
    p.set_defaults(run=cmd_recommend)

    p = sub.add_parser("score", help="score given user,item pairs")
    p.add_argument("--model-dir", required=True)
    p.add_argument("--pairs", required=True, help="CSV with columns user,item")
    p.add_argument("--out", help="CSV to write (user,item,score); default stdout")
    p.set_defaults(run=cmd_score)

    p = sub.add_parser("evaluate", help="fit models on a split and print a leaderboard")
    data_options(p)
    p.add_argument("--protocol", help="temporal-user (default), loo, strong, global-temporal, ratings")
    p.add_argument("--models", help=f"comma-separated (default {','.join(DEFAULT_CANDIDATES)})")
    p.add_argument("--param", action="append", default=[], help="model.key=value (repeatable)")
    p.add_argument("--negatives", type=int, help="rank each user's test items among N sampled unseen items "
                                                 "instead of the whole catalogue")
    p.add_argument("--k", type=cutoffs, default=(10, 20, 100), help="cut-offs, comma-separated (10,20,100)")
    p.add_argument("--metric", help="leaderboard order (default ndcg@20, or ndcg at the largest K)")
    p.add_argument("--out", help="JSON report to write")
    engine_options(p)
    p.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("tune", help="tune a model's hyper-parameters on a validation split")
    p.add_argument("model")
    data_options(p)
    p.add_argument("--protocol", help="temporal-user (default), loo, strong, global-temporal, ratings")
    p.add_argument("--metric", default="ndcg@20")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--budget", type=float, help="time budget in seconds")
    p.add_argument("--storage", help="SQLAlchemy URL of a database holding the study, shared by every worker "
                                     "and machine (postgresql+psycopg://USER:PASSWORD@HOST/DB, sqlite:///FILE)")
    p.add_argument("--study", help="study name in --storage (default MODEL-METRIC); --trials is its total")
    p.add_argument("--workers", type=int, default=1, help="worker processes on this machine (needs --storage)")
    p.add_argument("--out", help="JSON file for the best parameters")
    p.set_defaults(run=cmd_tune)

    p = sub.add_parser("ope", help="off-policy evaluation: a target policy's value estimated from logged feedback")
    p.add_argument("--log", required=True, help="CSV/Parquet with round,position,item,reward,propensity[,x_*]")
    p.add_argument("--target", required=True, help="CSV/Parquet with round,position,item,prob: the evaluated "
                                                   "policy's probability of each candidate at each logged slot")
    p.add_argument("--out", required=True, help="JSON file: estimate, ci_low, ci_high (and se, ess) per estimator")
    p.add_argument("--switch-tau", type=float, default=100.0,
                   help="switch-dr: importance weights above this leave the reward model alone (default 100)")
    p.add_argument("--seed", type=int, default=42, help="seed of the reward model's cross-fitting folds")
    p.set_defaults(run=cmd_ope)

    p = sub.add_parser("models", help="list the available models")
    p.set_defaults(run=cmd_models)

    p = sub.add_parser("info", help="describe a model directory")
    p.add_argument("model_dir")
    p.set_defaults(run=cmd_info)

    def users_data_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model-dir", help="a model directory: describe its training users")
        data_options(p)
        p.add_argument("--half-life", type=float,
                       help="an interaction this many days before the user's latest counts half (default 365; "
                            "0: no recency weighting)")
        p.add_argument("--json", action="store_true", help="print JSON instead of tables")

    p = sub.add_parser("profile", help="who a user is: categories, tags, activity, segment")
    p.add_argument("user")
    users_data_options(p)
    p.add_argument("--top", type=int, default=10, help="how many categories and tags to show")
    p.add_argument("--segments", type=int, default=8, help="place the user among this many segments (0: skip)")
    p.set_defaults(run=cmd_profile)

    p = sub.add_parser("segments", help="group users by taste (k-means) and name the groups")
    users_data_options(p)
    p.add_argument("--n", type=int, default=8, help="number of segments")
    p.set_defaults(run=cmd_segments)

    store_help = "store URL: sqlite:///PATH.db or postgresql+psycopg://USER:PASSWORD@HOST/DB (default: " \
                 "$RECENGINE_STORE, else sqlite:///recengine.db)"
    models_root_help = "directory for model versions (default: beside a SQLite store, e.g. recengine-models/ " \
                       "for recengine.db; else recengine-models/ here)"
    p = sub.add_parser("ingest", help="bulk-load event, item and user files into the store")
    p.add_argument("files", nargs="+", help="CSV/TSV/Parquet/JSON lines files, each loaded in one transaction")
    p.add_argument("--store", help=store_help)
    p.add_argument("--kind", default="auto", choices=["auto", "events", "items", "users"],
                   help="what the files hold (auto: from their columns)")
    p.add_argument("--columns", help="column mapping, e.g. user=userId,item=movieId,timestamp=ts (user and item "
                                     "also name the id columns of item and user files)")
    p.add_argument("--reject-file", help="write bad event rows here instead of stopping at the first one")
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser("export", help="write the store's events, items or users to CSV or Parquet")
    p.add_argument("--store", help=store_help)
    p.add_argument("--what", default="events", choices=["events", "items", "users"])
    p.add_argument("--out", required=True, help="file to write (.csv or .parquet)")
    p.add_argument("--format", choices=["csv", "parquet"], help="default: from the --out extension")
    p.set_defaults(run=cmd_export)

    p = sub.add_parser("serve", help="serve the HTTP API (recommendations, events, items, users; /docs)")
    p.add_argument("--store", help=store_help)
    p.add_argument("--model-dir", help="model directory from `recengine fit` (default: $RECENGINE_MODEL_DIR, "
                                       "else the store's active model version)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument("--retrain-every", type=float, metavar="SECONDS",
                   help="retrain the serving model's configuration on this schedule (and on POST /v1/models/train); "
                        "a new version is served only if it is not worse")
    p.add_argument("--models-root", help=models_root_help)
    p.set_defaults(run=cmd_serve)

    p = sub.add_parser("train", help="train a model version from the store (evaluated on a global-temporal split)")
    p.add_argument("--store", help=store_help)
    p.add_argument("--model", help="model name (default: the active version's model and parameters)")
    p.add_argument("--param", action="append", default=[], help="hyper-parameter key=value (repeatable)")
    p.add_argument("--models-root", help=models_root_help)
    p.add_argument("--promote", action="store_true",
                   help="make it the active version if it is not worse than the active one on the same split")
    p.set_defaults(run=cmd_train)

    p = sub.add_parser("versions", help="the store's model versions with their status and metrics")
    p.add_argument("--store", help=store_help)
    p.set_defaults(run=cmd_versions)

    p = sub.add_parser("rollback", help="make an earlier (ready) model version active again")
    p.add_argument("version", type=int, help="the version id (see `recengine versions`)")
    p.add_argument("--store", help=store_help)
    p.set_defaults(run=cmd_rollback)

    p = sub.add_parser("keys", help="API keys of the service: create (shown once), list, revoke")
    keys = p.add_subparsers(dest="action", required=True)
    k = keys.add_parser("create", help="create a key and print it once")
    k.add_argument("name", help="who or what the key is for")
    k.add_argument("--scopes", default="read", help="comma-separated: read, write, admin (default read)")
    k = keys.add_parser("list", help="every key's id, name, scopes and first characters (never the key)")
    k = keys.add_parser("revoke", help="revoke a key by its id (see keys list)")
    k.add_argument("id", type=int)
    for k in keys.choices.values():
        k.add_argument("--store", help=store_help)
    p.set_defaults(run=cmd_keys)

    p = sub.add_parser("experiment", help="A/B experiments: analyse unit-level results, size an experiment")
    experiment = p.add_subparsers(dest="action", required=True)
    e = experiment.add_parser("analyze", help="lift, intervals, p-values (fixed and always-valid), CUPED, SRM")
    e.add_argument("--units", required=True, help="CSV with unit,variant,exposures,conversions[,value,pre_value]")
    e.add_argument("--out", required=True, help="JSON file for the analysis")
    e.add_argument("--shares", help="designed shares for the sample-ratio check, e.g. control=0.5,b=0.5 "
                                    "(default equal)")
    e.add_argument("--mixture-sd", type=float, default=0.05,
                   help="spread of the sequential test's mixture over the log rate ratio (default 0.05)")
    e = experiment.add_parser("power", help="units per variant to detect a relative lift in conversion rate")
    e.add_argument("--baseline", type=float, required=True, help="control conversion rate, e.g. 0.05")
    e.add_argument("--lift", type=float, required=True, help="relative lift to detect, e.g. 0.03 for +3%%")
    e.add_argument("--alpha", type=float, default=0.05, help="two-sided significance level (default 0.05)")
    e.add_argument("--power", type=float, default=0.8, help="probability of detecting the lift (default 0.8)")
    e = experiment.add_parser("create", help="define an experiment the service runs (hashed shares or a bandit)")
    e.add_argument("name")
    e.add_argument("--variant", action="append", required=True,
                   help="NAME=SHARE[,model_version=N][,diversity=X]; repeat for each variant (shares sum to 1)")
    e.add_argument("--surface", default="default", help="where its slates are shown (?surface= of requests)")
    e.add_argument("--holdout", type=float, default=0.0, help="share of users kept on the default serving")
    e.add_argument("--allocation", default="fixed", help="fixed (hashed shares) or bandit (Thompson sampling)")
    e.add_argument("--primary-metric", default="click", help="an outcome event type (default click)")
    e.add_argument("--guardrail", action="append", help="a guard-rail outcome event type; repeat for more")
    e = experiment.add_parser("list", help="the store's experiments")
    e = experiment.add_parser("stop", help="stop an experiment now")
    e.add_argument("name")
    for action in ("create", "list", "stop"):
        experiment.choices[action].add_argument("--store", help=store_help)
    p.set_defaults(run=cmd_experiment)

    p = sub.add_parser("demo", help="the bundled MovieLens demo: leaderboard, recommendations, then the API "
                                    "served with the data in a store and a model version active")
    p.add_argument("--users", type=int, default=3, help="how many users to show recommendations for")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--models", help="comma-separated models for the leaderboard; the best is served (default "
                                    "popular,itemknn,rp3beta,ease,ials,bpr)")
    p.add_argument("--dir", default=".recengine-demo",
                   help="directory of the demo store (demo.db, replaced on each run) and its model versions")
    p.add_argument("--no-serve", action="store_true", help="stop once the store is loaded and a version is active")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.set_defaults(run=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except RecengineError as error:
        console.print(f"[red]error:[/] {error}", highlight=False, soft_wrap=True)
        return 2
    except OSError as error:  # an output path that cannot be written, a disk that is full
        console.print(f"[red]error:[/] {error.filename or ''}: {error.strerror or error}", highlight=False,
                      soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
