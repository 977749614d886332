"""The one recommender contract every model implements (pattern: ``implicit``'s ``RecommenderBase``).

A recommender is built from its hyper-parameters, learns from an :class:`InteractionMatrix`
with :meth:`Recommender.fit`, and scores every one of its items for a batch of users with
:meth:`Recommender.score` (the history is passed in, so item-item models can score from
it; rows of users a model cannot score are NaN). Its learned state is a few named arrays:
:meth:`save` writes them with the kind and parameters to one ``model.npz`` in a directory
(no pickle), :meth:`load` reads them back, and :attr:`version` is a hash of kind,
parameters and state, so the same data and parameters give the same version and any
change gives a new one.
"""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np

from personalization_pipeline.recsys.matrices import InteractionMatrix

STATE_FILE = "model.npz"
UserIds = Sequence[str] | np.ndarray


class Recommender(ABC):
    """Base of every model; see the module docstring."""

    kind: ClassVar[str]
    Params: ClassVar[type]  # a frozen dataclass of hyper-parameters

    def __init__(self, params: Any = None) -> None:
        self.params = params if params is not None else self.Params()

    def skip_reason(self, history: InteractionMatrix) -> str | None:
        """Why this model should not be fitted on ``history`` (e.g. too large), or None."""
        return None

    @abstractmethod
    def fit(self, history: InteractionMatrix) -> Self:
        """Learn from ``history.weights``; returns ``self``. Raises ``ValueError`` when there is nothing to learn."""

    @abstractmethod
    def score(self, user_ids: UserIds, history: InteractionMatrix) -> np.ndarray:
        """Scores, ``len(user_ids)`` x ``len(item_ids)`` (floats); NaN rows for users it cannot score."""

    @property
    @abstractmethod
    def item_ids(self) -> np.ndarray:
        """The items it scores, ascending (the columns of :meth:`score`)."""

    @abstractmethod
    def state(self) -> dict[str, np.ndarray]:
        """The learned arrays, by name."""

    @abstractmethod
    def restore(self, state: dict[str, np.ndarray]) -> None:
        """Take the learned arrays back (from :meth:`state`)."""

    def params_json(self) -> str:
        """The hyper-parameters as canonical JSON."""
        return json.dumps(asdict(self.params), sort_keys=True)

    @property
    def version(self) -> str:
        """``<kind>-<12 hex>``: a hash of kind, parameters and learned state."""
        digest = hashlib.sha256(f"{self.kind}\n{self.params_json()}".encode())
        for name, array in sorted(self.state().items()):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        return f"{self.kind}-{digest.hexdigest()[:12]}"

    def save(self, directory: str | Path) -> Path:
        """Write kind, parameters and state to ``directory/model.npz``; return that path."""
        path = Path(directory) / STATE_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as handle:
            arrays = {"__kind__": np.array(self.kind), "__params__": np.array(self.params_json()), **self.state()}
            np.savez(handle, **arrays)  # type: ignore[arg-type]  # numpy's stub types the keyword values loosely
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Read a model written by :meth:`save` (of this kind)."""
        with np.load(Path(directory) / STATE_FILE, allow_pickle=False) as data:
            kind = str(data["__kind__"])
            if kind != cls.kind:
                raise ValueError(f"{directory} holds a {kind!r} model, not {cls.kind!r}")
            model = cls(cls.Params(**json.loads(str(data["__params__"]))))
            model.restore({name: data[name] for name in data.files if not name.startswith("__")})
        return model
