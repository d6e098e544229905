"""What a hyperparameter search leaves in its output directory, rebuilt from the study each time (so
a continued search reports every trial): trials.csv and trials.md, search_history.png,
search_importance.png, best_defaults.yaml (a card `defaults:` snippet) and search.json."""

from __future__ import annotations

import csv
import logging
import warnings
from pathlib import Path
from typing import Any

import yaml

from pipelines.card.cards import TaskCard
from pipelines.card.search_space import Param
from pipelines.reporting import staging, tables

log = logging.getLogger(__name__)


def rounded(params: dict[str, Any]) -> dict[str, Any]:
    """Floats to 4 significant digits: what the snippet says and the final model trains with."""
    return {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in params.items()}


def trial_rows(study: Any, select_by: str, space: dict[str, Param]) -> list[dict[str, Any]]:
    """One row per trial: number, state, settings, seed, best score and its epoch, evaluations, time."""
    rows = []
    for t in study.trials:
        params = rounded(t.params)
        rows.append({
            "trial": t.number, "state": t.state.name.lower(), **{name: params.get(name, "") for name in space},
            "seed": t.user_attrs.get("seed", ""), f"best_{select_by}": t.value if t.value is not None else "",
            "best_epoch": t.user_attrs.get("best_epoch", ""), "evaluations": t.user_attrs.get("evaluations", ""),
            "time_s": t.user_attrs.get("time_s", ""), "pruned": "yes" if t.state.name == "PRUNED" else "no",
        })
    return rows


def snippet(card: TaskCard, best: dict[str, Any], counts: dict[str, int], model: str | None = None) -> str:
    """The card's settings for the searched model (its `model_defaults:` entry `model` if it has one,
    else `defaults:`) with the best trial's settings in place, as YAML to paste."""
    section = card.model_defaults.get(model) if model else None
    where, indent = (f"model_defaults.{model}", "    ") if section is not None else ("defaults", "  ")
    merged = {**(section if section is not None else card.defaults), **best["params"]}
    lines = [f"# Best of {counts['finished']} finished trial(s) ({counts['pruned']} pruned) of a search on "
             f"{card.name}: trial {best['trial']}, validation {card.select_by} {best['value']:.4f} at epoch "
             f"{best['epoch']} (seed {best['seed']}).",
             f"# Paste over the card's `{where}:`; searched values are rounded to 4 significant digits."]
    lines += ["model_defaults:", f"  {model}:"] if section is not None else ["defaults:"]
    for key, value in merged.items():
        line = yaml.safe_dump({key: value}, default_flow_style=False, sort_keys=False).strip()
        lines.append(f"{indent}{line}" + ("  # searched" if key in best["params"] else ""))
    return "\n".join(lines) + "\n"


def importances(study: Any) -> dict[str, float]:
    """Parameter importances by Optuna's default evaluator (PED-ANOVA in Optuna 5) over the complete
    trials; empty with fewer than two. With a handful of trials they are a hint, not a finding."""
    import optuna

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(complete) < 2:
        return {}
    try:
        with warnings.catch_warnings():  # "importances will be equal" when every trial scored the same
            warnings.simplefilter("ignore", UserWarning)
            return dict(optuna.importance.get_param_importances(study))
    except (ValueError, RuntimeError) as err:  # e.g. every complete trial had the same settings
        log.info("search: no parameter importances (%s)", err)
        return {}


def write_report(study: Any, out: Path, card: TaskCard, space: dict[str, Param],
                 model: str | None = None) -> dict[str, Any]:
    """Write every search artefact into `out` (staged, then moved into place); returns search.json.
    `model`: the card's `model_defaults:` key of the searched model, if it has one, for the settings snippet."""
    rows = trial_rows(study, card.select_by, space)
    counts = {state: sum(r["state"] == state for r in rows) for state in ("complete", "pruned", "fail")}
    counts["finished"] = counts["complete"] + counts["pruned"]
    best = _best(study)
    weights = importances(study)
    stage = staging.staging_dir(out)
    _write_csv(stage / "trials.csv", rows)
    shown = [{k: f"{v:.4g}" if k in space and isinstance(v, float) else v for k, v in r.items()} for r in rows]
    head = (f"Best: trial {best['trial']}, validation {card.select_by} {best['value']:.4f} at epoch {best['epoch']}"
            if best else "No trial finished with a score yet.")
    (stage / "trials.md").write_text(
        f"# Search on {card.name}: {counts['finished']} finished trial(s), {counts['pruned']} pruned\n\n{head}\n\n"
        + tables.markdown_table(shown) + "\n", encoding="utf-8")
    plot_history(rows, card.select_by, study.direction.name.lower(), stage / "search_history.png")
    plot_importance(rows, card.select_by, weights, space, stage / "search_importance.png")
    if best:
        (stage / "best_defaults.yaml").write_text(snippet(card, best, counts, model), encoding="utf-8")
    summary = {"task": card.name, "select_by": card.select_by, "direction": study.direction.name.lower(),
               "trials": counts, "space": {name: p.describe() for name, p in space.items()},
               "best": best, "importance": weights}
    tables.write_json(stage / "search.json", summary)
    staging.move_into(stage, out, last="search.json")  # a search folder is not a run: no manifest
    if best:
        log.info("search: best trial %d, validation %s %.4f at epoch %s with %s; snippet in %s", best["trial"],
                 card.select_by, best["value"], best["epoch"], best["params"], out / "best_defaults.yaml")
    return summary


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(rows: list[dict[str, Any]], select_by: str, direction: str, path: Path) -> None:
    """Each trial's best validation score (pruned ones marked), and the best so far."""
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    key = f"best_{select_by}"
    scored = [r for r in rows if r[key] != ""]
    fig, ax = plt.subplots(figsize=(7, 4))
    for state, marker, color in (("complete", "o", "tab:blue"), ("pruned", "x", "tab:gray")):
        points = [(r["trial"], r[key]) for r in scored if r["state"] == state]
        if points:
            ax.scatter(*zip(*points), marker=marker, color=color, label=state, zorder=3)
    best, line = None, []
    for r in (r for r in scored if r["state"] == "complete"):
        better = best is None or (r[key] > best if direction == "maximize" else r[key] < best)
        best = r[key] if better else best
        line.append((r["trial"], best))
    if line:
        ax.step(*zip(*line), where="post", color="tab:green", label="best so far")
    ax.set(xlabel="trial", ylabel=f"validation {select_by} (best epoch)", title=f"Search: {select_by} per trial")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_importance(rows: list[dict[str, Any]], select_by: str, weights: dict[str, float],
                    space: dict[str, Param], path: Path) -> None:
    """Parameter importances, and the score against each of the (up to) two most important settings."""
    plt = _pyplot()
    top = list(weights)[:2] if weights else list(space)[:2]
    fig, axes = plt.subplots(1, 1 + len(top), figsize=(4.5 * (1 + len(top)), 4), squeeze=False)
    bars = axes[0][0]
    if weights:
        names = list(weights)[::-1]
        bars.barh(names, [weights[n] for n in names], color="tab:blue")
        bars.set(xlabel="importance (Optuna)", title="Parameter importance")
    else:
        bars.text(0.5, 0.5, "importances need two\ncomplete trials", ha="center", va="center")
        bars.set_axis_off()
    key = f"best_{select_by}"
    for ax, name in zip(axes[0][1:], top):
        points = [(r[name], r[key]) for r in rows if r[key] != "" and r[name] != ""]
        if points:
            ax.scatter(*zip(*points), color="tab:blue")
        if space[name].log:
            from matplotlib.ticker import NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # the minor labels overlap on a short range
        ax.set(xlabel=name, ylabel=f"validation {select_by}", title=f"{select_by} vs {name}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _best(study: Any) -> dict[str, Any] | None:
    if not any(t.state.name == "COMPLETE" for t in study.trials):
        return None
    trial = study.best_trial
    return {"trial": trial.number, "value": trial.value, "epoch": trial.user_attrs.get("best_epoch"),
            "seed": trial.user_attrs.get("seed"), "params": rounded(trial.params)}


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(rows[0]) if rows else ["trial", "state"]
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
