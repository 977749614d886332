"""Which JWT secrets ``serve`` refuses: short ones, and any that is written in the repository."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

MIN_SECRET_LENGTH = 32
_SKIPPED_DIRS = frozenset({".git", ".venv", "venv", "data", "node_modules", "__pycache__", "target", "logs"})
_TEXT_SUFFIXES = frozenset({".py", ".md", ".yml", ".yaml", ".toml", ".cfg", ".ini", ".txt", ".env", ".sql", ".json"})
_TEXT_NAMES = frozenset({"Dockerfile", "run", ".env"})


def _repository_texts(root: Path) -> Iterator[Path]:
    for path in root.iterdir():
        if path.is_dir():
            if path.name not in _SKIPPED_DIRS and not path.name.endswith(".egg-info"):
                yield from _repository_texts(path)
        elif path.suffix in _TEXT_SUFFIXES or path.name in _TEXT_NAMES:
            yield path


def secret_problem(secret: str, root: Path) -> str | None:
    """Why ``secret`` must not sign tokens (too short, or found in a text file under ``root``), else None."""
    if len(secret) < MIN_SECRET_LENGTH:
        return f"it is shorter than {MIN_SECRET_LENGTH} characters"
    for path in _repository_texts(root):
        try:
            if secret in path.read_text(errors="ignore"):
                return f"it is written in {path.relative_to(root)}, so anyone with the code can mint tokens"
        except OSError:
            continue
    return None
