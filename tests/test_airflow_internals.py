"""Pins what ``platform_runtime.airflow_internals`` relies on in Airflow 3.3.2's private code.

Each check names the behaviour the module needs; an Airflow upgrade that changes one fails
here, loudly, before the dag-processor parses a team's files as root again. The behaviour
itself (a real dag-processor, before and after) is tested in tests/test_team_parsing.py.
"""

from __future__ import annotations

import inspect
import json
import pkgutil
from importlib.metadata import version
from pathlib import Path

import pytest

from platform_runtime import airflow_internals
from platform_runtime.team_env import AIRFLOW_SETTINGS, team_env


def resolve(dotted: str):
    """The object a dotted name names, modules and attributes alike."""
    return pkgutil.resolve_name(dotted)


def test_written_for_airflow_3_3_2():
    assert version("apache-airflow") == "3.3.2", "re-check every pin below for this Airflow version"
    assert version("apache-airflow-task-sdk") == "1.3.2"


@pytest.mark.parametrize("member", airflow_internals.PRIVATE_MEMBERS)
def test_every_private_member_relied_on_exists(member):
    assert resolve(member) is not None


def test_the_manager_starts_each_file_through_the_module_level_class_name():
    """install() swaps ``airflow.dag_processing.manager.DagFileProcessorProcess``: the manager must
    look the class up by that name when it starts a file, and pass ``bundle_name`` by keyword."""
    source = inspect.getsource(resolve("airflow.dag_processing.manager.DagFileProcessorManager._create_process"))
    assert "DagFileProcessorProcess.start(" in source and "bundle_name=" in source


def test_the_per_file_child_runs_the_target_after_fds_0_to_2_became_the_supervisors_sockets():
    from airflow.dag_processing.processor import DagFileProcessorProcess
    from airflow.sdk.execution_time import supervisor

    assert "target" in inspect.signature(DagFileProcessorProcess.start).parameters
    fork_main = inspect.getsource(resolve("airflow.sdk.execution_time.supervisor._fork_main"))
    assert fork_main.index("_reopen_std_io_handles(") < fork_main.index("target()")
    assert "_fork_main(child_requests, child_stdout, child_stderr, child_logs.fileno(), target)" in inspect.getsource(
        supervisor.WatchedSubprocess.start)


def test_a_log_channel_can_be_sent_to_an_execd_child():
    from airflow.sdk.execution_time import comms

    send_new_log_fd = resolve("airflow.sdk.execution_time.supervisor.ActivitySubprocess._send_new_log_fd")
    assert list(inspect.signature(send_new_log_fd).parameters) == ["self", "req_id"]
    assert "isinstance(msg, ResendLoggingFD)" in inspect.getsource(comms.CommsDecoder.send)


def test_the_parse_entrypoint_is_what_parse_one_file_replays():
    """``parse_one_file`` is Airflow's ``_parse_file_entrypoint`` plus the log-channel request:
    the entrypoint must still read one DagFileParseRequest, call ``_parse_file`` and send its result."""
    source = inspect.getsource(resolve("airflow.dag_processing.processor._parse_file_entrypoint"))
    for needle in ("comms_decoder._get_response()", "DagFileParseRequest", "_parse_file(msg, log)",
                   "comms_decoder.send(result)", "task_runner.SUPERVISOR_COMMS = comms_decoder"):
        assert needle in source, needle


def request_types(union) -> set[type]:
    import typing

    return set(typing.get_args(typing.get_args(union)[0]))


# Requests a team child may send that name nothing of another team: its own parse result, a
# secret to mask, its own run's previous success, the trigger runner's report (filtered to its
# own triggers by TeamTriggerRunnerSupervisor).
HARMLESS = {"DagFileParsingResult", "MaskSecret", "GetPrevSuccessfulDagRun", "TriggerStateChanges"}


def checked_by_team_refusal(kind: type) -> bool:
    """What ``team_refusal`` judges a request by: a variable key, a connection id, a DAG id, a
    task instance id, or an asset's name/uri; variable keys are filtered."""
    fields = set(kind.model_fields)
    return (kind.__name__ in airflow_internals.VARIABLE_REQUESTS or kind.__name__ in ("GetConnection", "GetVariableKeys")
            or "dag_id" in fields or "ti_id" in fields or ("Asset" in kind.__name__ and fields & {"name", "uri"}))


@pytest.mark.parametrize("union", ["airflow.dag_processing.processor.ToManager",
                                   "airflow.jobs.triggerer_job_runner.ToTriggerSupervisor"])
def test_every_request_a_team_child_may_send_is_checked_or_harmless(union):
    """A request type added to a child's protocol must be judged here before it reaches the
    in-process Execution API unchecked."""
    kinds = request_types(resolve(union))
    unjudged = {k.__name__ for k in kinds if not checked_by_team_refusal(k) and k.__name__ not in HARMLESS}
    assert not unjudged, unjudged


def test_the_triggerer_starts_its_runner_through_the_module_level_class_name():
    """install() swaps ``airflow.jobs.triggerer_job_runner.TriggerRunnerSupervisor``: the job runner
    must start it by that name with ``team_name=``, and the runner's fork must run
    ``cls.run_in_process`` after the log channel and fds 0-2 are set up."""
    from airflow.jobs.triggerer_job_runner import TriggererJobRunner, TriggerRunner, TriggerRunnerSupervisor

    assert "TriggerRunnerSupervisor.start(" in inspect.getsource(TriggererJobRunner)
    assert "team_name=self.team_name" in inspect.getsource(TriggererJobRunner)
    assert "target=cls.run_in_process" in inspect.getsource(TriggerRunnerSupervisor.start)
    assert "socket(fileno=0)" in inspect.getsource(TriggerRunner)
    fork_main = inspect.getsource(resolve("airflow.sdk.execution_time.supervisor._fork_main"))
    assert fork_main.index("_configure_logs_over_json_channel(") < fork_main.index("target()")


def test_trigger_state_changes_are_kept_to_the_triggerers_own_triggers():
    from airflow.jobs.triggerer_job_runner import TriggerEventEntry, messages
    from airflow.triggers.base import TriggerEvent

    class Log:
        warnings: list = []

        def warning(self, *a, **kw):
            self.warnings.append((a, kw))

    msg = messages.TriggerStateChanges(
        events=[TriggerEventEntry(1, TriggerEvent({"ok": 1}), None), TriggerEventEntry(99, TriggerEvent({"x": 1}), None)],
        failures=[(99, ["forged"]), (2, None)], finished=[1, 99])
    kept = airflow_internals.own_trigger_changes(msg, {1, 2}, Log())
    assert [e.trigger_id for e in kept.events] == [1]
    assert [f[0] for f in kept.failures] == [2] and kept.finished == [1]
    assert Log.warnings


def test_a_team_child_environment_is_built_from_an_allow_list(tmp_path):
    bundles = [{"name": "alpha", "team_name": "alpha", "kwargs": {"path": "/a"}},
               {"name": "beta", "team_name": "beta", "kwargs": {"path": "/b"}}]
    parent = {
        "PATH": "/usr/bin", "PYTHONPATH": "/repo", "AIRFLOW__CORE__EXECUTOR": "x;alpha=CeleryExecutor",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": "postgresql://airflow:pw@/airflow",
        "AIRFLOW__CORE__FERNET_KEY": "k", "AIRFLOW__API_AUTH__JWT_SECRET": "s", "AIRFLOW__OPENLINEAGE__TRANSPORT": "{}",
        "AIRFLOW_CONN_SMTP": "smtp://u:p@h", "AIRFLOW_VAR__ALPHA___X": "v", "ALPHA_DATA_ROOT": "/data/alpha",
        "ALPHA_PASSWORD": "p", "BETA_DATA_ROOT": "/data/beta", "HOME": "/root",
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps(bundles),
    }
    env = team_env("alpha", parent, tmp_path)
    assert env["ALPHA_DATA_ROOT"] == "/data/alpha" and env["AIRFLOW__CORE__EXECUTOR"] == "x;alpha=CeleryExecutor"
    assert [b["name"] for b in json.loads(env["AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"])] == ["alpha"]
    assert env["HOME"] == env["AIRFLOW_HOME"] == str(tmp_path)
    leaked = {k for k in env if k in parent and parent[k] != env[k]} - {"HOME", "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"}
    assert not leaked
    for key in ("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET",
                "AIRFLOW__OPENLINEAGE__TRANSPORT", "AIRFLOW_CONN_SMTP", "AIRFLOW_VAR__ALPHA___X", "ALPHA_PASSWORD",
                "BETA_DATA_ROOT"):
        assert key not in env, key
    assert not any("SECRET" in k or "FERNET" in k or "SQL_ALCHEMY" in k for k in AIRFLOW_SETTINGS)


# -- the dag-processor manager: a bundle's share of the parse slots (FairDagFileProcessorManager)
def test_the_dag_processor_command_builds_its_manager_through_the_module_level_class_name():
    """install_fair_manager() swaps ``airflow.cli.commands.dag_processor_command.DagFileProcessorManager``:
    the command must build its manager by that name."""
    from airflow.cli.commands import dag_processor_command

    assert "processor=DagFileProcessorManager(" in inspect.getsource(dag_processor_command)


def test_the_manager_starts_files_from_the_front_of_its_queue_while_slots_are_free():
    """What FairDagFileProcessorManager._start_new_processes relies on: Airflow's loop pops the
    queue's front while ``_parallelism`` exceeds ``_processors``, dropping a file already parsing;
    the parsing loop asks ``claim_priority_files`` every turn, before it refreshes the bundles,
    and ``request_bundle_refresh`` makes the next refresh take that bundle."""
    manager = "airflow.dag_processing.manager.DagFileProcessorManager"
    start = inspect.getsource(resolve(f"{manager}._start_new_processes"))
    for needle in ("while self._parallelism > len(self._processors) and self._file_queue:",
                   "self._file_queue.popitem(last=False)", "if file in self._processors:",
                   "self._processors[file] = processor"):
        assert needle in start, needle
    source = inspect.getsource(resolve(manager))
    loop = source[source.index("def _run_parsing_loop"):]
    assert loop.index("self._queue_requested_files_for_parsing()") < loop.index("self._refresh_dag_bundles(")
    assert "files = self.claim_priority_files()" in source
    assert "bundle.name not in self._force_refresh_bundles" in inspect.getsource(resolve(manager).should_skip_refresh)
    assert "dag_bundles = self.get_all_bundles()" in source


def files(*names: str, root: Path = Path("/b")):
    from airflow.dag_processing.manager import DagFileInfo

    return [DagFileInfo(rel_path=Path(f"{n}.py"), bundle_name=n.split("_")[0], bundle_path=root) for n in names]


def stems(fs) -> list[str]:
    return [f.rel_path.stem for f in fs]


def test_no_bundle_holds_more_than_its_share_of_the_parse_slots():
    queue = files("slow_1", "slow_2", "slow_3", "victim_new", "other_1")
    # two slots, two bundles parsing nothing: one slow file and the victim's, in queue order
    assert stems(airflow_internals.pick_fair(queue, [], 2, 1)) == ["slow_1", "victim_new"]
    # one slow file parsing: the victim's file takes the other slot
    assert stems(airflow_internals.pick_fair(queue, files("slow_0"), 2, 1)) == ["victim_new"]
    # every slot held: nothing starts
    assert airflow_internals.pick_fair(queue, files("slow_0", "victim_old"), 2, 1) == []
    # a share of 2 out of 5 slots
    assert stems(airflow_internals.pick_fair(queue, [], 5, 2)) == ["slow_1", "slow_2", "victim_new", "other_1"]
    # a file parsing now and queued again is handed on (Airflow drops it) without taking a slot
    again = files("slow_0")
    assert airflow_internals.pick_fair(again + files("victim_new"), again, 2, 1) == again + files("victim_new")


def test_a_bundles_share_is_its_part_of_the_slots_at_least_one():
    assert airflow_internals.bundle_share(5, 5) == 1
    assert airflow_internals.bundle_share(2, 5) == 1
    assert airflow_internals.bundle_share(10, 5) == 2
    assert airflow_internals.bundle_share(4, 0) == 4


def test_the_fair_manager_starts_only_its_share_and_keeps_the_rest_in_order(monkeypatch, tmp_path):
    """The real class over Airflow's own queue and ``_start_new_processes``: two slots, the
    flooding bundle's three files queued first, then the victim's: one slow file and the
    victim's start, the other slow files keep their places."""
    from airflow.dag_processing.manager import DagFileProcessorManager

    cls = airflow_internals.fair_manager_class()
    assert issubclass(cls, DagFileProcessorManager)
    monkeypatch.setenv("AIRFLOW__DAG_PROCESSOR__FILE_PARSING_SORT_MODE", "alphabetical")
    manager = cls(max_runs=1, parallelism=2)
    manager.bundle_dirs = {"slow": tmp_path, "victim": tmp_path}
    manager.share_enabled = True
    assert manager.share() == 1
    started = []
    monkeypatch.setattr(cls, "_create_process", lambda self, f: started.append(f) or object())
    slow = files("slow_1", "slow_2", "slow_3", root=tmp_path)
    manager.prepare_file_queue(known_files={"slow": set(slow), "victim": set(files("victim_a", root=tmp_path))})
    assert stems(manager.queued()) == ["slow_1", "slow_2", "slow_3", "victim_a"]
    manager.start_files()
    assert stems(started) == ["slow_1", "victim_a"] and stems(manager.parsing()) == ["slow_1", "victim_a"]
    assert stems(manager.queued()) == ["slow_2", "slow_3"]
    manager.start_files()  # both slots held: nothing more
    assert len(started) == 2
    manager.share_enabled = False  # Airflow's own loop: the next slow file would take a free slot
    assert manager.share() is None


def test_a_new_file_in_a_bundle_folder_is_seen_at_the_next_look(tmp_path):
    cls = airflow_internals.fair_manager_class()
    bundle = tmp_path / "victim"
    (bundle / "sub").mkdir(parents=True)
    manager = cls(max_runs=1)
    manager.bundle_dirs = {"victim": bundle}
    assert manager.changed_bundles() == set()  # the first look
    assert manager.changed_bundles() == set()
    (bundle / "sub" / "new.py").write_text("")
    assert manager.changed_bundles() == {"victim"}
    assert manager.changed_bundles() == set()
    (bundle / "sub" / "new.py").unlink()
    assert manager.changed_bundles() == {"victim"}
