"""The README's "Add a domain", followed step by step on a copy of the project: every file it
shows is written with ``<name>`` = ``toy``, step 4's ``make dockerfile`` rewrites the
image's team lines (the copy's Astro project test then passes), step 5's
``make restart`` (with ``PLATFORM_DOMAINS=toy``, the README's one-team platform, on free ports
and a state folder of its own) starts the real platform, and the new DAG, triggered as
``toy_op`` the way the README shows, writes its row. The README is the script: a step that
stops working there fails here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2
import pytest
import requests

from devplatform.dockerfile import update
from devplatform.paths import ROOT, domain_names
from devplatform.ports import free_port_range, free_ports

NAME = "toy"
PATH_LINE = re.compile(r"^(?:#|--) (domains/\S+)$")


def readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end != -1 else None]


def files_of(section: str, name: str) -> dict[str, str]:
    """{path: content} of every fenced block that starts with a path comment (``# domains/...``
    or ``-- domains/...``): a block of path lines only is that many empty files."""
    files: dict[str, str] = {}
    for block in re.findall(r"^```[a-z]*\n(.*?)^```$", section, re.S | re.M):
        block = block.replace("<name>", name).replace("<NAME>", name.upper())
        lines = block.splitlines()
        paths = []
        while lines and (m := PATH_LINE.match(lines[0])):
            paths.append(m.group(1))
            lines.pop(0)
        if not paths:
            continue
        body = "\n".join(lines).strip("\n")
        if body:
            assert len(paths) == 1, f"a block with content names one file: {paths}"
            files[paths[0]] = body + "\n"
        else:
            files.update(dict.fromkeys(paths, ""))
    return files


def test_the_readme_shows_every_file_of_a_new_domain():
    files = files_of(readme_section("Add a domain"), NAME)
    assert set(files) == {
        "domains/toy/__init__.py", "domains/toy/tests/__init__.py", "domains/toy/dags/.airflowignore",
        "domains/toy/settings.yaml", "domains/toy/migrations/0001_greetings.sql", "domains/toy/db.py",
        "domains/toy/greetings.py", "domains/toy/dags/toy_hello.py"}


def copy_project(dest: Path) -> None:
    """The project as a developer's checkout has it (tracked and new files, nothing ignored),
    with the same virtualenvs."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file() and not src.is_symlink():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    for venv in (".venv", ".venv-embed"):
        if (ROOT / venv).exists():
            (dest / venv).symlink_to((ROOT / venv).resolve())


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(1200)
def test_a_sixth_domain_added_as_the_readme_says_runs_its_dag_on_the_platform():
    work = Path(tempfile.mkdtemp(prefix="add-a-domain-"))
    os.chmod(work, 0o711)  # the team users traverse it to their bundle and the code
    project, state = work / "project", work / "state"
    project.mkdir(mode=0o755)
    state.mkdir(mode=0o711)
    copy_project(project)
    ports = free_ports(8)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PLATFORM_", "PYTEST"))}
    env.update({"PYTHONPATH": str(project), "PLATFORM_STATE_DIR": str(state),
                "PLATFORM_PG_PORT": str(ports[0]), "PLATFORM_API_PORT": str(ports[1]),
                "PLATFORM_SMTP_PORT": str(ports[2]), "PLATFORM_WORKER_LOG_PORT": str(ports[3]),
                "PLATFORM_DOMAIN_REDIS_PORT": str(ports[4]), "PLATFORM_REDIS_PORT": str(ports[5]),
                "PLATFORM_FLOWER_PORT": str(ports[6]),
                "PLATFORM_TRIGGER_LOG_PORT": str(free_port_range(2, exclude=ports))})
    api = f"http://127.0.0.1:{ports[1]}"
    try:
        # steps 1-3: the files, as the README shows them
        for rel, content in files_of(readme_section("Add a domain"), NAME).items():
            (project / rel).parent.mkdir(parents=True, exist_ok=True)
            (project / rel).write_text(content)
        for folder in (project / "domains" / NAME).rglob("*"):
            os.chmod(folder, 0o755 if folder.is_dir() else 0o644)
        os.chmod(project / "domains" / NAME, 0o755)

        # step 4: the image's team lines are wrong until `make dockerfile` (the copy's own check)
        dockerfile = (project / "Dockerfile").read_text()
        assert update(dockerfile, [*domain_names(), NAME]) != dockerfile
        made = run(["make", "-s", "dockerfile"], project, env)
        assert made.returncode == 0 and "rewritten" in made.stdout, made.stdout + made.stderr
        # what the copy's own code makes of the old file: the team lines, and the parallelism from
        # the copy's settings (the new team's pool slots counted), not this checkout's
        (work / "Dockerfile.before").write_text(dockerfile)
        expected = run([sys.executable, "-c", "import sys; from devplatform.dockerfile import update; "
                        f"sys.stdout.write(update(open({str(work / 'Dockerfile.before')!r}).read(), {[*domain_names(), NAME]!r}))"],
                       project, env)
        assert expected.returncode == 0, expected.stderr
        assert (project / "Dockerfile").read_text() == expected.stdout
        astro_test = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                      "tests/test_astro_project.py::test_image_configures_what_the_local_platform_configures"]
        after = run(astro_test, project, env)
        assert after.returncode == 0, after.stdout[-3000:]

        # step 5: `make restart`, a platform of the new team alone
        started = run(["make", "-s", "restart"], project, {**env, "PLATFORM_DOMAINS": NAME}, timeout=900)
        assert started.returncode == 0, (started.stdout + started.stderr)[-4000:]

        # the README's "Trigger a DAG as a team user", as toy_op
        passwords = json.loads((state / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        r = requests.post(f"{api}/auth/token", json={"username": f"{NAME}_op", "password": passwords[f"{NAME}_op"]},
                          timeout=30)
        assert r.status_code in (200, 201), r.text
        headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        dags = requests.get(f"{api}/api/v2/dags", headers=headers, timeout=30).json()["dags"]
        assert [d["dag_id"] for d in dags] == [f"{NAME}_hello"]
        assert dags[0]["tags"] and {t["name"] for t in dags[0]["tags"]} == {NAME}
        r = requests.patch(f"{api}/api/v2/dags/{NAME}_hello", headers=headers, json={"is_paused": False}, timeout=30)
        assert r.status_code == 200, r.text
        r = requests.post(f"{api}/api/v2/dags/{NAME}_hello/dagRuns", headers=headers, json={"logical_date": None},
                          timeout=30)
        assert r.status_code == 200, r.text
        run_id = r.json()["dag_run_id"]
        deadline, state_now = time.monotonic() + 600, None
        while time.monotonic() < deadline:
            try:
                state_now = requests.get(f"{api}/api/v2/dags/{NAME}_hello/dagRuns/{run_id}", headers=headers,
                                         timeout=30).json()["state"]
            except requests.Timeout:  # a loaded machine: ask again
                continue
            if state_now in ("success", "failed"):
                break
            time.sleep(2)
        assert state_now == "success", (state_now, _worker_log(state))

        # its row, in its own database, as its own role
        secrets = json.loads((state / "secrets.json").read_text())
        with psycopg2.connect(host="127.0.0.1", port=ports[0], dbname=NAME, user=NAME,
                              password=secrets["domain_db_passwords"][NAME]) as conn, conn.cursor() as cur:
            cur.execute("SELECT run_key FROM greetings")
            assert [row[0] for row in cur.fetchall()] == [f"{NAME}_hello/{run_id}"]
    except BaseException:
        kept = ROOT / ".local" / "test-output" / "add-a-domain-logs"  # what the platform logged, for the failure
        shutil.rmtree(kept, ignore_errors=True)
        if (state / "logs").is_dir():
            shutil.copytree(state / "logs", kept)
        raise
    finally:
        run(["make", "-s", "stop"], project, {**env, "PLATFORM_DOMAINS": NAME}, timeout=300)
        shutil.rmtree(work, ignore_errors=True)


def _worker_log(state: Path) -> str:
    log = state / "logs" / f"worker-{NAME}.log"
    return log.read_text()[-3000:] if log.exists() else "(no worker log)"
