"""LightGBM LambdaRank over candidate features: one list per user, relevance = a later positive answer.

Training holds out a seeded ``valid_fraction`` of the users (whole lists) for early stopping on
NDCG@``eval_at``. One thread and LightGBM's deterministic mode, so a seed gives the same trees.
Saved as LightGBM's own text model plus a JSON header (no pickle); :attr:`Reranker.version` is
a hash of both.
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

MODEL_FILE = "ranker.txt"
HEADER_FILE = "ranker.json"


@dataclass(frozen=True)
class RerankerParams:
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 200
    feature_fraction: float = 0.8
    lambda_l2: float = 10.0
    max_rounds: int = 1000
    early_stopping_rounds: int = 100
    valid_fraction: float = 0.2
    eval_at: int = 10
    seed: int = 42


@dataclass(frozen=True)
class TrainingReport:
    lists: int
    rows: int
    positives: int
    best_iteration: int
    valid_ndcg: float


def validation_rows(user_ids: np.ndarray, labels: np.ndarray, params: RerankerParams) -> np.ndarray:
    """Mask of the rows of the seeded ``valid_fraction`` of users (with a positive) held out for early stopping."""
    frame = pd.DataFrame({"user": np.asarray(user_ids, dtype=str), "label": np.asarray(labels, dtype=np.float64)})
    best = frame.groupby("user")["label"].max()
    users = np.sort(best[best > 0].index.to_numpy(str))
    n_valid = max(1, round(params.valid_fraction * len(users))) if len(users) else 0
    chosen = np.random.default_rng(params.seed).choice(users, size=n_valid, replace=False)
    return frame["user"].isin(chosen).to_numpy()


class Reranker:
    """A trained LambdaRank booster with its feature names and settings (e.g. the chosen diversity weight)."""

    kind = "lambdarank"

    def __init__(self, model_text: str, params: RerankerParams, settings: dict[str, Any]) -> None:
        self.model_text = model_text
        self.booster = lgb.Booster(model_str=model_text)
        self.params = params
        self.settings = settings
        self._local = threading.local()

    @property
    def feature_names(self) -> list[str]:
        return list(self.booster.feature_name())

    @classmethod
    def fit(
        cls, features: pd.DataFrame, labels: np.ndarray, groups: np.ndarray, users: np.ndarray, params: RerankerParams
    ) -> tuple[Reranker, TrainingReport]:
        """Train on rows in lists ``groups`` (contiguous; a user may have several lists); lists
        without a relevant row are left out (they carry no ranking signal). Early stopping holds
        out whole users (:func:`validation_rows`). Raises ``ValueError`` with fewer than two useful lists."""
        valid = validation_rows(users, labels, params)
        frame = features.assign(_user=np.asarray(groups, dtype=str), _label=np.asarray(labels, dtype=np.float64))
        useful = (frame.groupby("_user", sort=False)["_label"].transform("max") > 0).to_numpy()
        if frame.loc[useful, "_user"].nunique() < 2:
            raise ValueError("the re-ranker needs at least two users with a later answer among their candidates")
        is_valid = valid[useful]
        frame = frame[useful]
        users = frame["_user"].drop_duplicates().to_numpy()
        names = list(features.columns)

        def dataset(part: pd.DataFrame, reference: lgb.Dataset | None = None) -> lgb.Dataset:
            groups = part.groupby("_user", sort=False).size().to_numpy()
            return lgb.Dataset(
                part[names], label=part["_label"], group=groups, reference=reference, free_raw_data=False
            )

        train_set = dataset(frame[~is_valid])
        valid_set = dataset(frame[is_valid], train_set)
        booster = lgb.train(
            {
                "objective": "lambdarank",
                "metric": "ndcg",
                "eval_at": [params.eval_at],
                "learning_rate": params.learning_rate,
                "num_leaves": params.num_leaves,
                "min_child_samples": params.min_child_samples,
                "feature_fraction": params.feature_fraction,
                "lambda_l2": params.lambda_l2,
                "seed": params.seed,
                "deterministic": True,
                "force_row_wise": True,
                "num_threads": 1,
                "verbosity": -1,
            },
            train_set,
            num_boost_round=params.max_rounds,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
        )
        best = int(booster.best_iteration or params.max_rounds)
        report = TrainingReport(
            lists=len(users),
            rows=len(frame),
            positives=int(frame["_label"].gt(0).sum()),
            best_iteration=best,
            valid_ndcg=float(booster.best_score["valid_0"][f"ndcg@{params.eval_at}"]),
        )
        return cls(str(booster.model_to_string(num_iteration=best)), params, {}), report

    def predict(self, features: pd.DataFrame) -> np.ndarray:
        """Scores (higher is better) of feature rows with this model's columns, on one thread.

        Each calling thread predicts with its own booster: calls on one LightGBM booster from
        several threads race in the predictor's set-up (LightGBM issue #6142), so threads
        re-ranking batches side by side each load the model once."""
        names = self.feature_names
        rows = features if list(features.columns) == names else features[names]
        booster = getattr(self._local, "booster", None)
        if booster is None:
            booster = self._local.booster = lgb.Booster(model_str=self.model_text)
        return np.asarray(booster.predict(rows.to_numpy(np.float64), num_threads=1))

    def importance(self) -> dict[str, float]:
        """Total gain per feature, largest first, rounded."""
        gains = self.booster.feature_importance(importance_type="gain")
        pairs = sorted(zip(self.feature_names, gains, strict=True), key=lambda p: (-p[1], p[0]))
        return {name: round(float(gain), 2) for name, gain in pairs}

    def _header(self) -> str:
        return json.dumps({"kind": self.kind, "params": asdict(self.params), "settings": self.settings}, sort_keys=True)

    @property
    def version(self) -> str:
        digest = hashlib.sha256(f"{self._header()}\n{self.model_text}".encode()).hexdigest()
        return f"{self.kind}-{digest[:12]}"

    def save(self, directory: str | Path) -> Path:
        """Write the model and its header to ``directory``; returns the model file's path."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / HEADER_FILE).write_text(self._header())
        (path / MODEL_FILE).write_text(self.model_text)
        return path / MODEL_FILE

    @classmethod
    def load(cls, directory: str | Path) -> Reranker:
        path = Path(directory)
        header = json.loads((path / HEADER_FILE).read_text())
        if header.get("kind") != cls.kind:
            raise ValueError(f"{directory} holds a {header.get('kind')!r} model, not {cls.kind!r}")
        return cls((path / MODEL_FILE).read_text(), RerankerParams(**header["params"]), header["settings"])
