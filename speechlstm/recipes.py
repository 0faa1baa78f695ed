"""Recipes: how a model is made, as a TOML file (``recipes/*.toml``) that
``speechlstm recipe FILE --out-dir DIR`` runs from start to end.

A recipe is a list of stages run in order, each writing ``DIR/NAME.pt`` (or
``DIR/NAME-sSEED.pt`` for each of several ``seeds``)::

    [vars]                      # the inputs, by name: "{data}" below; --var data=PATH overrides
    data = "../shared/data/speech_commands_mini"

    [defaults.train.optim]      # config shared by every stage (merged under each stage's own)
    epochs = 60

    [[stage]]
    name = "commands12"
    kind = "train"              # train (default) | pretrain | calibrate
    data_dir = "{data}"         # a stage's inputs: vars and earlier stages' outputs ("{teacher}")
    [stage.train.augment]       # its config sections, as saved in the checkpoint
    speed = 0.1

Inputs of a ``train`` stage: ``data_dir``, ``talk_dir``, ``extra_data``, ``more_data``,
``init_from``, ``teachers``, ``mine_with``; config ``features``, ``model``, ``train``.
``pretrain``: ``corpus``, ``aligned``, ``noise_dir``; config ``features``, ``model``,
``pretrain``. ``calibrate``: ``checkpoint`` (several: each is calibrated and the best on
the validation recordings, by ``Limits.better``, is kept), ``audio``, ``labels``,
``speech_audio``, ``limits`` (``stream_eval.Limits`` fields). A reference to a stage with several seeds
stands for all of their files in a list (``teachers = ["{teacher}"]``).

A finished stage is skipped when run again with the same settings (``DIR/recipe-state.json``);
an interrupted one resumes. Under ``torchrun`` every process runs the stages and
rank 0 writes the files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .checkpoint import load_checkpoint, save_checkpoint
from .config import FeatureConfig, ModelConfig, from_dict, merge, to_dict
from .errors import ConfigError
from .loop import distributed, place
from .pretrain import PretrainConfig, pretrain
from .stream_eval import CORRECT, SPEECH_FALSE_ALARMS, WRONG, Limits, calibrate_file
from .train import TrainConfig, train

KINDS = ("train", "pretrain", "calibrate")
_INPUTS = {
    "train": {"data_dir": str, "talk_dir": str, "extra_data": list, "more_data": list, "init_from": str,
              "teachers": list, "mine_with": str},
    "pretrain": {"corpus": str, "aligned": str, "noise_dir": str},
    "calibrate": {"checkpoint": (str, list), "audio": list, "labels": list, "speech_audio": list},
}
_SECTIONS = {"train": ("features", "model", "train"), "pretrain": ("features", "model", "pretrain"),
             "calibrate": ("limits",)}
_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_-]*)\}")


@dataclass
class Stage:
    name: str
    kind: str
    seeds: list[int] | None  # None: one run, its config's own seed
    inputs: dict[str, Any]  # references still unresolved
    config: dict[str, Any]  # the sections, defaults merged in

    def outputs(self, out_dir: Path) -> list[Path]:
        if self.seeds is None:
            return [out_dir / f"{self.name}.pt"]
        return [out_dir / f"{self.name}-s{seed}.pt" for seed in self.seeds]


@dataclass
class Recipe:
    path: Path
    description: str
    vars: dict[str, str]
    stages: list[Stage] = field(default_factory=list)

    def stage(self, name: str) -> Stage:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(f"{self.path}: no stage {name!r}; stages: {', '.join(s.name for s in self.stages)}")


def load_recipe(path: str | os.PathLike, variables: dict[str, str] | None = None,
                overrides: dict[str, Any] | None = None) -> Recipe:
    """Read and check a recipe. ``variables`` replace its ``[vars]``; ``overrides`` (config
    sections, e.g. ``{"train": {"optim": {"epochs": 1}}}``) go on top of every stage's."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such recipe") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: not a valid TOML recipe: {e}") from None
    unknown = set(raw) - {"description", "vars", "defaults", "stage"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key(s) {', '.join(sorted(unknown))}")
    given = {**{k: str(v) for k, v in raw.get("vars", {}).items()}, **(variables or {})}
    recipe = Recipe(path, str(raw.get("description", "")), given)
    defaults = raw.get("defaults", {})
    for i, entry in enumerate(raw.get("stage", [])):
        recipe.stages.append(_stage(path, i, dict(entry), defaults, overrides or {}, recipe))
    if not recipe.stages:
        raise ConfigError(f"{path}: a recipe needs at least one [[stage]]")
    return recipe


def _stage(path: Path, i: int, entry: dict, defaults: dict, overrides: dict, recipe: Recipe) -> Stage:
    name, kind = entry.pop("name", None), entry.pop("kind", "train")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", name):
        raise ConfigError(f"{path}: stage {i + 1} needs a name of letters, digits, - and _")
    if kind not in KINDS:
        raise ConfigError(f"{path}: stage {name}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    if any(s.name == name for s in recipe.stages) or name in recipe.vars:
        raise ConfigError(f"{path}: the name {name!r} is used twice")
    seeds = entry.pop("seeds", None)
    if seeds is not None and (not isinstance(seeds, list) or not seeds or
                              not all(isinstance(s, int) for s in seeds)):
        raise ConfigError(f"{path}: stage {name}: seeds must be a list of integers")
    sections = {k: entry.pop(k) for k in _SECTIONS[kind] if k in entry}
    inputs = {k: entry.pop(k) for k in list(entry) if k in _INPUTS[kind]}
    if entry:
        raise ConfigError(f"{path}: stage {name} ({kind}): unknown key(s) {', '.join(sorted(entry))}; "
                          f"inputs: {', '.join(_INPUTS[kind])}; sections: {', '.join(_SECTIONS[kind])}")
    for key, value in inputs.items():
        want = _INPUTS[kind][key]
        if not isinstance(value, want):
            kinds = " or ".join(t.__name__ for t in (want if isinstance(want, tuple) else (want,)))
            raise ConfigError(f"{path}: stage {name}: {key} must be a {kinds}")
    wanted = {k: v for k, v in defaults.items() if k in _SECTIONS[kind]}
    config = merge(merge(wanted, sections), {k: v for k, v in overrides.items() if k in _SECTIONS[kind]})
    stage = Stage(name, kind, seeds, inputs, config)
    for ref in _references(inputs):  # only earlier stages and vars
        if ref not in recipe.vars and not any(s.name == ref for s in recipe.stages):
            raise ConfigError(f"{path}: stage {name} refers to {{{ref}}}: not a var or an earlier stage")
    configs(stage, seeds[0] if seeds else None)  # fail now on a bad setting, not hours later
    return stage


def _references(value: Any) -> list[str]:
    if isinstance(value, str):
        return _REF.findall(value)
    if isinstance(value, list):
        return [r for v in value for r in _references(v)]
    if isinstance(value, dict):
        return [r for v in value.values() for r in _references(v)]
    return []


def configs(stage: Stage, seed: int | None) -> dict[str, Any]:
    """The stage's config objects (checked), with ``seed`` set where it has several."""
    cfg = dict(stage.config)
    main = {"train": "train", "pretrain": "pretrain"}.get(stage.kind)
    if seed is not None and main:
        cfg[main] = merge(cfg.get(main, {}), {"optim": {"seed": seed}})
    kinds = {"features": FeatureConfig, "model": ModelConfig, "train": TrainConfig, "pretrain": PretrainConfig,
             "limits": Limits}
    try:
        return {k: from_dict(kinds[k], cfg.get(k)) for k in _SECTIONS[stage.kind]}
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"stage {stage.name}: {e}") from None


class Runner:
    """Runs a recipe's stages into ``out_dir``, skipping those already done."""

    def __init__(self, recipe: Recipe, out_dir: str | os.PathLike, *, device: str = "auto", progress: bool = True,
                 max_steps: int | None = None, log: Callable[[str], None] = print):
        self.recipe, self.out_dir = recipe, Path(out_dir)
        self.device, self.progress, self.max_steps, self.log = device, progress, max_steps, log
        self.state_file = self.out_dir / "recipe-state.json"

    def run(self, only: str | None = None) -> dict[str, list[Path]]:
        dist, _ = place(self.device)  # NCCL for GPUs, gloo for CPUs, before any stage
        stages = [self.recipe.stage(only)] if only else self.recipe.stages
        if dist.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        for stage in stages:
            for seed, out in zip(stage.seeds or [None], stage.outputs(self.out_dir)):
                dist.barrier()  # every rank sees the same files before it decides
                key, before = self._key(stage, seed), self._done().get(str(out))
                if before == key and out.is_file():
                    self.log(f"{stage.name}: {out} is done (same settings); skipped")
                    continue
                self.log(f"{stage.name} ({stage.kind}{f', seed {seed}' if seed is not None else ''}) -> {out}"
                         + (" (settings changed: from the start)" if before else ""))
                # an interrupted stage resumes; one finished with other settings starts again
                getattr(self, f"_{stage.kind}")(stage, seed, out, before is None)
                if dist.main:
                    self._mark_done(out, key)
        dist.barrier()
        return {s.name: s.outputs(self.out_dir) for s in stages}

    def resolve(self, value: Any) -> Any:
        """Vars and earlier stages' outputs in place of their references."""
        if isinstance(value, list):
            return [path for v in value for path in self.resolve_many(v)]
        many = self.resolve_many(value)
        if len(many) != 1:
            raise ConfigError(f"{value!r} names {len(many)} files (a stage with several seeds): use it in a list")
        return many[0]

    def resolve_many(self, text: str) -> list[str]:
        refs = _REF.findall(text)
        stages = [r for r in refs if r not in self.recipe.vars]
        if len(stages) > 1 or (stages and text != f"{{{stages[0]}}}"):
            raise ConfigError(f"{text!r}: a stage's output stands alone in its value")
        if stages:
            return [str(p) for p in self.recipe.stage(stages[0]).outputs(self.out_dir)]
        expanded = _REF.sub(lambda m: self.recipe.vars[m.group(1)], text)
        return [os.path.expandvars(os.path.expanduser(expanded))]

    def _inputs(self, stage: Stage) -> dict[str, Any]:
        return {k: self.resolve(v) for k, v in stage.inputs.items()}

    def _key(self, stage: Stage, seed: int | None) -> str:
        """What makes a stage's output what it is: its kind, resolved inputs and config."""
        made = {"kind": stage.kind, "inputs": self._inputs(stage),
                "config": {k: to_dict(v) if dataclasses.is_dataclass(v) else v
                           for k, v in configs(stage, seed).items()}}
        return hashlib.sha256(json.dumps(made, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def _done(self) -> dict[str, str]:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def _mark_done(self, out: Path, key: str) -> None:
        done = {**self._done(), str(out): key}
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(done, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.state_file)

    def _train(self, stage: Stage, seed: int | None, out: Path, resume: bool) -> None:
        cfg, inputs = configs(stage, seed), self._inputs(stage)
        if "data_dir" not in inputs:
            raise ConfigError(f"stage {stage.name}: a train stage needs data_dir")
        train(inputs.pop("data_dir"), out, cfg["train"], cfg["features"], cfg["model"], device=self.device,
              resume=resume, progress=self.progress, max_steps=self.max_steps,
              extra_data=tuple(inputs.pop("extra_data", ())), more_data=tuple(inputs.pop("more_data", ())),
              teachers=tuple(inputs.pop("teachers", ())), **inputs)

    def _pretrain(self, stage: Stage, seed: int | None, out: Path, resume: bool) -> None:
        cfg, inputs = configs(stage, seed), self._inputs(stage)
        missing = {"corpus", "aligned"} - set(inputs)
        if missing:
            raise ConfigError(f"stage {stage.name}: a pretrain stage needs {', '.join(sorted(missing))}")
        pretrain(inputs["corpus"], inputs["aligned"], out, cfg["pretrain"], cfg["features"], cfg["model"],
                 noise_dir=inputs.get("noise_dir"), device=self.device, resume=resume, progress=self.progress,
                 max_steps=self.max_steps)

    def _calibrate(self, stage: Stage, seed: int | None, out: Path, resume: bool) -> None:
        inputs = self._inputs(stage)
        if "checkpoint" not in inputs or not inputs.get("audio"):
            raise ConfigError(f"stage {stage.name}: a calibrate stage needs checkpoint and audio")
        if not distributed().main:  # one process is enough
            return
        candidates = inputs["checkpoint"] if isinstance(inputs["checkpoint"], list) else [inputs["checkpoint"]]
        limits, best = configs(stage, seed)["limits"], None
        for candidate in candidates:  # each calibrated; the best on the validation recordings is kept
            cal = out.with_name(f"{out.stem}.{Path(candidate).stem}.pt") if len(candidates) > 1 else out
            result = calibrate_file(candidate, inputs["audio"], inputs.get("labels", []),
                                    inputs.get("speech_audio", []), cal, limits, device="cpu",
                                    progress=self.progress)
            self.log(f"{stage.name}: {Path(candidate).name} on validation: " + ", ".join(
                f"{k} {result['validation'][k]}" for k in (CORRECT, WRONG, SPEECH_FALSE_ALARMS)
                if k in result["validation"]))
            if best is None or limits.better(result["validation"], best[1]):
                best = (cal, result["validation"], candidate)
        if len(candidates) > 1:
            chosen = load_checkpoint(best[0])
            chosen.provenance["chosen_on_validation_from"] = [str(Path(c).resolve()) for c in candidates]
            save_checkpoint(chosen, out)
            self.log(f"{stage.name}: kept {Path(best[2]).name} (best on the validation recordings) -> {out}")


def parse_assignments(items: list[str] | None, what: str) -> dict[str, Any]:
    """``["train.optim.lr=1e-3", ...]`` -> nested dict (values are JSON, else strings)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        parts = key.split(".")
        if not sep or not all(parts):
            raise ConfigError(f"{what} {item!r}: expected KEY=VALUE (SECTION.KEY=VALUE for config)")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw  # a bare string such as meanmax
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out
