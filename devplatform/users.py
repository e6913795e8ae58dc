"""The local platform's OS users and the interpreter they can run.

As root, ``make start`` runs every platform process as the platform's user and each team's
processes as the team's (``tenant-<team>``), both created on first use; not as root, none of
this applies (``can_switch_users``). Those users may not reach the project's own interpreter
(pyenv under ``/root``): ``tenant_python`` gives them one they can.
"""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from devplatform.paths import ROOT

USER_PREFIX = "tenant-"
PLATFORM_USER = "airflow-platform"
# ecommerce_ml's heavy (model) environment, built by `make install` (requirements-embed.txt)
EMBED_VENV = ROOT / ".venv-embed"


def can_switch_users() -> bool:
    return os.geteuid() == 0


@dataclass(frozen=True)
class OsUser:
    name: str
    uid: int
    gid: int


def team_user(team: str) -> OsUser | None:
    """The team's OS user (created on first use) when running as root, else None."""
    if not can_switch_users():
        return None
    return system_user(f"{USER_PREFIX}{team}"[:32])


def platform_user() -> OsUser | None:
    """The platform's own OS user (``PLATFORM_OS_USER``, default ``airflow-platform``; created
    on first use) that every platform process runs as when ``make start`` runs as root, else None."""
    if not can_switch_users():
        return None
    return system_user(os.environ.get("PLATFORM_OS_USER", PLATFORM_USER))


def system_user(name: str) -> OsUser:
    """A system user with a group of its own and no home or shell, created if missing."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", name],
            check=True, capture_output=True, text=True,
        )
        entry = pwd.getpwnam(name)
    return OsUser(name, entry.pw_uid, entry.pw_gid)


def _reachable_by_others(path: Path) -> bool:
    """Whether a user with no groups in common can execute ``path`` (every parent o+x)."""
    path = path.resolve()
    return os.stat(path).st_mode & 0o001 != 0 and all(os.stat(p).st_mode & 0o001 for p in path.parents)


def tenant_python(state: Path, create: bool = False, source: Path | None = None) -> str:
    """The interpreter for the team users' processes.

    The project's virtualenv may be built on an interpreter that other users cannot reach
    (e.g. pyenv under ``/root``). Then the team users get a virtualenv of their own on the
    system's interpreter of the same minor version, which reads the project's installed
    packages (same CPython ABI): nothing is installed twice. ``source``: another of the
    project's virtualenvs instead of the running one (e.g. ecommerce_ml's ``.venv-embed``).
    """
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    own = Path(sys.executable) if source is None else source / "bin" / "python"
    if not can_switch_users() or _reachable_by_others(own):
        return str(own)
    venv = state / ("tenant-python" if source is None else f"tenant-python-{source.name.lstrip('.')}")
    python = venv / "bin" / "python"
    if not create:
        return str(python)
    if not python.exists():
        system = next((p for p in (Path("/usr/local/bin") / version, Path("/usr/bin") / version)
                       if p.exists() and _reachable_by_others(p)), None)
        if system is None:
            raise RuntimeError(f"{own} is not reachable by the team users and there is no system {version}")
        subprocess.run([str(system), "-m", "venv", "--without-pip", str(venv)], check=True, capture_output=True)
        if source is None:
            site_packages = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
        else:
            site_packages = str(source / "lib" / version / "site-packages")
        (venv / "lib" / version / "site-packages" / "_project_packages.pth").write_text(
            f"import site; site.addsitedir({site_packages!r})\n"
        )
    for p in (venv, *venv.rglob("*")):
        if not p.is_symlink():
            os.chmod(p, os.stat(p).st_mode | (0o005 if p.is_dir() or os.stat(p).st_mode & 0o100 else 0o004))
    return str(python)
