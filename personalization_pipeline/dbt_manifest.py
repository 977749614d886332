"""The dbt project and its manifest, prepared the dagster-dbt way.

Loading the definitions never parses the project, except under ``dagster dev`` / ``dg dev``
(``DbtProject.prepare_if_dev``, so edits show up on reload). The commands that load them
(``run``, ``bench``, ``worker``, ``prepare``) and the test session call :func:`prepare_manifest`
first, which parses only when the manifest is missing or older than a dbt source file; the image
parses once at build time (``personalization-pipeline prepare``).
"""

from __future__ import annotations

from dagster_dbt import DbtProject

from .config import project_root

DBT_SOURCES = ("dbt_project.yml", "profiles.yml", "models", "macros", "tests")

dbt_project = DbtProject(project_dir=project_root() / "dbt_project", profiles_dir=project_root() / "dbt_project")


def manifest_is_stale() -> bool:
    """True on a fresh clone (no manifest) or when a dbt source file changed since the last parse."""
    if not dbt_project.manifest_path.exists():
        return True
    built = dbt_project.manifest_path.stat().st_mtime
    files = [
        p
        for name in DBT_SOURCES
        for p in [dbt_project.project_dir / name, *(dbt_project.project_dir / name).rglob("*")]
    ]
    return any(p.is_file() and p.stat().st_mtime > built for p in files)


def prepare_manifest() -> bool:
    """Prepare the project with dagster-dbt's preparer (``dbt parse``, guarded against concurrent
    writers) when :func:`manifest_is_stale`; whether it parsed."""
    if not manifest_is_stale():
        return False
    dbt_project.preparer.prepare(dbt_project)
    return True
