"""personalization-pipeline: run the jobs, serve the rankings, generate sample data, benchmark."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import shutil
import socket
import sys
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from .config import DEV_JWT_SECRET, PREFIX, Settings, project_root

console = Console()

SAMPLE_USERS = 1000
SAMPLE_ITEMS = 400


def _generate(out: Path, users: int, items: int, seed: int, fmt: str = "csv") -> dict[str, int]:
    from .synth.generator import generate

    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"generating {users} users into {out}", total=users)
        counts = generate(
            out, users=users, items=items, seed=seed, fmt=fmt, progress=lambda n: progress.advance(task, n)
        )
    return counts


def cmd_generate(args: argparse.Namespace) -> int:
    out = Path(args.out) if args.out else Settings.from_env().data_dir
    counts = _generate(out, args.users, args.items, args.seed, args.format)
    console.print(f"wrote {json.dumps(counts)} to {out}")
    return 0


def _ensure_sample_data(settings: Settings) -> None:
    """On a fresh checkout the default data directory is empty: generate the sample there."""
    if any(settings.data_dir.glob("interactions.*")) or settings.mapping_path:
        return
    console.print(
        f"[bold]No raw data in {settings.data_dir}: generating the sample "
        f"({SAMPLE_USERS} users, {SAMPLE_ITEMS} items, seed {settings.seed})."
    )
    _generate(settings.data_dir, SAMPLE_USERS, SAMPLE_ITEMS, settings.seed)


def _dagster_home(settings: Settings) -> Path | None:
    """Where runs are recorded without DAGSTER_HOME: ``<runtime>/dagster_home`` (configured like the
    checkout's ``dagster_home/dagster.yaml``), where the UI started on it finds them."""
    if os.environ.get("DAGSTER_HOME"):
        return None
    home = settings.runtime_dir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        shutil.copyfile(project_root() / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    return home


def cmd_prepare(args: argparse.Namespace) -> int:
    from .dbt_manifest import dbt_project, prepare_manifest

    parsed = prepare_manifest()
    console.print(f"dbt manifest {'parsed' if parsed else 'up to date'}: {dbt_project.manifest_path}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .dbt_manifest import prepare_manifest
    from .progress import StepProgress
    from .runner import run_job, sample_lookup, summarize

    prepare_manifest()
    settings = Settings.from_env()
    home = _dagster_home(settings)
    if not args.no_sample:
        _ensure_sample_data(settings)
    log_path = settings.runtime_dir / "logs" / f"{args.job}-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    terminal = Console(file=sys.stdout)  # bound before the job's own output is redirected to the log
    terminal.print(f"[bold]{args.job}[/] job (data: {settings.data_dir}; log: {log_path})")
    with (
        log_path.open("w") as log,
        terminal.status(f"{args.job}: starting ...") as status,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),  # Dagster's event log and tracebacks: kept in the job log
    ):
        progress = StepProgress(terminal, status, args.job)
        result = run_job(args.job, on_event=progress, overrides=dict(args.set), home=home)
    if not result.success:
        console.print(
            f"[red bold]The {args.job} job failed[/]: {result.error}\nfull log with the traceback: {log_path}"
        )
        return 1
    if args.job == "cleanup":
        summary = {f"deleted: {k}": v for k, v in result.metadata["retention_cleanup"].items()}
    else:
        passed = sum(result.checks.values())
        summary = {
            **summarize(settings, result.metadata),
            "asset checks passed": f"{passed}/{len(result.checks)}",
            "job log": str(log_path),
        }
    table = Table(title=f"{args.job} run {result.run_id}")
    table.add_column("what")
    table.add_column("value", overflow="fold")
    for key, value in summary.items():
        table.add_row(key, str(value))
    console.print(table)
    lookup = sample_lookup(settings)
    if lookup:
        console.print("[bold]Sample lookup over HTTP[/] " + lookup.request)
        console.print_json(data=lookup.response)
        user, scope = lookup.response["user_id"], lookup.response["scope"]
        console.print(
            "Try it yourself: [bold]personalization-pipeline serve[/] and, in another shell,\n"
            f'  curl -H "Authorization: Bearer $(personalization-pipeline token --user {user})" '
            f"'http://{settings.api_host}:{settings.api_port}/v1/rankings/{scope}?limit=5'",
            soft_wrap=True,
        )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from .serving.database import resolve_database_url
    from .serving.secrets import secret_problem
    from .serving.server import ListenError, serve

    settings = Settings.from_env()
    host = args.host or settings.api_host
    loopback = ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
    # The built-in development secret is only good for a loopback endpoint; any other must be strong.
    if not (loopback and settings.jwt_secret == DEV_JWT_SECRET):
        problem = secret_problem(settings.jwt_secret, project_root())
        if problem:
            console.print(
                f"[red bold]Refusing to serve on {host}[/]: the JWT secret cannot be trusted ({problem}); anyone "
                "could mint admin tokens. Set PERSONALIZATION_JWT_SECRET to a random string of 32+ characters, "
                "e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`."
            )
            return 2
    if not (settings.api_database_url or settings.database_url):
        # Start the embedded server once, here; the worker processes read its URL from the environment.
        os.environ[f"{PREFIX}DATABASE_URL"] = resolve_database_url(settings)
    try:
        workers = args.workers or settings.api_workers
        return serve(host, args.port or settings.api_port, workers, settings.api_access_log)
    except ListenError as exc:
        console.print(f"[red bold]{exc}[/]")
        return 1


def cmd_token(args: argparse.Namespace) -> int:
    from .serving.auth import mint_token

    settings = Settings.from_env()
    if args.ttl > settings.jwt_max_lifetime_seconds:
        console.print(
            f"[red bold]--ttl {args.ttl} is longer than the endpoint accepts[/] "
            f"(PERSONALIZATION_JWT_MAX_LIFETIME_SECONDS={settings.jwt_max_lifetime_seconds})"
        )
        return 2
    print(
        mint_token(
            settings.jwt_secret,
            args.user,
            role=args.role,
            ttl_seconds=args.ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    )
    return 0


def cmd_pii_eval(args: argparse.Namespace) -> int:
    import pandas as pd

    from .privacy.detector_eval import false_positives, product_names, recall

    found = recall()
    table = Table(title="PII detectors: recall on planted personal data, false positives on catalogue text")
    for column in ("corpus", "values", "flagged", "rate"):
        table.add_column(column)
    for kind, total in found.total.items():
        table.add_row(f"planted {kind}", str(total), str(found.found[kind]), f"recall {found.found[kind] / total:.1%}")
    corpora = {f"generated product names (seed {args.seed})": product_names(args.products, args.seed)}
    for path in args.titles:
        corpora[f"{path} column {args.column}"] = pd.read_csv(path, dtype=str)[args.column].dropna().tolist()
    examples = []
    for name, values in corpora.items():
        result = false_positives(values)
        table.add_row(name, str(result.scanned), str(len(result.flagged)), f"false positives {result.rate:.2%}")
        examples += [f"{value!r} ({', '.join(kinds)})" for value, kinds in result.flagged[:5]]
    console.print(table)
    if found.missed:
        console.print(f"[red bold]missed planted values[/]: {', '.join(found.missed)}")
    if examples:
        console.print("flagged catalogue text, e.g.: " + "; ".join(examples))
    return 0 if not found.missed else 1


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench.report import last_job_steps, tier_section, write_report
    from .bench.run import TierResult, machine, run_tier
    from .bench.tiers import TIERS
    from .dbt_manifest import prepare_manifest

    prepare_manifest()
    tier = TIERS[args.tier]
    workdir = Path(args.workdir) if args.workdir else Settings.from_env().runtime_dir / "bench" / tier.name
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%S}.log"
    out = Path(args.out)
    if args.endpoint:
        return _bench_endpoint(args, workdir, log_path)
    started = datetime.now(UTC)
    terminal = Console(file=sys.stdout)  # bound before the jobs' output is redirected to the log
    with (
        terminal.status(f"tier {tier.name} (log: {log_path})") as status,
        log_path.open("w") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):

        def say(phase: str) -> None:
            elapsed = (datetime.now(UTC) - started).total_seconds()
            status.update(f"{phase} ... ({elapsed:,.0f} s so far; log: {log_path})")
            terminal.log(phase)

        def write_so_far(result: TierResult) -> None:
            write_report(out, tier_section(result, machine()))
            say(f"tier {tier.name}: {', '.join(result.jobs)} written to {out}")

        try:
            result = run_tier(tier, workdir, args.database_url, say, tuple(args.jobs.split(",")), on_job=write_so_far)
        except RuntimeError as exc:
            console.print(f"[red bold]bench failed[/]: {exc}\nlog: {log_path}")
            return 1
    write_report(out, tier_section(result, machine()))
    table = Table(title=f"tier {tier.name}: bare kernel vs pipeline step (last job)")
    for column in ("kernel", "kernel s", "step", "step s", "ratio"):
        table.add_column(column)
    last = last_job_steps(result)
    for kernel in result.kernels:
        step = last.get(kernel.step, float("nan"))
        table.add_row(kernel.name, f"{kernel.seconds:.1f}", kernel.step, f"{step:.1f}", f"{step / kernel.seconds:.1f}")
    console.print(table)
    jobs = ", ".join(f"{job} {usage.wall_seconds:,.0f} s" for job, usage in result.jobs.items())
    console.print(f"{jobs}; peak RSS {result.peak_rss_mb:,.0f} MB. Written to {out}.")
    if result.failed_job:
        console.print(f"[red bold]the {result.failed_job} job failed[/]: {result.failure}\nlog: {log_path}")
        return 1
    return 0


def _bench_endpoint(args: argparse.Namespace, workdir: Path, log_path: Path) -> int:
    import secrets

    from .bench.endpoint import run_endpoint
    from .bench.report import endpoint_section, write_report
    from .bench.run import machine
    from .serving.database import start_embedded_server

    url = args.database_url or start_embedded_server(workdir / "pgserver")
    with console.status(f"loading the endpoint for {args.seconds:g} s (log: {log_path})"):
        try:
            secret = secrets.token_urlsafe(48)
            result = run_endpoint(
                url, workdir, secret, args.users, args.connections, args.seconds, log_path, args.load_generator
            )
        except RuntimeError as exc:
            console.print(f"[red bold]endpoint bench failed[/]: {exc}\nlog: {log_path}")
            return 1
    now = datetime.now(UTC).replace(microsecond=0, tzinfo=None)
    write_report(Path(args.out), endpoint_section(args.tier, result, machine(), now))
    load = result.load
    console.print(
        f"{load.requests:,} requests, {load.errors:,} errors, {load.rate:,.0f} req/s, p50 {load.p50_ms:.1f} ms, "
        f"p95 {load.p95_ms:.1f} ms, p99 {load.p99_ms:.1f} ms; bare PK lookups {result.bare_rate:,.0f}/s. "
        f"Written to {args.out}."
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Run a Celery worker for the ``celery`` executor in the foreground (replaces this process)."""
    from .dbt_manifest import prepare_manifest

    prepare_manifest()
    celery = Path(sys.executable).with_name("celery")
    command = [str(celery), "-A", "personalization_pipeline.celery_worker", "worker", "-Q", "dagster"]
    command += ["--prefetch-multiplier=1", f"--concurrency={args.concurrency}", f"--loglevel={args.loglevel}"]
    os.execv(command[0], command)


def cmd_migrate(args: argparse.Namespace) -> int:
    import psycopg

    from .serving import migrate
    from .serving.database import login_summary, resolve_database_url
    from .serving.schema import ensure_schema

    url = resolve_database_url(Settings.from_env())
    where = login_summary(url)
    with psycopg.connect(url) as conn:
        before = migrate.current(conn)
        newest = migrate.head()
        if args.status:
            behind = before is None or migrate.known(before)
            state = "up to date" if before == newest else "behind" if behind else "newer than this code"
            line = f"serving schema of {where}: {before or 'not migrated'}; this code's: {newest} ({state})"
            console.print(line, soft_wrap=True)
            return 0 if before == newest else 1 if behind else 2
        try:
            ensure_schema(conn)
        except migrate.SchemaTooNewError as exc:
            console.print(f"[red bold]refused[/]: {exc}", soft_wrap=True)
            return 2
    console.print(f"serving schema of {where}: {before or 'not migrated'} -> {newest}", soft_wrap=True)
    return 0


def _serving_url() -> str:
    from .serving.database import resolve_database_url

    return resolve_database_url(Settings.from_env())


def _experiment_lines(experiments: list) -> Table:
    table = Table("name", "active", "starts", "ends", "variants (ranking, traffic)", "metric", "min sample")
    for e in experiments:
        variants = ", ".join(f"{v.name} ({v.ranking}, {v.traffic}%)" for v in e.variants)
        ends = e.ends_at.isoformat(timespec="minutes") if e.ends_at else "-"
        starts = e.starts_at.isoformat(timespec="minutes")
        table.add_row(e.name, str(e.active), starts, ends, variants, e.success_metric, str(e.min_sample_size))
    return table


def cmd_experiment(args: argparse.Namespace) -> int:
    import pandas as pd
    from pydantic import ValidationError

    from .experiments import store
    from .experiments.definition import ExperimentSpec

    url = _serving_url()
    if args.action == "create":
        text = sys.stdin.read() if args.file == "-" else Path(args.file).read_text()
        try:
            spec = ExperimentSpec.model_validate_json(text)
            experiment = store.create(url, spec, Settings.from_env().seed)
        except ValidationError as exc:
            console.print(f"[red bold]invalid experiment in {args.file}[/]:\n{exc}", soft_wrap=True)
            return 2
        except store.ExperimentConflict as exc:
            console.print(f"[red bold]refused[/]: {exc}", soft_wrap=True)
            return 1
        console.print(_experiment_lines([experiment]))
        console.print("Users are assigned and served their variant from the next nightly run.")
        return 0
    if args.action == "end":
        ended = store.end(url, args.name)
        if ended is None:
            console.print(f"[red bold]no active experiment named {args.name!r}[/]", soft_wrap=True)
            return 1
        console.print(f"ended {ended.name}: its users get the default ranking from the next publish")
        return 0
    if args.action == "list":
        console.print(_experiment_lines(store.list_all(url)))
        return 0
    results = store.read_results(url, args.name)
    if results.empty:
        console.print(f"no results for {args.name!r} yet: they are computed by the nightly job", soft_wrap=True)
        return 1
    shown = results.drop(columns=["name", "computed_at"]).set_index("variant")
    table = Table("", *shown.index)  # one column per variant: fits a narrow terminal
    for field, values in shown.T.iterrows():
        table.add_row(
            str(field), *("-" if pd.isna(v) else f"{v:.4g}" if isinstance(v, float) else str(v) for v in values)
        )
    console.print(table)
    console.print(f"computed at {results['computed_at'].max()}")
    return 0


def cmd_simulate_responses(args: argparse.Namespace) -> int:
    import pandas as pd

    from .experiments import store
    from .synth.responses import append_interactions, simulate_responses

    settings = Settings.from_env()
    served = store.served_lists(_serving_url(), args.experiment)
    if served.empty:
        console.print(f"[red bold]nobody is served in experiment {args.experiment!r}[/]: run the nightly job first")
        return 1
    found = sorted(settings.data_dir.glob("interactions.*"))
    if len(found) != 1:
        console.print(f"[red bold]expected one interactions file in {settings.data_dir}, found {len(found)}[/]")
        return 1
    window = pd.Timedelta(hours=settings.experiment_attribution_hours)
    events = simulate_responses(served, dict(args.lift), args.seed, window, pd.Timestamp.now(tz="UTC"))
    rows = append_interactions(found[0], events)
    counts = events.groupby("event_type").size().to_dict()
    console.print(f"appended {rows} simulated responses of {len(served)} users to {found[0]}: {counts}")
    return 0


def _lift(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError(text)
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VARIANT=LIFT (e.g. treatment=0.3), got {text!r}") from None


def cmd_stop_db(args: argparse.Namespace) -> int:
    from .serving.database import stop_embedded_server

    settings = Settings.from_env()
    stop_embedded_server(settings.embedded_pg_dir)
    console.print(f"embedded PostgreSQL in {settings.embedded_pg_dir} is stopped")
    return 0


def _setting(text: str) -> tuple[str, object]:
    """``NAME=VALUE`` as (name, value): JSON where it parses (numbers, booleans, objects), else text."""
    name, sep, raw = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        value: object = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return name.strip().lower().removeprefix("personalization_"), value


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option's default after its help unless it has none."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: {default})".strip()


def _command(sub: argparse._SubParsersAction, name: str, summary: str, details: str = "") -> argparse.ArgumentParser:
    """A subcommand whose help lists ``summary`` and whose own help opens with it and ``details``."""
    description = f"{summary[0].upper()}{summary[1:]}." + (f"\n\n{details}" if details else "")
    return sub.add_parser(name, help=summary, description=description, formatter_class=_HelpFormatter)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="personalization-pipeline",
        description=__doc__,
        epilog="Settings come from PERSONALIZATION_* environment variables (see the README).",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('personalization_pipeline')}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = _command(sub, "generate", "write sample raw data (users, items, interactions, settings)")
    gen.add_argument("--users", type=int, default=SAMPLE_USERS, help="users to generate")
    gen.add_argument("--items", type=int, default=SAMPLE_ITEMS, help="catalogue items to generate")
    gen.add_argument("--seed", type=int, default=42, help="random seed (the same seed writes the same data)")
    gen.add_argument("--out", help="output directory (default: PERSONALIZATION_DATA_DIR, i.e. data/raw)")
    gen.add_argument("--format", choices=["csv", "parquet"], default="csv", help="file format")
    gen.set_defaults(func=cmd_generate)

    run = _command(
        sub,
        "run",
        "materialize a job in-process and print a summary",
        "Runs on the embedded defaults (DuckDB under data/, an embedded PostgreSQL) unless\n"
        "PERSONALIZATION_DATABASE_URL and the other settings say otherwise; an empty data\n"
        "directory gets sample data first.",
    )
    run.add_argument("--job", default="nightly", choices=["nightly", "weekly", "cleanup"], help="job to run")
    run.add_argument(
        "--no-sample", action="store_true", help="fail instead of generating sample data into an empty data directory"
    )
    run.add_argument(
        "--set",
        action="append",
        default=[],
        type=_setting,
        metavar="NAME=VALUE",
        help="override a setting for this run only, as the launchpad's run_settings resource does "
        "(repeatable; NAME as in PERSONALIZATION_<NAME>, VALUE as JSON or text)",
    )
    run.set_defaults(func=cmd_run)

    serve = _command(sub, "serve", "start the lookup endpoint", "The OpenAPI description is served at /docs.")
    serve.add_argument("--host", help="address to bind (default: PERSONALIZATION_API_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default: PERSONALIZATION_API_PORT, 8000)")
    serve.add_argument(
        "--workers", type=int, help="worker processes (default: PERSONALIZATION_API_WORKERS, else the CPU count)"
    )
    serve.set_defaults(func=cmd_serve)

    token = _command(sub, "token", "print a signed development token", "Signed with PERSONALIZATION_JWT_SECRET.")
    token.add_argument("--user", required=True, help="the token's user id (sub)")
    token.add_argument(
        "--role", default="client", choices=["client", "reader", "monitor", "admin", "superadmin"], help="role claim"
    )
    token.add_argument("--ttl", type=int, default=3600, help="seconds until expiry")
    token.set_defaults(func=cmd_token)

    pii = _command(sub, "pii-eval", "recall of the PII detectors on planted data, false positives on catalogue text")
    pii.add_argument("--titles", action="append", default=[], help="CSV file of catalogue text (repeatable)")
    pii.add_argument("--column", default="title", help="column of the --titles files")
    pii.add_argument("--products", type=int, default=1000, help="generated product names")
    pii.add_argument("--seed", type=int, default=7, help="random seed")
    pii.set_defaults(func=cmd_pii_eval)

    bench = _command(
        sub,
        "bench",
        "run the nightly and weekly jobs on a generated tier, time each step and the bare kernels",
        "Writes the tier's section of BENCHMARKS.md; with --endpoint, loads the endpoint instead.",
    )
    bench.add_argument("--tier", default="S", choices=["XS", "S", "M", "L"], help="data size")
    bench.add_argument("--out", default=str(project_root() / "BENCHMARKS.md"), help="report")
    bench.add_argument("--workdir", help="runtime directory of the tier (default: data/bench/<tier>)")
    bench.add_argument(
        "--database-url", help="PostgreSQL to publish into (default: an embedded server under the workdir)"
    )
    bench.add_argument(
        "--jobs",
        default="nightly,weekly",
        choices=["nightly,weekly", "nightly"],
        metavar="JOBS",
        help="jobs to run: nightly,weekly or nightly",
    )
    bench.add_argument(
        "--endpoint", action="store_true", help="load the endpoint on the tier's published data instead of the jobs"
    )
    bench.add_argument("--seconds", type=float, default=20.0, help="endpoint load duration")
    bench.add_argument("--connections", type=int, default=32, help="concurrent endpoint clients")
    bench.add_argument("--users", type=int, default=2000, help="distinct users' tokens")
    bench.add_argument(
        "--load-generator",
        choices=["wrk", "python"],
        help="endpoint load generator (default: wrk where it is installed, else an asyncio client)",
    )
    bench.set_defaults(func=cmd_bench)

    worker = _command(
        sub,
        "worker",
        "run a Celery worker for PERSONALIZATION_EXECUTOR=celery",
        "Broker: PERSONALIZATION_CELERY_BROKER; needs the celery extra (pip install -e '.[celery]').",
    )
    worker.add_argument(
        "--concurrency", type=int, default=os.cpu_count() or 1, help="steps at once (default: the CPU count)"
    )
    worker.add_argument("--loglevel", default="INFO", help="log level")
    worker.set_defaults(func=cmd_worker)

    migrate = _command(
        sub,
        "migrate",
        "upgrade the serving database's schema to this code's newest revision",
        "Alembic migrations of the serving tables, the API role, its grants and row-level security. run and serve\n"
        "upgrade on their own; a schema newer than the code is refused (exit code 2), never touched.",
    )
    migrate.add_argument(
        "--status", action="store_true", help="only print the database's revision and this code's (exit 1 when behind)"
    )
    migrate.set_defaults(func=cmd_migrate)

    prepare = _command(
        sub,
        "prepare",
        "parse the dbt project into its manifest when missing or stale",
        "run, bench and worker do it themselves; an image or a plain dagster-webserver needs it once beforehand.",
    )
    prepare.set_defaults(func=cmd_prepare)

    experiment = _command(
        sub,
        "experiment",
        "create, end, list A/B experiments and read their results",
        "create reads a JSON definition (the body of POST /v1/admin/experiments; see the README) from a file\n"
        "or - for standard input. At most one experiment is active at a time.",
    )
    actions = experiment.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="create an experiment from a JSON definition")
    create.add_argument("file", help="JSON file, or - for standard input")
    for action, summary in (("end", "end an active experiment"), ("results", "print the latest analysis")):
        actions.add_parser(action, help=summary).add_argument("name", help="experiment name")
    actions.add_parser("list", help="list every experiment")
    experiment.set_defaults(func=cmd_experiment)

    simulate = _command(
        sub,
        "simulate-responses",
        "append simulated responses to an experiment's served lists to the raw interactions",
        "Each exposed user views, accepts, completes or dismisses served items at the generator's base rates;\n"
        "--lift multiplies a variant's acceptance and completion rates. The next run ingests the events.",
    )
    simulate.add_argument("experiment", help="experiment name")
    simulate.add_argument(
        "--lift", action="append", default=[], type=_lift, metavar="VARIANT=LIFT", help="planted lift (0.3: +30%%)"
    )
    simulate.add_argument("--seed", type=int, default=7, help="random seed")
    simulate.set_defaults(func=cmd_simulate_responses)

    stop = _command(sub, "stop-db", "stop the embedded PostgreSQL that run and serve leave running")
    stop.set_defaults(func=cmd_stop_db)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
