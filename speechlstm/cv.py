"""Speaker k-fold cross-validation of a recipe: choose settings on every dev speaker, not on one
small validation list.

``cross_validate("recipes/commands12.toml", "runs/cv", folds=5)`` runs the whole recipe once a
fold into ``runs/cv/fold-K/`` with ``train.sampling.folds/fold`` set (each fold validates on the
dataset's training and validation speakers whose hash falls in it, and trains on the rest; the
testing split is never touched), reads the validation figures of each fold's final checkpoint(s)
and writes their mean, spread and range to ``runs/cv/cv.json``. A choice is made on those, never on
a test set; the shipped model is then trained on every dev speaker (``train.sampling.dev_all`` with
``train.optim.keep = "last"``: the fixed schedule the folds chose). A recipe written that way is
cross-validated as it stands: each fold turns ``dev_all`` off and keeps its best epoch on its held-out
speakers (what ``best_epoch`` reports)."""

from __future__ import annotations

import json
import os
import statistics
from pathlib import Path
from typing import Any, Callable

from .checkpoint import load_checkpoint
from .config import merge
from .errors import ConfigError
from .recipes import Runner, load_recipe

FIGURES = ("val_acc", "val_unknown_recall", "best_epoch")  # what each fold's checkpoint says of its held-out speakers


def summarize(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per figure: mean, sample standard deviation, min and max over the folds' rows."""
    out = {}
    for key in FIGURES:
        values = [float(r[key]) for r in rows if r.get(key) is not None]
        if values:
            out[key] = {"mean": round(statistics.fmean(values), 4),
                        "sd": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0,
                        "min": round(min(values), 4), "max": round(max(values), 4), "n": len(values)}
    return out


def cross_validate(recipe_path: str | os.PathLike, out_dir: str | os.PathLike, folds: int = 5, *,
                   variables: dict[str, str] | None = None, overrides: dict[str, Any] | None = None,
                   device: str = "auto", progress: bool = True, max_steps: int | None = None,
                   log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the recipe over ``folds`` speaker folds; returns (and writes to ``out_dir/cv.json``)
    ``{"recipe", "folds", "rows": [{fold, file, val_acc, ...}], "summary": summarize(rows)}``.
    A fold already done is skipped (the recipe's own state file), so an interrupted run resumes."""
    if folds < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {folds}")
    out_dir = Path(out_dir)
    rows = []
    for k in range(folds):
        fold = {"train": {"sampling": {"folds": folds, "fold": k, "dev_all": False}, "optim": {"keep": "best"}}}
        recipe = load_recipe(recipe_path, variables, merge(overrides or {}, fold))
        log(f"fold {k + 1}/{folds} -> {out_dir / f'fold-{k}'}")
        done = Runner(recipe, out_dir / f"fold-{k}", device=device, progress=progress, max_steps=max_steps,
                      log=log).run()
        for path in done[recipe.stages[-1].name]:
            metrics = load_checkpoint(path).metrics
            rows.append({"fold": k, "file": str(path), **{key: metrics.get(key) for key in FIGURES}})
    result = {"recipe": str(recipe_path), "folds": folds, "overrides": overrides or {}, "rows": rows,
              "summary": summarize(rows)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "cv.json").write_text(json.dumps(result, indent=1) + "\n")
    return result
