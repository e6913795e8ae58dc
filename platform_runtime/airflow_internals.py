"""Team code in the dag-processor runs as the team: the one module built on Airflow internals.

Airflow 3.3's dag-processor parses each DAG file (and runs DAG callbacks) in a bare
``os.fork()`` of itself (``WatchedSubprocess.start``): the child is the platform's user, holds the
dag-processor's whole memory and environment (metadata DB URL, Fernet key), its open database
sockets, and may ask the dag-processor's in-process Execution API (auth checks overridden) for
any team's variables, XComs and task states. Airflow has no public extension point for that
child (upstream lists "Unix user impersonation in DFP/Triggerer children" as future work), so
this module subclasses the private ``DagFileProcessorProcess``:

- **A zygote per team.** On first use for a team the dag-processor starts
  ``python -m platform_runtime.airflow_internals zygote`` as the team's OS user
  (``platform_runtime.team_env``), with an environment built from scratch and a fresh
  interpreter (``exec``: nothing of the dag-processor's memory), which imports Airflow once.
- **A relay per file.** Airflow still forks its per-file child, but that child runs no team
  code: it hands its three supervisor sockets (requests, stdout, stderr) to the team's zygote
  (``SCM_RIGHTS`` over a ``SOCK_SEQPACKET`` pair) and waits. The zygote forks a grandchild,
  which parses the file with those sockets, asks the supervisor for a log channel
  (``ResendLoggingFD``, Airflow's own mechanism for exec'd children) and exits; its exit code
  goes back to the relay, which exits with it. If the relay is killed (the parse timeout),
  the zygote kills the grandchild.
- **The team's trigger runner, forked by the zygote.** A team triggerer's fork hands its
  supervisor sockets to the team's zygote over an abstract Unix socket (each end checks the
  other's uid with ``SO_PEERCRED``); the zygote forks the runner, which shares the zygote's
  imported Airflow (``gc.freeze()`` before each fork keeps collections off the shared pages),
  and the fork becomes a bare relay (signals to the runner, its exit code back).
- **The team triggerers forked from one parent.** ``python -m platform_runtime.triggerer_fork
  parent`` imports Airflow and the triggerer's modules once and forks each team's triggerer
  (:func:`triggerer_parent`, :func:`forked_triggerer`) for that team's supervisord program, a
  thin relay (``platform_runtime/triggerer_fork.py``): the triggerer runs the program's argv in
  its environment, folder, umask and CPU group; the relay forwards signals and gets its exit
  code; the relay gone, the triggerer's process group is killed.
- **Requests answered for the team only.** ``TeamDagFileProcessorProcess._handle_request``
  answers a child's variable, connection, XCom and task-state requests only for its own
  team's objects (global variables and connections stay readable, as on the Execution API);
  anything else gets the answer a missing object gets. Variable keys are filtered.

Installed by ``python -m platform_runtime.airflow_internals dag-processor [args]``, which runs
Airflow's ``dag-processor`` command with this class in place of Airflow's.
``tests/test_airflow_internals.py`` pins every private member used here for the installed
Airflow (3.3.2) and fails loudly on an upgrade; ``tests/test_public_api.py`` allows private
members in this module and nowhere else.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import os
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Annotated, ClassVar

import attrs
from airflow.dag_processing.processor import DagFileProcessorProcess, ToDagProcessor, ToManager
from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor, messages
from airflow.sdk.exceptions import ErrorType
from airflow.sdk.execution_time.comms import (
    ErrorResponse,
    GetVariableKeys,
    ResendLoggingFD,
    SentFDs,
    VariableKeysResult,
)
from pydantic import Field, TypeAdapter

from platform_runtime.team_env import as_user_argv, can_switch_users, team_env, team_os_user, team_python

# Every private member of Airflow this module relies on (tests/test_airflow_internals.py pins them).
PRIVATE_MEMBERS = (
    "airflow.jobs.triggerer_job_runner.TriggerRunnerSupervisor",  # the class a triggerer starts its runner with
    "airflow.jobs.triggerer_job_runner.TriggerRunnerSupervisor._handle_request",
    "airflow.jobs.triggerer_job_runner.TriggerRunnerSupervisor._process_log_messages_from_subprocess",
    "airflow.sdk.execution_time.supervisor.WatchedSubprocess._on_socket_closed",
    "airflow.dag_processing.processor.DagFileProcessorProcess",  # the class the manager starts per file
    "airflow.dag_processing.processor.DagFileProcessorProcess._handle_request",
    "airflow.dag_processing.processor._parse_file",
    "airflow.dag_processing.manager.DagFileProcessorProcess",  # the name the manager calls .start on
    "airflow.dag_processing.manager.DagFileProcessorManager._create_process",  # ... in this method
    "airflow.dag_processing.processor._parse_file_entrypoint",  # what parse_one_file replays
    "airflow.sdk.execution_time.supervisor._fork_main",  # runs the relay after fds 0-2 are set
    "airflow.sdk.execution_time.comms.CommsDecoder._get_response",
    "airflow.sdk.execution_time.supervisor.ActivitySubprocess._send_new_log_fd",
    "airflow.sdk.execution_time.supervisor._reset_signals",
    # FairDagFileProcessorManager: the class ``airflow dag-processor`` builds, and what it overrides
    "airflow.cli.commands.dag_processor_command.DagFileProcessorManager",
    "airflow.dag_processing.manager.DagFileProcessorManager._start_new_processes",
    "airflow.dag_processing.manager.DagFileProcessorManager._file_queue",
    "airflow.dag_processing.manager.DagFileProcessorManager._processors",
    "airflow.dag_processing.manager.DagFileProcessorManager._parallelism",
)

TriggerStateChanges = messages.TriggerStateChanges
ToManagerOrLogs = Annotated[ToManager | ResendLoggingFD, Field(discriminator="type")]
ToChild = Annotated[ToDagProcessor | SentFDs, Field(discriminator="type")]

# -- the dag-processor's side -------------------------------------------------------------
@attrs.define
class Zygote:
    team: str
    process: subprocess.Popen
    channel: socket.socket  # SOCK_SEQPACKET; the relay sends each request's sockets over it

    def alive(self) -> bool:
        return self.process.poll() is None


_ZYGOTES: dict[str, Zygote] = {}


def team_home(team: str) -> Path:
    """A folder of the team's own for its zygote (HOME, AIRFLOW_HOME: Airflow writes logs there):
    ``[platform] team_home``, a pattern with ``{team}`` whose parent every team user can reach
    (default ``<AIRFLOW_HOME>/team-parsing/{team}``)."""
    from airflow.configuration import AIRFLOW_HOME, conf

    pattern = conf.get("platform", "team_home", fallback="") or str(Path(AIRFLOW_HOME) / "team-parsing" / "{team}")
    return Path(pattern.format(team=team))


def start_zygote(team: str) -> Zygote:
    user = team_os_user(team) if can_switch_users() else None
    home = team_home(team)
    prepare_team_home(team, home)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # the uid the team's triggerer runs as (the platform's, as this process): the one peer whose
    # trigger-runner requests the zygote takes (:func:`take_runner_request`)
    argv = [team_python(), "-m", "platform_runtime.airflow_internals", "zygote", str(theirs.fileno()), str(os.geteuid())]
    # The zygote writes its own output into its home (``zygote.log``, :func:`zygote`), a folder
    # the platform's user may not enter; until then (an interpreter that cannot start) it goes
    # to the dag-processor's own output.
    proc = subprocess.Popen(
        as_user_argv(user, argv) if user else argv,
        env=team_env(team, dict(os.environ), home), pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
    )
    theirs.close()
    how = f"as OS user {user.name}" if user else "as this process's user (it may not switch users)"
    print(f"[platform_runtime] team {team}: DAG files are parsed by zygote pid {proc.pid} {how}, "
          f"environment from scratch", file=sys.stderr, flush=True)
    return Zygote(team, proc, ours)


def zygote_for(team: str) -> Zygote:
    z = _ZYGOTES.get(team)
    if z is None or not z.alive():
        if z is not None:
            z.channel.close()
        z = _ZYGOTES[team] = start_zygote(team)
    return z


def relay(channel_fd: int, path: str) -> None:
    """The per-file child's target (in Airflow's fork, after fds 0-2 became the supervisor's
    sockets): hand them to the team's zygote with the file's path, wait for the parse to end,
    exit with its code."""
    mine, theirs = socket.socketpair()
    with socket.socket(fileno=os.dup(channel_fd)) as channel:
        socket.send_fds(channel, [path.encode()], [0, 1, 2, theirs.fileno()])
    theirs.close()
    answer = mine.recv(16)
    raise SystemExit(int(answer) if answer.strip(b"-").isdigit() else 125)


def refuse_to_parse(team: str, why: str) -> None:
    raise SystemExit(f"platform_runtime: team {team}'s DAG files are not parsed: its zygote could not start ({why})")


def bundle_team(bundle_name: str) -> str | None:
    from platform_runtime.tenant_guard import configured_bundles, team_of_bundle

    return team_of_bundle(bundle_name, configured_bundles())


@attrs.define(kw_only=True)
class TeamDagFileProcessorProcess(DagFileProcessorProcess):
    """Airflow's per-file parse process, with the file parsed in the team's zygote."""

    team: str | None = None
    decoder: ClassVar[TypeAdapter] = TypeAdapter(ToManagerOrLogs)

    @classmethod
    def start(cls, *, bundle_name: str, **kwargs):  # type: ignore[override]
        team = bundle_team(bundle_name)
        if team is not None:
            try:
                kwargs["target"] = functools.partial(relay, zygote_for(team).channel.fileno(), os.fspath(kwargs["path"]))
            except Exception as e:  # fail closed for this team only: its files are not parsed as the platform
                kwargs["logger"].error("Cannot start the team's parse zygote; its files are not parsed",
                                       team=team, error=f"{type(e).__name__}: {e}")
                kwargs["target"] = functools.partial(refuse_to_parse, team, f"{type(e).__name__}: {e}")
        return super().start(bundle_name=bundle_name, team=team, **kwargs)

    def _handle_request(self, msg, log, req_id: int) -> None:
        if isinstance(msg, ResendLoggingFD):  # the zygote's grandchild asks for its log channel
            from airflow.sdk.execution_time.supervisor import ActivitySubprocess

            ActivitySubprocess._send_new_log_fd(self, req_id)
            return
        if self.team is not None and answered_for_team(self, msg, log, req_id, self.team):
            return
        super()._handle_request(msg, log, req_id)


# -- the team check, for every child's request (parse and trigger) --------------------------
VARIABLE_REQUESTS = ("GetVariable", "PutVariable", "DeleteVariable")
NOT_FOUND = ErrorResponse(error=ErrorType.GENERIC_ERROR, detail={"status_code": 404, "message": "not found"})


def answered_for_team(proc, msg, log, req_id: int, team: str) -> bool:
    """Answer ``msg`` here if the team check decides it (a refusal, or variable keys filtered to
    the team's); False: the supervisor answers it as usual."""
    try:
        refusal = team_refusal(msg, team)
    except Exception:  # fail closed: an unanswerable ownership question is a refusal
        log.exception("Could not check a child's request against its team; refused", team=team)
        refusal = NOT_FOUND
    if refusal is not None:
        log.warning("Refused a team child's request for another team's object", team=team, request=type(msg).__name__)
        proc.send_msg(None, request_id=req_id, error=refusal)
        return True
    if isinstance(msg, GetVariableKeys):
        proc.send_msg(team_variable_keys(msg, team), request_id=req_id, error=None)
        return True
    return False


def team_refusal(msg, team: str) -> ErrorResponse | None:
    """None if a child of ``team`` may have ``msg`` answered, else the answer a missing object gets.

    Judged by what the request names: a variable key (the row's team; a global one is readable,
    not writable, and a child cannot create one: the in-process API would make it global), a
    connection id (the row's team or global), a DAG (``dag_id``: the DAG's team), a task
    instance (``ti_id``: its DAG's team), an asset (``name``/``uri`` of an asset request:
    ``platform_runtime.ownership``)."""
    from airflow.utils.session import create_session

    from platform_runtime import ownership

    kind = type(msg).__name__
    with create_session() as session:
        if kind in VARIABLE_REQUESTS:
            exists, owner = ownership.variable_team(session, msg.key)
            if (kind == "GetVariable" and exists and owner not in (None, team)) or (
                    kind != "GetVariable" and (not exists or owner != team)):
                return ErrorResponse(error=ErrorType.VARIABLE_NOT_FOUND, detail={"key": msg.key})
        if kind == "GetConnection" and connection_team(session, msg.conn_id) not in (None, team):
            return ErrorResponse(error=ErrorType.CONNECTION_NOT_FOUND, detail={"conn_id": msg.conn_id})
        if isinstance(getattr(msg, "dag_id", None), str) and ownership.dag_team(session, msg.dag_id) != team:
            return ErrorResponse(error=ErrorType.GENERIC_ERROR,
                                 detail={"status_code": 404, "message": f"DAG {msg.dag_id!r} not found"})
        if getattr(msg, "ti_id", None) is not None and ownership.ti_team(session, str(msg.ti_id)) != team:
            return NOT_FOUND
        if "Asset" in kind:
            name, uri = getattr(msg, "name", None), getattr(msg, "uri", None)
            asset_id = ownership.asset_id_of(session, name=name) if name else ownership.asset_id_of(session, uri=uri)
            if not ownership.may_use_asset(session, team, asset_id):
                return ErrorResponse(error=ErrorType.ASSET_NOT_FOUND, detail={"name": name, "uri": uri})
    return None


def team_variable_keys(msg: GetVariableKeys, team: str) -> VariableKeysResult:
    from airflow.models.variable import Variable
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        keys = list(session.scalars(select(Variable.key).where(Variable.team_name == team).order_by(Variable.key)))
    if msg.prefix:
        keys = [k for k in keys if k.startswith(msg.prefix)]
    return VariableKeysResult(keys=keys[msg.offset:msg.offset + msg.limit], total_entries=len(keys))


def connection_team(session, conn_id: str) -> str | None:
    from airflow.models.connection import Connection
    from sqlalchemy import select

    return session.scalar(select(Connection.team_name).where(Connection.conn_id == conn_id))


def install() -> None:
    """Make the dag-processor start :class:`TeamDagFileProcessorProcess` for each file, and a
    team's triggerer :class:`TeamTriggerRunnerSupervisor`."""
    import airflow.dag_processing.manager as manager
    import airflow.jobs.triggerer_job_runner as triggerer

    manager.DagFileProcessorProcess = TeamDagFileProcessorProcess
    triggerer.TriggerRunnerSupervisor = TeamTriggerRunnerSupervisor
    install_fair_manager()


# -- the dag-processor manager's side: a bundle's share of the parse slots ------------------
def install_fair_manager() -> None:
    """Make ``airflow dag-processor`` run :class:`FairDagFileProcessorManager`."""
    import airflow.cli.commands.dag_processor_command as command

    command.DagFileProcessorManager = fair_manager_class()


def bundle_share(parallelism: int, bundles: int) -> int:
    """The parse slots one bundle may hold at once: its share of ``[dag_processor]
    parsing_processes`` (at least one)."""
    return max(1, parallelism // max(1, bundles))


def pick_fair(queue: list, running: list, parallelism: int, share: int) -> list:
    """The files of ``queue`` (in its order) to start now: free slots filled, no bundle above
    ``share`` files parsing at once (``running`` counted); a file already parsing is picked too
    (Airflow drops it from the queue, as before)."""
    held: dict[str, int] = {}
    for f in running:
        held[f.bundle_name] = held.get(f.bundle_name, 0) + 1
    free, picked = parallelism - len(running), []
    running_set = set(running)
    for f in queue:
        if f in running_set:
            picked.append(f)
            continue
        if free <= 0:
            break
        if held.get(f.bundle_name, 0) >= share:
            continue
        held[f.bundle_name] = held.get(f.bundle_name, 0) + 1
        free -= 1
        picked.append(f)
    return picked


def dir_stamps(root: Path) -> dict[str, int]:
    """Every folder under ``root`` with its mtime: a file added, removed or renamed in a folder
    changes that folder's mtime."""
    stamps = {}
    for path, _dirs, _files in os.walk(root):
        try:
            stamps[path] = os.stat(path).st_mtime_ns
        except OSError:  # removed meanwhile: the next look sees it gone
            continue
    return stamps


def fair_share_enabled() -> bool:
    from airflow.configuration import conf

    from platform_runtime.team_limits import enabled

    return enabled() and conf.getboolean("platform", "bundle_parse_share", fallback=True)


@functools.cache
def fair_manager_class() -> type:
    """:class:`FairDagFileProcessorManager`, defined on first use: only the dag-processor
    imports Airflow's manager module (not the zygotes and trigger runners, which import this one)."""
    from airflow.dag_processing.manager import DagFileProcessorManager

    @attrs.define(kw_only=True)
    class FairDagFileProcessorManager(DagFileProcessorManager):
        """Airflow's dag-processor manager, with two changes for a platform of many teams' bundles:

        - **A bundle's share of the parse slots.** Airflow starts the files at the front of its one
          queue in every free slot (``_start_new_processes``), so one team's slow files (each up to
          its parse-time limit) can hold every slot while another team's new file waits. Here a
          bundle holds at most :func:`bundle_share` of ``[dag_processor] parsing_processes`` at
          once; a file of a bundle at its share keeps its place in the queue, and the next file of
          another bundle takes the slot. With ``parsing_processes`` = the number of bundles (the
          platform's setting), every team always has a slot of its own. On with the per-team limits
          (``[platform] team_limits``) unless ``[platform] bundle_parse_share = False``.
        - **A new file noticed at once.** Every turn of the loop (about once a second) the manager
          compares its bundles' folder mtimes (``os.stat``, no database, no file read) and asks
          Airflow to refresh a bundle whose folders changed (``request_bundle_refresh``), instead of
          waiting for its ``refresh_interval``.
        """

        bundle_dirs: dict[str, Path] = attrs.field(factory=dict, init=False)  # the bundles watched, name -> root
        folder_stamps: dict[str, dict[str, int]] = attrs.field(factory=dict, init=False)
        share_enabled: bool = attrs.field(factory=fair_share_enabled, init=False)

        def get_all_bundles(self):
            bundles = super().get_all_bundles()
            wanted = self.bundle_names_to_parse
            self.bundle_dirs = {b.name: Path(b.path) for b in bundles if not wanted or b.name in wanted}
            self.log.info("A bundle's share of the parse slots: %s", self.share() or "off (Airflow's one queue)")
            return bundles

        def claim_priority_files(self):
            files = super().claim_priority_files()
            if changed := self.changed_bundles():
                self.log.info("Bundle folders changed; refreshing them now: %s", ", ".join(sorted(changed)))
                self.request_bundle_refresh(changed)
            return files

        def changed_bundles(self) -> set[str]:
            """Bundles whose folders changed since the last look (none on the first look)."""
            changed = set()
            for name, root in self.bundle_dirs.items():
                stamps = dir_stamps(root)
                if name in self.folder_stamps and stamps != self.folder_stamps[name]:
                    changed.add(name)
                self.folder_stamps[name] = stamps
            return changed

        def share(self) -> int | None:
            """The parse slots one bundle may hold at once (None: no share, Airflow's one queue)."""
            return bundle_share(self._parallelism, len(self.bundle_dirs)) if self.share_enabled else None

        def queued(self) -> list:
            return list(self._file_queue)

        def parsing(self) -> list:
            return list(self._processors)

        def _start_new_processes(self):
            self.start_files()

        def start_files(self) -> None:
            """Start parsing files from the queue's front in the free slots, each bundle up to its share."""
            share = self.share()
            if share is None or not self._file_queue:
                return super()._start_new_processes()
            queue = self.queued()
            picked = pick_fair(queue, self.parsing(), self._parallelism, share)
            # Airflow's own loop starts them (its stats, its duplicate check), over the picked files only
            self._file_queue = OrderedDict.fromkeys(picked)
            try:
                super()._start_new_processes()
            finally:
                left = set(self._file_queue)
                taken = {f for f in picked if f not in left}
                self._file_queue = OrderedDict.fromkeys(f for f in queue if f not in taken)

    return FairDagFileProcessorManager


# -- the triggerer's side ------------------------------------------------------------------
# Set in the triggerer before it forks its trigger runner, read in that fork.
_TRIGGER_CHILD: dict[str, object] = {}


@attrs.define(kw_only=True)
class TeamTriggerRunnerSupervisor(TriggerRunnerSupervisor):
    """A team's triggerer: its trigger runner runs as the team's OS user, with nothing of the triggerer.

    Airflow forks the runner (``run_in_process``); that fork hands the supervisor's sockets (fds
    0-2) and a log channel of our own (fd 3, read with Airflow's per-trigger log routing) to the
    team's parse zygote, which forks the runner (:func:`relay_trigger_runner`,
    :func:`forked_trigger_runner`), and execs a bare relay. With no zygote of the team to take
    it, the fork execs ``python -m platform_runtime.airflow_internals trigger-runner`` as the
    team's user with an environment from scratch, keeping the same four fds. Requests are answered for the team
    only (:func:`team_refusal`), and state changes only for triggers this triggerer runs: a
    runner cannot fire or fail another team's trigger."""

    @classmethod
    def start(cls, *, team_name: str | None = None, **kwargs):  # type: ignore[override]
        logs = None
        if team_name is not None:
            home = team_home(team_name)
            prepare_team_home(team_name, home)
            logs, theirs = socket.socketpair()
            _TRIGGER_CHILD.update(team=team_name, log_fd=theirs.fileno(), home=str(home))
        proc = super().start(team_name=team_name, **kwargs)
        if logs is not None:
            theirs.close()
            from airflow.sdk.execution_time.supervisor import make_buffered_socket_reader

            proc.selector.register(logs, selectors.EVENT_READ, make_buffered_socket_reader(
                proc._process_log_messages_from_subprocess(), on_close=proc._on_socket_closed))
        return proc

    @classmethod
    def run_in_process(cls):
        if not _TRIGGER_CHILD:
            return super().run_in_process()
        team, log_fd, home = str(_TRIGGER_CHILD["team"]), int(_TRIGGER_CHILD["log_fd"]), Path(str(_TRIGGER_CHILD["home"]))
        relay_trigger_runner(team, log_fd, home)  # returns only when no zygote of the team took the request
        exec_trigger_runner(team, log_fd, home)

    def _handle_request(self, msg, log, req_id: int) -> None:
        if self.team_name is not None:
            if isinstance(msg, TriggerStateChanges):
                msg = own_trigger_changes(msg, self.running_triggers | self.cancelling_triggers, log)
            elif answered_for_team(self, msg, log, req_id, self.team_name):
                return
        super()._handle_request(msg, log, req_id)


def own_trigger_changes(msg, own: set[int], log):
    """The runner's report with only the triggers this triggerer runs."""
    events = [e for e in msg.events or () if e.trigger_id in own]
    failures = [f for f in msg.failures or () if f[0] in own]
    finished = [i for i in msg.finished or () if i in own]
    dropped = len(msg.events or ()) - len(events) + len(msg.failures or ()) - len(failures)
    if dropped:
        log.warning("Dropped trigger events or failures for triggers this team's triggerer does not run",
                    dropped=dropped)
    return msg.model_copy(update={"events": events if msg.events is not None else None,
                                  "failures": failures if msg.failures is not None else None,
                                  "finished": finished if msg.finished is not None else None})


def prepare_team_home(team: str, home: Path) -> None:
    """The team's home for its zygote and trigger runner: its own, mode 0700. A platform that
    runs as root creates it here; one that runs as its own OS user and switches users (holding
    only CAP_SETUID and CAP_SETGID: no CAP_CHOWN, and no way into the team's folders) finds it
    made by whoever started it (``make start``, the image)."""
    user = team_os_user(team) if can_switch_users() else None
    if user and os.geteuid() != 0:
        return
    home.mkdir(parents=True, exist_ok=True)
    if home.parent.stat().st_uid == os.geteuid():  # a folder of ours: team users pass through only
        os.chmod(home.parent, 0o711)
    os.chmod(home, 0o700)
    if user:
        os.chown(home, user.uid, user.gid)


# -- the trigger runner forked from the team's parse zygote ----------------------------------
# A trigger runner exec'd afresh imports Airflow again: ~100 MiB private per team, idle. The team's
# parse zygote (same OS user, environment from the same allow-list, Airflow already imported) forks
# it instead, sharing those pages; the triggerer's own child becomes a relay: it hands its
# supervisor sockets to the zygote, forwards SIGINT/SIGTERM and exits with the runner's code.
RUNNER_REQUEST = b"trigger-runner"
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM)
PR_SET_PDEATHSIG = 1


def runner_address(home: Path | str) -> str:
    """The abstract Unix socket (no file, nothing to clean up) on which the team's zygote takes
    trigger-runner requests: named after the team's home, so one per team and platform."""
    return "\0platform-trigger-runner-" + hashlib.sha256(os.fsencode(os.fspath(home))).hexdigest()[:32]


def peer_uid(conn: socket.socket) -> int:
    """The uid of the process at the other end of a Unix socket (``SO_PEERCRED``, set by the kernel)."""
    _pid, uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


# The relay, once the zygote took the request: a bare interpreter (no site, ~4 MiB PSS), not the
# triggerer's fork itself, whose pages would turn private one by one as the triggerer writes its own
# (about 24 MiB a minute after start, measured). fd ``argv[1]``: the connection to the zygote.
RELAY_SOURCE = """
import os, signal, socket, sys
conn = socket.socket(fileno=int(sys.argv[1]))
def forward(signum, _frame):
    try:
        conn.send(b"sig:%d" % signum)
    except OSError:
        pass
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, forward)
answer = conn.recv(16)
code = int(answer) if answer.strip(b"-").isdigit() else 125
if code - 128 in (signal.SIGINT, signal.SIGTERM):
    signal.signal(code - 128, signal.SIG_DFL)
    os.kill(os.getpid(), code - 128)
os._exit(code)
"""
RELAY_MARK = "trigger-runner-relay"


def relay_trigger_runner(team: str, log_fd: int, home: Path) -> None:
    """In the triggerer's fork (fds 0-2: the supervisor's sockets): have the team's zygote fork the
    trigger runner, then become its relay (:data:`RELAY_SOURCE`: signals there, its exit code
    back). Returns (the caller execs a runner instead) when no zygote listens, the listener is
    not the team's user, or it did not start a runner."""
    user = team_os_user(team) if can_switch_users() else None
    expected = user.uid if user else os.geteuid()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        conn.settimeout(10)
        conn.connect(runner_address(home))
        if peer_uid(conn) != expected:  # whoever holds the name is not the team: hand it nothing
            raise PermissionError(f"the runner address is held by uid {peer_uid(conn)}, not {expected}")
        socket.send_fds(conn, [RUNNER_REQUEST], [0, 1, 2, log_fd])
        started = conn.recv(16)
        if not started.startswith(b"pid:"):
            raise ConnectionError(f"the zygote did not start a runner ({started!r})")
    except OSError as e:
        conn.close()
        print(f"platform_runtime: trigger runner exec'd, not forked from the parse zygote ({type(e).__name__}: {e})",
              file=sys.stderr, flush=True)
        return
    conn.settimeout(None)
    fd = conn.detach()
    os.set_inheritable(fd, True)
    for other in map(int, os.listdir("/proc/self/fd")):  # nothing of the triggerer survives the exec
        if other > 2 and other != fd:
            with_suppressed(os.close, other)
    os.execve(sys.executable, [sys.executable, "-I", "-S", "-c", RELAY_SOURCE, str(fd), RELAY_MARK], {})


def listen_for_runners(home: str) -> socket.socket | None:
    """The zygote's listener for trigger-runner requests, or None while another process (a
    previous zygote still serving its runners) holds the address."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        listener.bind(runner_address(home))
        listener.listen(4)
    except OSError:
        listener.close()
        return None
    return listener


def take_fd_request(listener: socket.socket, allowed, check, size: int, what: str):
    """Accept one request carrying four fds: ``(conn, check(msg), fds)``, or None when refused:
    ``allowed(conn)`` false (the peer's credentials, ``SO_PEERCRED``), or ``check(msg)`` raising
    ``ConnectionError`` (not a request of this kind). A refused request's fds and connection are
    closed. One way for the zygote's runner requests and the triggerer parent's."""
    try:
        conn, _ = listener.accept()
    except OSError:
        return None
    fds: list[int] = []
    try:
        conn.settimeout(5)
        if not allowed(conn):
            raise PermissionError(f"the peer may not ask for a {what}")
        msg, fds, _flags, _addr = socket.recv_fds(conn, size, 4)
        if len(fds) != 4:
            raise ConnectionError(f"not a {what} request")
        value = check(msg)
        conn.settimeout(None)
        return conn, value, fds
    except OSError as e:
        print(f"[platform_runtime] {what} request refused ({type(e).__name__}: {e})", file=sys.stderr, flush=True)
        for fd in fds:
            with_suppressed(os.close, fd)
        conn.close()
        return None


def take_runner_request(listener: socket.socket, platform_uid: int) -> tuple[socket.socket, list[int]] | None:
    """A request from the team's triggerer (its connection and the four sockets it sent), or None:
    refused unless the peer runs as the platform's uid and sends exactly a runner request."""
    def check(msg: bytes) -> bytes:
        if msg != RUNNER_REQUEST:
            raise ConnectionError("not a trigger-runner request")
        return msg

    taken = take_fd_request(listener, lambda conn: peer_uid(conn) == platform_uid, check, 64, "trigger-runner")
    return None if taken is None else (taken[0], taken[2])


def exit_code_of(body) -> int:
    """Run a forked child's ``body`` (the child then ends with ``os._exit``): 0, a ``SystemExit``'s
    code, or 1 with the traceback printed for any other exception; stdout and stderr flushed."""
    try:
        body()
        return 0
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        return 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with_suppressed(stream.flush)


def forked_trigger_runner(fds: list[int], keep_alive: tuple) -> None:
    """In the zygote's fork: the supervisor's sockets as fds 0-2 and the log channel as 3 (what
    :func:`exec_trigger_runner` gives an exec'd runner), then the trigger runner; never returns."""

    def body() -> None:
        for obj in keep_alive:
            if obj is not None:
                with_suppressed(obj.close)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 3:
                with_suppressed(os.close, fd)
        import ctypes

        # the zygote gone (killed with the dag-processor), the runner goes too: the relay sees its
        # connection closed and the triggerer starts another runner
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:
            os._exit(1)
        import setproctitle

        setproctitle.setproctitle(f"{sys.executable} -m platform_runtime.airflow_internals trigger-runner --forked")
        gc.enable()
        trigger_runner()

    os._exit(exit_code_of(body))


def exec_trigger_runner(team: str, log_fd: int, home: Path) -> None:
    """In the triggerer's fork: become the team and exec a fresh trigger runner."""
    user = team_os_user(team) if can_switch_users() else None
    env = team_env(team, dict(os.environ), home)
    os.dup2(log_fd, 3)
    for fd in map(int, os.listdir("/proc/self/fd")):  # nothing else of the triggerer survives the exec
        if fd > 3:
            with_suppressed(os.close, fd)
    python = team_python()
    argv = [python, "-m", "platform_runtime.airflow_internals", "trigger-runner"]
    if user:
        argv = as_user_argv(user, argv)
    os.execve(argv[0], argv, env)


def trigger_runner() -> None:
    """The exec'd trigger runner: Airflow's ``TriggerRunner`` with the fork's set-up replayed."""
    from airflow.sdk.execution_time.supervisor import _reset_signals
    from airflow.sdk.log import configure_logging

    _reset_signals()
    configure_logging(json_output=True, output=os.fdopen(3, "wb", buffering=0), sending_to_supervisor=True)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    TriggerRunner().run()


# -- the zygote (a fresh interpreter, as the team's OS user) ------------------------------
def zygote(channel_fd: int, platform_uid: int | None = None) -> None:
    """Parse the team's files in forks (requests from the dag-processor on ``channel_fd``) and,
    when ``platform_uid`` is given, fork the team's trigger runner for its triggerer (requests on
    :func:`runner_address`, taken from that uid only). Ends when the dag-processor is gone and no
    runner it forked is left."""
    nice = os.environ.get("AIRFLOW__PLATFORM__TEAM_AUTOGROUP_NICE")
    if nice:  # the team's parses weigh one CPU share (platform_runtime.autogroup), not the dag-processor's
        from platform_runtime.autogroup import new_group

        new_group(int(nice))
    if cgroup := os.environ.get("AIRFLOW__PLATFORM__TEAM_CPU_CGROUP"):
        # the team's CPU limit (``limits.cpu_cores``): its parses count against the team's one
        # cgroup, with its worker and triggerer; the platform let the team's user move itself in
        from platform_runtime.autogroup import join_cgroup

        try:
            join_cgroup(cgroup.format(team=os.environ["_PLATFORM_TEAM"]))
        except OSError as e:  # parsed all the same, in its autogroup only: said in the dag-processor's log
            print(f"[platform_runtime] zygote not in its team's cgroup ({e})", file=sys.stderr, flush=True)
    home = os.environ["HOME"]
    os.chdir(home)
    log = os.open(os.path.join(home, "zygote.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for fd in (1, 2):
        os.dup2(log, fd)
    os.close(log)
    import airflow.dag_processing.processor  # noqa: F401  (imported once, shared by every fork)
    import airflow.sdk  # noqa: F401
    from airflow.sdk.execution_time import task_runner  # noqa: F401

    channel: socket.socket | None = socket.socket(fileno=channel_fd)
    sel = selectors.DefaultSelector()
    sel.register(channel, selectors.EVENT_READ, None)
    listener: socket.socket | None = None
    waiting: dict[int, socket.socket] = {}
    learning: dict[int, int] = {}  # pid -> read end of the pipe its installed modules come back on
    runners: set[int] = set()
    pending: list[str] = []  # installed modules parses needed, to import here
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while channel is not None or runners:
        if channel is not None and listener is None and platform_uid is not None:
            listener = listen_for_runners(home)
            if listener is not None:
                sel.register(listener, selectors.EVENT_READ, "runner")
        for key, _ in sel.select(timeout=0.2):
            if key.data is None:
                msg, fds, _flags, _addr = socket.recv_fds(channel, 4096, 4)
                if not msg and not fds:  # the dag-processor is gone: serve the runners left, take no more
                    for s in (channel, listener):
                        if s is not None:
                            sel.unregister(s)
                            s.close()
                    channel = listener = None
                    continue
                pre_import_airflow_modules(msg.decode())
                status = socket.socket(fileno=fds[3])
                learned_r, learned_w = os.pipe()
                gc.freeze()  # the fork's collections leave this process's objects (and their pages) alone
                pid = os.fork()
                if pid == 0:
                    os.close(learned_r)
                    grandchild(fds[:3], learned_w, keep_alive=(channel, sel, status, waiting, learning, listener))
                for fd in (*fds[:3], learned_w):
                    os.close(fd)
                waiting[pid] = status
                learning[pid] = learned_r
                sel.register(status, selectors.EVENT_READ, pid)
            elif key.data == "runner":
                request = take_runner_request(listener, platform_uid)
                if request is None:
                    continue
                conn, fds = request
                import airflow.jobs.triggerer_job_runner  # noqa: F401  (once, here: shared with every runner)

                gc.freeze()
                pid = os.fork()
                if pid == 0:
                    forked_trigger_runner(fds, keep_alive=(sel, channel, listener, conn, *waiting.values(),
                                                           *(FdCloser(fd) for fd in learning.values())))
                for fd in fds:
                    os.close(fd)
                with_suppressed(conn.send, f"pid:{pid}".encode())
                waiting[pid] = conn
                runners.add(pid)
                sel.register(conn, selectors.EVENT_READ, pid)
            elif key.data in waiting:  # a runner's relay forwards a signal, or a relay closed its end (killed)
                try:
                    data = waiting[key.data].recv(16)
                except OSError:
                    data = b""
                sig = int(data[4:]) if data.startswith(b"sig:") and data[4:].isdigit() else signal.SIGKILL
                if sig not in (*FORWARDED_SIGNALS, signal.SIGKILL):
                    sig = signal.SIGKILL
                with_suppressed(os.kill, key.data, sig)
        while waiting:
            try:
                pid, raw = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            runners.discard(pid)
            status = waiting.pop(pid, None)
            if status is not None:
                sel.unregister(status)
                code = os.waitstatus_to_exitcode(raw)
                with_suppressed(status.send, str(code if code >= 0 else 128 - code).encode())
                status.close()
            if pid in learning:
                pending.extend(read_learned(learning.pop(pid)))
        if pending and not waiting.keys() - runners:  # only while no parse runs, a little at a time
            import_some(pending, budget=0.1)


@attrs.define
class FdCloser:
    """A raw fd with a ``close`` (what a fork closes of the zygote's)."""

    fd: int

    def close(self) -> None:
        os.close(self.fd)


def installed_modules() -> set[str]:
    """Modules loaded from the installed packages (site-packages): Airflow, providers, libraries.
    Never the project's own code (bundles, ``shared/``), which may change between parses."""
    import sysconfig

    roots = tuple({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    return {name for name, m in list(sys.modules.items())
            if (getattr(m, "__file__", None) or "").startswith(roots)}


def read_learned(fd: int) -> list[str]:
    """The installed modules a parse needed (it wrote their names before it exited)."""
    with os.fdopen(fd, "rb") as f:
        return f.read().decode(errors="ignore").split()


def import_some(pending: list[str], budget: float) -> None:
    """Import pending modules in the zygote for ``budget`` seconds at most, so later parses fork
    with them loaded (as Airflow's own forks have the dag-processor's modules)."""
    import importlib
    import time

    deadline = time.monotonic() + budget
    while pending and time.monotonic() < deadline:
        name = pending.pop(0)
        if name not in sys.modules:
            try:
                importlib.import_module(name)
            except Exception:  # a module that imports only inside its package's own set-up: skip it
                continue


def pre_import_airflow_modules(path: str) -> None:
    """What Airflow's dag-processor does before it forks a parse: import the ``airflow`` modules
    the file imports, once, in the zygote (Airflow's code only: a team's own modules may change
    between parses, so they are imported by each parse, as upstream)."""
    import importlib

    from airflow.utils.file import iter_airflow_imports

    try:
        for module in iter_airflow_imports(path):
            if module not in sys.modules:
                importlib.import_module(module)
    except Exception as e:  # the parse reports the file's own errors
        print(f"pre-import for {path} failed: {type(e).__name__}: {e}", file=sys.stderr, flush=True)


def with_suppressed(fn, *args) -> None:
    try:
        fn(*args)
    except OSError:
        pass


def grandchild(fds: list[int], learned: int, keep_alive: tuple) -> None:
    """Parse one file with the supervisor's sockets as fds 0-2, then exit; ``learned``: where to
    write the installed modules the parse loaded. ``keep_alive``: the zygote's objects, closed
    here explicitly (never by the garbage collector, which could close a reused fd number)."""
    before = set(sys.modules)

    def body() -> None:
        channel, sel, status, waiting, learning, listener = keep_alive
        sel.close()
        for s in (channel, listener, status, *waiting.values()):
            if s is not None:
                s.close()
        for fd in learning.values():
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        from airflow.sdk.execution_time.supervisor import _reset_signals

        _reset_signals()
        sys.stdin = open(0, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        parse_one_file()

    code = exit_code_of(body)
    new = " ".join(sorted(installed_modules() - before)).encode()[:60_000]  # within a pipe's buffer
    with_suppressed(os.write, learned, new)
    os._exit(code)


def parse_one_file() -> None:
    """Airflow's ``_parse_file_entrypoint``, with the log channel requested after the parse
    request (the exec'd child did not inherit it)."""
    os.environ["_AIRFLOW_PROCESS_CONTEXT"] = "client"
    import structlog
    from airflow.dag_processing.processor import DagFileParseRequest, _parse_file
    from airflow.sdk.execution_time import comms, task_runner
    from airflow.sdk.log import configure_logging

    decoder = comms.CommsDecoder[ToChild, ToManagerOrLogs](body_decoder=TypeAdapter(ToChild),
                                                           socket=socket.socket(fileno=0))
    msg = decoder._get_response()
    if not isinstance(msg, DagFileParseRequest):
        raise RuntimeError(f"Required first message to be a DagFileParseRequest, it was {msg}")
    logs = decoder.send(ResendLoggingFD())
    if isinstance(logs, SentFDs):
        configure_logging(json_output=True, output=os.fdopen(logs.fds[0], "wb", buffering=0),
                          sending_to_supervisor=True)
    task_runner.SUPERVISOR_COMMS = decoder
    result = _parse_file(msg, structlog.get_logger(logger_name="task"))
    if result is not None:
        decoder.send(result)


# -- the team triggerers forked from one parent (supervisord's ``triggerers`` program) -------------
# Each team's triggerer was a fresh interpreter importing Airflow: ~158 MiB private each, idle. The
# parent imports Airflow and the triggerer's modules once and forks each team's triggerer for the
# team's program, a thin relay (``platform_runtime/triggerer_fork.py``: how it asks, what it sends).
TRIGGERER_PREFIX = ["-m", "platform_runtime.airflow_internals", "triggerer"]
TEAM_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")
STOP_SECONDS = 15  # the parent's SIGTERM: its triggerers get it and this long to stop


def triggerer_parent(listener: socket.socket) -> None:
    """On ``listener`` (bound before Airflow was imported: a relay connecting meanwhile waits for
    its answer), import what every triggerer imports, ``gc.freeze()``, then fork a triggerer per
    request: from a peer that
    holds at least this process's uid and capabilities (:func:`triggerer_fork.holds_caps`), for
    a team with no other triggerer of this parent (the previous one killed and reaped first).
    Its relay's signals go to the triggerer's process group; the relay gone, the group is killed;
    the triggerer's exit code goes back to the relay. Its own SIGTERM (supervisord's stop):
    SIGTERM to every triggerer, then exit (a triggerer whose parent is gone is killed:
    ``PR_SET_PDEATHSIG``)."""
    print(f"[platform_runtime] triggerer parent pid {os.getpid()}: importing Airflow once for every team's triggerer",
          file=sys.stderr, flush=True)
    import_triggerer_modules()
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _f: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _f: stopping.append(signum))
    sel = selectors.DefaultSelector()
    sel.register(listener, selectors.EVENT_READ, None)
    triggerers: dict[str, tuple[int, socket.socket]] = {}  # team -> (pid, its relay's connection)
    team_of: dict[int, str] = {}
    print(f"[platform_runtime] triggerer parent pid {os.getpid()}: ready", file=sys.stderr, flush=True)
    while not stopping:
        for key, _ in sel.select(timeout=0.5):
            if key.data is None:
                request = take_triggerer_request(listener)
                if request is None:
                    continue
                team, conn, fds = request
                if team in triggerers:  # never two of one team: the previous one ends first
                    pid, old = triggerers.pop(team)
                    end_triggerer(pid, sel, old)
                    team_of.pop(pid, None)
                for stream in (sys.stdout, sys.stderr):
                    with_suppressed(stream.flush)
                gc.freeze()
                parent = os.getpid()
                pid = os.fork()
                if pid == 0:
                    forked_triggerer(fds, parent, keep_alive=(sel, listener, conn, *(c for _p, c in triggerers.values())))
                for fd in fds:
                    os.close(fd)
                with_suppressed(conn.send, f"pid:{pid}".encode())
                triggerers[team] = (pid, conn)
                team_of[pid] = team
                sel.register(conn, selectors.EVENT_READ, pid)
                print(f"[platform_runtime] team {team}: triggerer pid {pid} forked", file=sys.stderr, flush=True)
            else:  # a relay forwards a signal, or is gone (its connection closed)
                pid = key.data
                if pid not in team_of or key.fileobj.fileno() == -1:  # ended in this turn already
                    continue
                try:
                    data = key.fileobj.recv(16)
                except OSError:
                    data = b""
                sig = int(data[4:]) if data.startswith(b"sig:") and data[4:].isdigit() else signal.SIGKILL
                if sig not in (*FORWARDED_SIGNALS, signal.SIGKILL):
                    sig = signal.SIGKILL
                signal_group(pid, sig)
                if sig == signal.SIGKILL:  # the relay is gone: so is its triggerer, answered to no one
                    sel.unregister(key.fileobj)
                    key.fileobj.close()
                    team = team_of.get(pid)
                    if team is not None and triggerers.get(team, (None,))[0] == pid:
                        triggerers[team] = (pid, None)
        reap_triggerers(triggerers, team_of, sel)
    for pid, _conn in triggerers.values():
        signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_SECONDS
    while triggerers and time.monotonic() < deadline:
        reap_triggerers(triggerers, team_of, sel)
        time.sleep(0.1)
    for pid, conn in list(triggerers.values()):
        end_triggerer(pid, sel, conn)


# What a team triggerer imports once running, beyond the triggerer job itself (a real triggerer's
# ``sys.modules`` against the parent's, Airflow 3.3.2: ~550 more modules): each entry pulls its
# own dependencies (the log server's FastAPI/uvicorn, the migration check's alembic, OpenLineage's
# client library, the in-process Execution API's tokens, requests, cryptography). No plugin module:
# OpenLineage's plugin builds its listener, and caches its settings (the team's transport and
# ingest key), when imported: each triggerer does that itself, in its own environment.
TRIGGERER_IMPORTS = (
    "airflow.__main__", "airflow.cli.cli_parser", "airflow.cli.commands.triggerer_command",
    "airflow.cli.commands.dag_processor_command", "airflow.jobs.job", "airflow.jobs.triggerer_job_runner",
    "airflow.models", "airflow.models.serialized_dag", "airflow.models.dagcode", "airflow.models.renderedtifields",
    "airflow.models.pool", "airflow.models.errors", "airflow.models.dagwarning", "airflow.models.revoked_token",
    "airflow.utils.db", "airflow.migrations.utils", "alembic.command", "alembic.autogenerate", "alembic.config",
    "airflow.utils.serve_logs.log_server", "airflow.api_fastapi.auth.tokens", "airflow.dag_processing.manager",
    "airflow.sdk.bases.sensor", "airflow.sdk.bases.hook", "airflow.sdk.lineage", "airflow.sdk.execution_time.cache",
    "openlineage.client", "openlineage.client.transport.http", "openlineage.client.generated.base",
    "requests", "charset_normalizer", "cryptography.fernet", "cryptography.x509", "email_validator",
    "pygments.lexers.python", "pygments.formatters.terminal", "httpx2", "psycopg2", "setproctitle",
    "sqlalchemy.dialects.postgresql.psycopg2",
)


def import_triggerer_modules() -> None:
    """What a team triggerer imports (:data:`TRIGGERER_IMPORTS`), once, shared by every fork;
    modules only: no plugin, listener or provider is set up here (each triggerer does, in its
    own environment). One that fails to import is left to the triggerer (it imports it itself)."""
    import importlib

    for name in TRIGGERER_IMPORTS:
        try:
            importlib.import_module(name)
        except Exception as e:  # an optional provider missing, a module moved in another version
            print(f"[platform_runtime] triggerer parent: {name} not imported ({type(e).__name__}: {e})",
                  file=sys.stderr, flush=True)
    # SQLAlchemy configures the ORM's mappers (every model's relationships) on a triggerer's
    # first query: done here once, shared by every fork (~5 MiB each otherwise; no database
    # connection, no team setting: the models only).
    from sqlalchemy.orm import configure_mappers

    configure_mappers()
    gc.collect()
    gc.freeze()


def take_triggerer_request(listener: socket.socket) -> tuple[str, socket.socket, list[int]] | None:
    """(team, connection, its four fds) of a relay's request, or None: refused unless the peer
    holds this process's uid and capabilities and names a team."""
    from platform_runtime.triggerer_fork import REQUEST, holds_caps

    def team_of(msg: bytes) -> str:
        team = msg.removeprefix(REQUEST).decode(errors="replace")
        if not msg.startswith(REQUEST) or not TEAM_NAME.fullmatch(team):
            raise ConnectionError("not a triggerer request")
        return team

    taken = take_fd_request(listener, holds_caps, team_of, 256, "triggerer")
    return None if taken is None else (taken[1], taken[0], taken[2])


def signal_group(pid: int, sig: int) -> None:
    """``sig`` to the triggerer's process group (what supervisord's stopasgroup/killasgroup did to
    the program's), or to the triggerer alone while it has not led one yet."""
    try:
        os.killpg(pid, sig)
    except OSError:
        with_suppressed(os.kill, pid, sig)


def end_triggerer(pid: int, sel, conn: socket.socket | None) -> None:
    """Kill the triggerer's process group, reap it, its code to its relay (if still there)."""
    signal_group(pid, signal.SIGKILL)
    try:
        _pid, raw = os.waitpid(pid, 0)
    except ChildProcessError:
        raw = None
    answer_relay(sel, conn, None if raw is None else os.waitstatus_to_exitcode(raw))


def answer_relay(sel, conn: socket.socket | None, code: int | None) -> None:
    """The triggerer's exit code (a signal as 128 + its number, as a shell says it) to its relay,
    whose connection is then closed; ``code`` None: closed with no code (the relay exits 125)."""
    if conn is None:
        return
    if code is not None:
        with_suppressed(conn.send, str(code if code >= 0 else 128 - code).encode())
    with_suppressed(sel.unregister, conn)
    conn.close()


def reap_triggerers(triggerers: dict, team_of: dict, sel) -> None:
    """Every ended triggerer: what is left of its process group killed, its code to its relay."""
    while True:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        with_suppressed(os.killpg, pid, signal.SIGKILL)  # its trigger runner's relay, if still there
        team = team_of.pop(pid, None)
        if team is None or triggerers.get(team, (None,))[0] != pid:
            continue
        _pid, conn = triggerers.pop(team)
        code = os.waitstatus_to_exitcode(raw)
        print(f"[platform_runtime] team {team}: triggerer pid {pid} ended ({code})", file=sys.stderr, flush=True)
        answer_relay(sel, conn, code)


def forked_triggerer(fds: list[int], parent: int, keep_alive: tuple) -> None:
    """In the parent's fork: become the relay's triggerer (its fds 0-2, its argv, environment,
    working folder, umask, CPU group and cgroup, read from ``fds[3]``), then run Airflow's
    ``triggerer`` command as the program did; never returns."""

    def body() -> None:
        for obj in keep_alive:
            if obj is not None:
                with_suppressed(obj.close)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, signal.SIG_DFL if sig == signal.SIGTERM else signal.default_int_handler)
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)
        with socket.socket(fileno=fds[3]) as payload_socket:
            payload_socket.settimeout(30)
            chunks = []
            while chunk := payload_socket.recv(65536):
                chunks.append(chunk)
        import json

        payload = json.loads(b"".join(chunks))
        argv = payload["argv"]
        if argv[1:1 + len(TRIGGERER_PREFIX)] != TRIGGERER_PREFIX:
            raise SystemExit(f"platform_runtime: the triggerer parent runs only triggerers, not {argv[1:4]}")
        from platform_runtime import autogroup

        if payload.get("nice") is not None:  # a CPU group of its own, as launch.py gave the program
            autogroup.new_group(int(payload["nice"]))
        else:
            os.setpgid(0, 0)  # a process group of its own: the parent signals it as a group
        if payload.get("cgroup"):
            try:
                autogroup.join_cgroup(payload["cgroup"])
            except OSError as e:
                print(f"[platform_runtime] triggerer not in its team's cgroup ({e})", file=sys.stderr, flush=True)
        for target, fd in enumerate(fds[:3]):
            os.dup2(fd, target)
            os.close(fd)
        import setproctitle

        setproctitle.setproctitle(" ".join(argv))  # before the environment changes: it finds its room by it
        os.environ.clear()
        os.environ.update(payload["env"])
        os.chdir(payload["cwd"])
        os.umask(int(payload["umask"]))
        gc.enable()
        main(argv[3:])

    os._exit(exit_code_of(body))


def main(argv: list[str]) -> None:
    if argv[:1] == ["zygote"]:
        zygote(int(argv[1]), int(argv[2]) if len(argv) > 2 else None)
        return
    if argv[:1] == ["trigger-runner"]:
        trigger_runner()
        return
    if argv[:1] in (["dag-processor"], ["triggerer"]):
        install()
        from airflow.__main__ import main as airflow_main

        sys.argv = ["airflow", *argv]
        airflow_main()
        return
    raise SystemExit("usage: python -m platform_runtime.airflow_internals dag-processor|triggerer [args]"
                     " | zygote FD | trigger-runner")


if __name__ == "__main__":
    main(sys.argv[1:])
