"""``python -m devplatform <command>``: the local platform's commands (see the Makefile)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time


def cmd_start(args) -> None:
    import os

    from devplatform.platform import LocalPlatform

    p = LocalPlatform()
    p.start()
    logins = p.logins()
    print()
    print(f"Airflow UI and REST API: {p.config.api_url}")
    print("Logins (generated on first start, kept in .local/airflow/, never committed):")
    for user, pw in sorted(logins.items()):
        print(f"  {user:24s} {pw}")
    if p.config.celery:
        on_demand = p.on_demand(f"flower-{p.celery_teams()[0]}") if p.celery_teams() else False
        print("Celery: one worker pool per team, each with its own Redis; Flower per team (login team:password)"
              + (", started on demand: make flower TEAM=<team>" if on_demand else "") + ":")
        for d in p.celery_teams():
            rt = p.team_runtime(d)
            print(f"  {d:14s} {rt.flower_url():28s} {d}:{p.config.secrets.flower_passwords[d]}")
    if p.redis_domains():
        print(f"Domain Redis: 127.0.0.1:{p.config.domain_redis_port}, one ACL user per domain "
              f"({', '.join(p.redis_domains())}), passwords in .local/secrets.json")
    if p.kafka_domains():
        print(f"Kafka stand-in (librdkafka mock cluster): {p.config.kafka_bootstrap()}")
    print(f"Mail sink: {p.config.mail_dir} (SMTP on 127.0.0.1:{p.config.smtp_port})")
    if os.environ.get("PLATFORM_OPENLINEAGE") == "file":
        print(f"OpenLineage events: {p.config.lineage_file}")
    else:
        print(f"OpenLineage events: the lineage explorer, {p.config.api_url}/lineage-explorer/api/v1/ (Marquez API)")
    for d, spec in p.standin_specs():
        print(f"Stand-in {d}/{spec['name']}: http://127.0.0.1:{spec['port']}")
    if p.standin_specs():
        print("Stand-in admin routes (/_standin/faults, /_standin/calls): header X-Standin-Admin-Key, "
              "the value of standin_admin_key in .local/secrets.json")


def cmd_stop(args) -> None:
    from devplatform.platform import LocalPlatform

    stopped = LocalPlatform().stop()
    print(f"[platform] stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


def cmd_status(args) -> None:
    from devplatform.platform import LocalPlatform

    p = LocalPlatform()
    states = p.states()
    for name, up in p.status().items():
        # supervisord's state when it is neither running nor stopped: BACKOFF, EXITED, FATAL
        why = states.get(name, "STOPPED")
        if not up and why == "STOPPED" and p.on_demand(name):
            why = f"on demand: make flower TEAM={name.removeprefix('flower-')}"
        print(f"{name:40s} {'running' if up else 'stopped'}{'' if up or why == 'STOPPED' else f' ({why})'}")


def cmd_flower(args) -> None:
    """A team's Flower on demand (``make flower TEAM=<team>``; ``--stop``: ``make flower-stop``)."""
    from devplatform.platform import LocalPlatform

    p = LocalPlatform(quiet=True)
    if not p.supervisor.running():
        sys.exit("flower: the platform is not running (make start)")
    if args.stop:
        p.stop_flower(args.team)
        print(f"flower-{args.team}: stopped")
        return
    url = p.start_flower(args.team)
    print(f"flower-{args.team}: {url} (login {args.team}:{p.config.secrets.flower_passwords[args.team]}); "
          f"make flower-stop TEAM={args.team} stops it (make stop too)")


def cmd_apply_settings(args) -> None:
    from devplatform import settings
    from devplatform.config import PlatformConfig

    cfg = PlatformConfig()
    counts = settings.apply(cfg.domains, cfg.settings_vars())
    print(json.dumps(counts) if args.json else f"applied {counts}")


def cmd_prepare_db(args) -> None:
    """``make start``'s metadata-database step in one process (one Airflow import instead of
    three CLI runs): ``--migrate`` migrates (``airflow db migrate``) and creates the teams
    (``airflow teams sync``); then every domain's settings are applied, team-scoped."""
    from devplatform import settings
    from devplatform.config import PlatformConfig

    cfg = PlatformConfig()
    out: dict = {}
    if args.migrate:
        from airflow.utils.db import upgradedb

        upgradedb()
        out["teams_added"] = settings.sync_teams(cfg.domains)
    out.update(settings.apply(cfg.domains, cfg.settings_vars()))
    print(json.dumps(out))


def cmd_generate_data(args) -> None:
    from devplatform.platform import LocalPlatform

    if not LocalPlatform().generate_data(args.domain, args.generator_args):
        raise SystemExit(f"domain {args.domain!r} declares no generated dataset (local.data in its settings.yaml)")


def cmd_settings_env(args) -> None:
    """Team-scoped AIRFLOW_CONN__/AIRFLOW_VAR__ lines, e.g. for Astro's .env.

    Deploy mode (the default) takes every value from the environment and stops, printing
    nothing on stdout, if any is missing; ``--local`` gives the local platform's values."""
    from devplatform import settings
    from devplatform.paths import domain_names

    if args.local:
        from devplatform.config import PlatformConfig

        cfg = PlatformConfig()
        domains, values = cfg.domains, cfg.settings_vars()
    else:
        domains, values = domain_names(), None
    try:
        env = settings.as_env(domains, values, deploy=not args.local)
    except settings.MissingSettings as e:
        print(f"settings-env: {e}", file=sys.stderr)
        sys.exit(2)
    for k, v in env.items():
        print(f"{k}={shlex.quote(v)}")


def cmd_airflow_env(args) -> None:
    from devplatform.config import PlatformConfig

    for k, v in PlatformConfig().airflow_env().items():
        print(f"export {k}={shlex.quote(v)}")


def cmd_smtp_sink(args) -> None:
    from pathlib import Path

    from devplatform.smtp_sink import MailSink

    sink = MailSink(Path(args.dir), port=args.port).start()
    print(f"SMTP sink on 127.0.0.1:{sink.port}, writing to {args.dir}", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        sink.stop()


def cmd_serve_standin(args) -> None:
    import os

    from devplatform import settings
    from devplatform.config import PlatformConfig
    from devplatform.standin import ADMIN_KEY_ENV, load_factory, serve

    cfg = PlatformConfig()
    spec = next(s for s in settings.load(args.domain, cfg.settings_vars())["standins"] if s["name"] == args.name)
    admin_key = os.environ.pop(ADMIN_KEY_ENV, "")  # from make start's environment, not inherited further
    app = load_factory(spec["app"])(**(spec.get("kwargs") or {}))
    if admin_key:
        app.state.admin_key = admin_key
    serve(app, args.port or int(spec["port"]))


def cmd_kafka_standin(args) -> None:
    from pathlib import Path

    from devplatform.kafka_standin import serve

    serve(Path(args.bootstrap_file))


def cmd_dockerfile(args) -> None:
    from devplatform.dockerfile import write
    from devplatform.paths import domain_names

    changed = write()
    print(f"Dockerfile: team lines {'rewritten' if changed else 'already'} for {', '.join(domain_names())}")


def cmd_parse(args) -> None:
    from devplatform.parse import parse_all_bundles

    report = parse_all_bundles()
    bad = False
    for domain, r in report.items():
        print(f"{domain}: {len(r['dags'])} DAG(s) {sorted(r['dags'])}; import errors: {len(r['import_errors'])}")
        for f, e in r["import_errors"].items():
            bad = True
            print(f"  {f}:\n{e}")
    sys.exit(1 if bad else 0)


def cmd_lineage(args) -> None:
    """The lineage explorer's own command (``load FILE`` | ``purge``) with the local
    platform's settings: its ``lineage`` database and its metadata database (job owners)."""
    import os

    from devplatform.config import PlatformConfig, lineage_explorer_config

    cfg = PlatformConfig()
    os.environ.update(cfg.airflow_env())
    os.environ.update(cfg.lineage_explorer_env())
    lineage_explorer_config()  # plugins/ on sys.path
    import psycopg2

    from lineage_explorer.__main__ import main as lineage_main

    try:
        sys.exit(lineage_main(args.args))
    except psycopg2.OperationalError as e:
        print(f"lineage: the platform's PostgreSQL (127.0.0.1:{cfg.pg_port}) is not reachable; "
              f"is it running (make start)? {str(e).strip().splitlines()[0]}", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m devplatform")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("start").set_defaults(fn=cmd_start)
    sub.add_parser("stop").set_defaults(fn=cmd_stop)
    sub.add_parser("status").set_defaults(fn=cmd_status)
    sub.add_parser("parse").set_defaults(fn=cmd_parse)
    s = sub.add_parser("flower", help="start (or --stop) a team's Flower on the running platform")
    s.add_argument("team")
    s.add_argument("--stop", action="store_true")
    s.set_defaults(fn=cmd_flower)
    sub.add_parser("dockerfile", help="rewrite the Dockerfile's team lines (executors, logins, bundles) "
                                      "from domains/").set_defaults(fn=cmd_dockerfile)
    sub.add_parser("airflow-env").set_defaults(fn=cmd_airflow_env)
    s = sub.add_parser("apply-settings")
    s.add_argument("--json", action="store_true")
    s.set_defaults(fn=cmd_apply_settings)
    s = sub.add_parser("prepare-db")
    s.add_argument("--migrate", action="store_true")
    s.set_defaults(fn=cmd_prepare_db)
    s = sub.add_parser("settings-env")
    mode = s.add_mutually_exclusive_group()
    mode.add_argument("--deploy", dest="local", action="store_false",
                      help="values from the environment only; stop on any missing name (default)")
    mode.add_argument("--local", dest="local", action="store_true",
                      help="the local platform's values and the files' development defaults")
    s.set_defaults(fn=cmd_settings_env, local=False)
    s = sub.add_parser("generate-data", help="load a domain's generated dataset into its local database")
    s.add_argument("domain")
    s.add_argument("generator_args", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_generate_data)
    s = sub.add_parser("smtp-sink")
    s.add_argument("--port", type=int, default=1025)
    s.add_argument("--dir", required=True)
    s.set_defaults(fn=cmd_smtp_sink)
    s = sub.add_parser("serve-standin")
    s.add_argument("domain")
    s.add_argument("name")
    s.add_argument("--port", type=int, help="instead of the settings' port (benchmarks on a shared machine)")
    s.set_defaults(fn=cmd_serve_standin)
    s = sub.add_parser("lineage", help="the lineage explorer's commands: load FILE | purge")
    s.add_argument("args", nargs=argparse.REMAINDER)
    s.set_defaults(fn=cmd_lineage)
    s = sub.add_parser("kafka-standin")
    s.add_argument("--bootstrap-file", required=True)
    s.set_defaults(fn=cmd_kafka_standin)
    args = ap.parse_args(argv)
    args.fn(args)


if __name__ == "__main__":
    main()
