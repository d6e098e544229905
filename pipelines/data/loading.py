"""Load a card's data (local files, Hub, or the bundled sample), check it, map labels to ids,
and carve missing splits. Returns a `DatasetDict` with the text columns and an int `label`."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets

from pipelines.card.cards import TaskCard
from pipelines.card.keys import SPLITS, LocalSource, SplitPolicy
from pipelines.card.schema import raw_key
from pipelines.data import readers
from pipelines.data.preprocess import StepContext, apply
from pipelines.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class LoadedData:
    """The prepared splits and where they came from (`kind` is local, hub or sample)."""

    splits: datasets.DatasetDict
    kind: str
    where: str
    notes: list[str] = field(default_factory=list)

    @property
    def is_sample(self) -> bool:
        return self.kind == "sample"


def load_splits(card: TaskCard, data_dir: str | Path | None = None, online: bool = False) -> LoadedData:
    """Load, preprocess, label-map and split a card's data; see the card schema for the rules."""
    loaded = _load_raw(card, data_dir, online)
    ctx = StepContext(text_columns=card.text_columns, label_column=card.label_column)
    raw: dict[str, datasets.Dataset] = {}
    for split, ds in loaded.splits.items():
        ds = _preprocess(ds, card, ctx, split, loaded.where)
        _check_columns(ds, card, split, loaded.where, labelled=split != "test")
        _check_texts(ds, card, split, loaded.where)
        ds = _map_labels(ds, card, split, loaded.where)
        if len(ds) == 0 and split == "test":
            _note(loaded.notes, f"split 'test' of {loaded.where} has no labelled rows left: skipped")
            continue
        if len(ds) == 0:
            raise DataError(f"split '{split}' of {loaded.where} is empty after preprocessing and `drop_labels`; "
                            f"check the file and {card.path.name}")
        raw[split] = ds
    loaded.splits = _carve_missing(raw, card, loaded.notes)
    return loaded


def _load_raw(card: TaskCard, data_dir: str | Path | None, online: bool) -> LoadedData:
    source = card.dataset
    if data_dir is not None:
        if not source.local:
            raise DataError(f"card {card.path.name} has no `dataset.local` section, so --data-dir cannot be used")
        return _load_local(card, Path(data_dir))
    if source.hub:
        try:
            return _load_hub(card, online)
        except DataError as err:
            reason = str(err)
    else:
        reason = f"card {card.path.name} has only a local source and no --data-dir was given"
    return _load_sample(card, reason)


def _load_local(card: TaskCard, data_dir: Path) -> LoadedData:
    spec = card.dataset.local
    if not data_dir.is_dir():
        raise DataError(
            f"--data-dir {data_dir} is not a directory; pass the folder holding {list(spec.files.values())}"
        )
    present = {split: data_dir / rel for split, rel in spec.files.items() if (data_dir / rel).is_file()}
    if not present:
        wanted = ", ".join(str(data_dir / rel) for rel in spec.files.values())
        raise DataError(
            f"no data file of card {card.path.name} found: expected {wanted}; check --data-dir or dataset.local.files"
        )
    splits = {split: readers.read_table(path, spec) for split, path in present.items()}
    missing = [s for s in spec.files if s not in present]
    notes = [f"{spec.files[s]} not found in {data_dir}: {_fate(s, card)}" for s in missing]
    for split, note in zip(missing, notes):
        # A missing optional test file changes nothing; a split we will carve deserves attention.
        log.log(logging.INFO if _fate(split, card) == "no test split" else logging.WARNING, note)
    return LoadedData(datasets.DatasetDict(splits), "local", str(data_dir), notes)


def _fate(split: str, card: TaskCard) -> str:
    if split == "test" and card.split.test == 0:
        return "no test split"
    return f"split '{split}' will be carved out of the others"


def _load_hub(card: TaskCard, online: bool) -> LoadedData:
    spec = card.dataset.hub
    where = spec.path + (f" ({spec.name})" if spec.name else "")
    try:
        with _hub_offline(not online):
            dsd = datasets.load_dataset(spec.path, spec.name, revision=spec.revision)
    except Exception as err:  # noqa: BLE001 - any failure to reach the Hub means: fall back
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        hint = "not in the local cache (offline; pass --online to download)" if not online else first
        raise DataError(f"Hub dataset {where} unavailable: {hint}") from None
    names = spec.splits or {s: s for s in SPLITS if s in dsd}
    splits = {}
    for ours, theirs in names.items():
        if theirs not in dsd:
            raise DataError(f"Hub dataset {where} has no split '{theirs}' (has {list(dsd)}); fix dataset.hub.splits")
        splits[ours] = _named_labels(dsd[theirs], card.label_column)
    splits = {k: readers.rename_columns(v, spec.rename or {}) for k, v in splits.items()}
    return LoadedData(datasets.DatasetDict(splits), "hub", where)


class _hub_offline:
    """Temporarily force datasets' offline mode so nothing downloads unless --online."""

    def __init__(self, offline: bool) -> None:
        self.offline = offline

    def __enter__(self) -> None:
        self.saved = datasets.config.HF_HUB_OFFLINE
        datasets.config.HF_HUB_OFFLINE = self.saved or self.offline

    def __exit__(self, *exc: object) -> None:
        datasets.config.HF_HUB_OFFLINE = self.saved


def _named_labels(ds: datasets.Dataset, column: str) -> datasets.Dataset:
    """Hub ClassLabel ints -> their names, so a card's label order never silently re-maps ids."""
    feature = ds.features.get(column)
    if not isinstance(feature, datasets.ClassLabel):
        return ds
    names = feature.names
    values = [names[v] if 0 <= v < len(names) else str(v) for v in readers.column(ds, column)]
    return ds.remove_columns(column).add_column(column, values)


def _load_sample(card: TaskCard, reason: str) -> LoadedData:
    path = card.sample_path
    if path is None:
        raise DataError(f"{reason}; card {card.path.name} bundles no sample: pass --data-dir with the task's files")
    ds = readers.read_table(path, LocalSource(format="jsonl", files={"train": path.name}, encoding="utf-8"))
    note = (
        f"USING THE BUNDLED {len(ds)}-ROW SAMPLE {path.name} INSTEAD OF THE REAL DATA ({reason}); "
        "metrics are NOT meaningful: pass --data-dir, or --online to download the Hub dataset"
    )
    log.warning(note)
    return LoadedData(datasets.DatasetDict({"train": ds}), "sample", str(path), [note])


def _preprocess(ds: datasets.Dataset, card: TaskCard, ctx: StepContext, split: str, where: str) -> datasets.Dataset:
    if not card.preprocess:
        return ds
    try:
        return ds.map(lambda b: apply(b, ctx, card.preprocess), batched=True, desc=f"preprocess {split}")
    except KeyError as err:
        raise DataError(
            f"preprocess step of card {card.path.name} needs column {err} missing from split '{split}' of {where}; "
            f"found {ds.column_names}"
        ) from None


def _check_columns(ds: datasets.Dataset, card: TaskCard, split: str, where: str, labelled: bool) -> None:
    expected = list(card.text_columns) + ([card.label_column] if labelled else [])
    missing = [c for c in expected if c not in ds.column_names]
    if missing:
        key = "label_column" if missing == [card.label_column] else "text_columns"
        raise DataError(
            f"split '{split}' of {where}: expected columns {expected}, found {ds.column_names}; "
            f"set `{key}` (or dataset.*.rename) in {card.path.name}"
        )


def _check_texts(ds: datasets.Dataset, card: TaskCard, split: str, where: str) -> None:
    for col in card.text_columns:
        bad = [i for i, v in enumerate(readers.column(ds, col)) if not isinstance(v, str) or not v.strip()]
        if bad:
            rows = ", ".join(str(i + 1) for i in bad[:5]) + (", ..." if len(bad) > 5 else "")
            raise DataError(
                f"split '{split}' of {where}: {len(bad)} row(s) with empty or missing text in column `{col}` "
                f"(data rows {rows}); fix the file or add `drop_empty` to `preprocess` in {card.path.name}"
            )


def _map_labels(ds: datasets.Dataset, card: TaskCard, split: str, where: str) -> datasets.Dataset:
    """Raw label values -> ids by the card's label order; dropped values remove their rows."""
    if card.label_column not in ds.column_names:
        return ds  # an unlabelled test split: predictions only
    lookup = _label_lookup(card)
    drop = set(card.drop_labels)
    keep, ids, unknown, empty = [], [], {}, []
    for i, value in enumerate(readers.column(ds, card.label_column)):
        key = raw_key(value)
        if key in drop:
            continue
        if value is None or not key.strip():
            empty.append(i + 1)
            continue
        if key not in lookup:
            unknown.setdefault(key, i + 1)
            continue
        keep.append(i)
        ids.append(lookup[key])
    if empty:
        rows = ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else "")
        raise DataError(
            f"split '{split}' of {where}: empty label in data row{'s' if len(empty) > 1 else ''} {rows} "
            f"(column `{card.label_column}`); fill {'them' if len(empty) > 1 else 'it'} in, or drop such rows with "
            f"`drop_empty: {{columns: [{card.label_column}]}}` in `preprocess` of {card.path.name}"
        )
    if unknown:
        shown = ", ".join(f"{k!r} (data row {r})" for k, r in list(unknown.items())[:5])
        raise DataError(
            f"split '{split}' of {where}: label value(s) {shown} in column `{card.label_column}` are not in the "
            f"card's labels {list(card.labels)}; add them to `labels` or `label_map`, or list them in `drop_labels` "
            f"of {card.path.name}"
        )
    if len(keep) < len(ds):
        ds = ds.select(keep)
    ds = ds.remove_columns(card.label_column)
    return ds.add_column("label", ids, feature=datasets.ClassLabel(names=list(card.labels)))


def _label_lookup(card: TaskCard) -> dict[str, int]:
    """Raw value -> id: explicit label_map first, then label names, then positions 0..n-1."""
    lookup = {str(i): i for i in range(len(card.labels))}
    lookup.update({name: i for i, name in enumerate(card.labels)})
    lookup.update({raw: card.labels.index(name) for raw, name in card.label_map.items()})
    return lookup


def _carve_missing(raw: dict[str, datasets.Dataset], card: TaskCard, notes: list[str]) -> datasets.DatasetDict:
    """Carve test, then validation, out of train (or out of whatever there is if train is missing)."""
    cfg = card.split
    if "train" not in raw:
        pool_from = list(raw)
        raw = {"train": datasets.concatenate_datasets([raw[s] for s in pool_from])}
        _note(notes, f"no train split: carving train/validation/test out of {pool_from}")
    if "test" not in raw and cfg.test > 0:
        raw["train"], raw["test"] = _split(raw["train"], cfg.test, cfg, "test", notes)
    if "validation" not in raw:
        raw["train"], raw["validation"] = _split(raw["train"], cfg.validation or 0.1, cfg, "validation", notes)
    return datasets.DatasetDict({s: raw[s] for s in SPLITS if s in raw})


def _split(ds: datasets.Dataset, ratio: float, cfg: SplitPolicy, name: str, notes: list[str]):
    if cfg.stratify:
        try:
            parts = ds.train_test_split(test_size=ratio, stratify_by_column="label", seed=cfg.seed)
            _note(notes, f"split '{name}' carved out of train: {ratio:.0%} stratified (seed {cfg.seed})")
            return parts["train"], parts["test"]
        except ValueError as err:
            _note(notes, f"stratified split for '{name}' impossible ({err}); using a random split")
    parts = ds.train_test_split(test_size=ratio, seed=cfg.seed)
    _note(notes, f"split '{name}' carved out of train: {ratio:.0%} random (seed {cfg.seed})")
    return parts["train"], parts["test"]


def _note(notes: list[str], text: str) -> None:
    log.info(text)
    notes.append(text)
