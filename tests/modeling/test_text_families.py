"""The text side of every open_clip tower family (docs/open_vocabulary.md §13): TextClassifier's
embeddings equal ``open_clip.create_model(name).encode_text(tokenizer(prompt))`` of tiny configs
(random weights) of each family, checkpoint logit scale and bias, Hugging Face tokenizers from a
local directory and the error when the hub cannot be reached."""
import io
import json
import math
import os
import runpy
import subprocess
import sys
from contextlib import redirect_stdout

import huggingface_hub
import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
import transformers
from open_clip.tokenizer import HFTokenizer
from tokenizers import Tokenizer, models, pre_tokenizers, processors

from clipself.modeling import HubUnavailableError, TextClassifier, build_text_tower

from tests.modeling.tiny_towers import randomize

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOOL = os.path.join(ROOT, "tools", "dump_text_embeddings.py")

#: the words of the tiny Hugging Face tokenizer (anything else is <unk>)
WORDS = ["<pad>", "</s>", "<unk>", "a", "an", "photo", "of", "the", "this", "is", "there", "in",
         "scene", "cat", "dog", "traffic", "light", "background", "sofa", "couch"]
# lower case: TextClassifier lower-cases class names (format_class_name)
PROMPTS = ["a photo of a cat.", "there is the dog in the scene", "a photo of a traffic light."]
SIGLIP2 = "timm/ViT-B-16-SigLIP2"

VISION = {"image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16}
BPE_TEXT = {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}


def _siglip_text(tokenizer, **extra):
    """SigLIP's text_cfg (ViT-B-16-SigLIP2), shrunk: context 64, no causal mask, last-token
    pool, projection bias, canonicalising tokenizer."""
    return dict({"context_length": 64, "vocab_size": len(WORDS), "width": 32, "heads": 2,
                 "layers": 1, "hf_tokenizer_name": tokenizer,
                 "tokenizer_kwargs": {"clean": "canonicalize"}, "no_causal_mask": True,
                 "proj_bias": True, "pool_type": "last", "norm_kwargs": {"eps": 1e-6}}, **extra)


def _configs(tokenizer_dir, hf_model_dir):
    """One tiny config per text family; the vision tower (irrelevant here) is a tiny ViT."""
    def cfg(text, **top):
        return dict({"embed_dim": 16, "vision_cfg": VISION, "text_cfg": text}, **top)

    return {
        # flat open_clip CLIP (OpenAI, LAION OpenCLIP), OpenAI BPE, causal mask, argmax pool
        "openai": cfg(BPE_TEXT),
        "quickgelu": cfg(BPE_TEXT, quick_gelu=True),
        # custom-text models: text.* keys (EVA-CLIP, ViTamin)
        "eva": cfg(BPE_TEXT, custom_text=True),
        # MobileCLIP(2)-S*: no causal mask
        "mobileclip": cfg(dict(BPE_TEXT, no_causal_mask=True), custom_text=True),
        # PE-Core: context 32
        "pe": cfg(dict(BPE_TEXT, context_length=32), custom_text=True),
        # CoCa: appended class token, (latent, tokens) output; multimodal decoder beside it
        "coca": cfg(dict(BPE_TEXT, embed_cls=True, output_tokens=True), custom_text=True,
                    multimodal_cfg=dict(BPE_TEXT, attn_pooler_heads=2)),
        # SigLIP / SigLIP2: Hugging Face tokenizer, sigmoid logit bias
        "siglip": cfg(_siglip_text(tokenizer_dir), custom_text=True, init_logit_bias=-10),
        "siglip2": cfg(_siglip_text(tokenizer_dir, act_kwargs={"approximate": "tanh"}),
                       custom_text=True, init_logit_bias=-10),
        # CLIPA: flat CLIP with a BERT-style tokenizer whose [SEP] is stripped
        "clipa": cfg({"context_length": 32, "vocab_size": len(WORDS), "width": 32, "heads": 2,
                      "layers": 1, "hf_tokenizer_name": tokenizer_dir,
                      "tokenizer_kwargs": {"strip_sep_token": True}, "pool_type": "last",
                      "no_causal_mask": True}),
        # worldwide (MetaCLIP 2): Hugging Face tokenizer, pooled at the EOS id
        "worldwide": cfg({"context_length": 16, "vocab_size": len(WORDS), "width": 32,
                          "heads": 2, "layers": 1, "hf_tokenizer_name": tokenizer_dir,
                          "pool_type": "eos", "eos_id": WORDS.index("</s>")}),
        # a transformers text model (RoBERTa, XLM-R, mT5, NLLB towers): here a tiny BERT whose
        # config.json lies in a local folder
        "hf-text": cfg({"hf_model_name": hf_model_dir, "hf_tokenizer_name": tokenizer_dir,
                        "hf_pooler_type": "mean_pooler", "hf_proj_type": "mlp",
                        "context_length": 16}, custom_text=True),
    }


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    """A tiny Hugging Face tokenizer (word level, "</s>" appended, "<pad>" padding) saved the way
    ``hf download`` leaves one: a directory with tokenizer.json and tokenizer_config.json."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", special_tokens=[("</s>", WORDS.index("</s>"))])
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        sep_token="</s>")
    path = str(tmp_path_factory.mktemp("hf_tokenizer"))
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def families(tokenizer_dir, tmp_path_factory):
    """{family: registered open_clip model name} of the tiny configs."""
    folder = tmp_path_factory.mktemp("text_family_configs")
    hf_model_dir = str(tmp_path_factory.mktemp("hf_text_model"))
    transformers.BertConfig(vocab_size=len(WORDS), hidden_size=32, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=64,
                            max_position_embeddings=32).save_pretrained(hf_model_dir)
    names = {}
    for family, cfg in _configs(tokenizer_dir, hf_model_dir).items():
        names[family] = f"tiny-text-{family}"
        (folder / f"{names[family]}.json").write_text(json.dumps(cfg))
    # the SigLIP2 config as shipped: its tokenizer lives on the hub
    (folder / "tiny-text-siglip2-hub.json").write_text(json.dumps(dict(
        _configs(tokenizer_dir, hf_model_dir)["siglip2"], text_cfg=_siglip_text(SIGLIP2))))
    open_clip.add_model_config(str(folder))
    return names


def _checkpoint(name, path, scale=2.5, bias=-3.25):
    """A randomly initialised open_clip model of ``name`` (perturbed, logit scale and bias set)
    and the file of its full state dict."""
    torch.manual_seed(0)
    # pretrained_text=False: a transformers text tower is built from its config, not downloaded
    model = randomize(open_clip.create_model(name, pretrained_text=False).eval(), std=0.02)
    with torch.no_grad():
        model.logit_scale.fill_(scale)
        if model.logit_bias is not None:
            model.logit_bias.fill_(bias)
    torch.save(model.state_dict(), path)
    return model


def _reference(model, tokenizer, prompts=PROMPTS):
    with torch.no_grad():
        return F.normalize(model.encode_text(tokenizer(prompts)).float(), dim=-1)


def _embed_prompts(clf, prompts=PROMPTS):
    """TextClassifier's unit embeddings of whole prompts (template "{}", no "This is ")."""
    return torch.cat([clf.embed_per_template([p], ["{}"])[:, 0] for p in prompts])


@pytest.mark.parametrize("family", ["openai", "quickgelu", "eva", "mobileclip", "pe", "coca",
                                    "siglip", "siglip2", "clipa", "worldwide", "hf-text"])
def test_embeddings_equal_open_clip_encode_text(family, families, tmp_path):
    name = families[family]
    path = str(tmp_path / "model.pt")
    model = _checkpoint(name, path)
    clf = TextClassifier(name, pretrained=path, templates="single")
    want = _reference(model, open_clip.get_tokenizer(name))
    torch.testing.assert_close(_embed_prompts(clf), want, atol=2e-5, rtol=1e-5)
    assert clf.load_report.ok, clf.load_report
    assert clf.logit_scale == pytest.approx(math.exp(2.5))
    sigmoid = family.startswith("siglip")
    assert clf.logit_bias == (pytest.approx(-3.25) if sigmoid else None)
    ignored = set(clf.load_report.ignored)
    assert "logit_scale" in ignored and ("logit_bias" in ignored) == sigmoid
    if family == "coca":
        assert any(k.startswith("text_decoder.") for k in ignored)


def test_family_tokenizers(families):
    """Each family gets its own tokenizer and context length from its config."""
    for family, ctx in (("openai", 16), ("pe", 32), ("siglip2", 64), ("clipa", 32)):
        _, tok = build_text_tower(families[family])
        assert tok("a photo of a cat.").shape == (1, ctx), family
    _, tok = build_text_tower(families["siglip2"])
    ids = tok(["A photo of a CAT!"])[0].tolist()  # canonicalised: lower case, no punctuation
    assert ids[:6] == [WORDS.index(w) for w in ["a", "photo", "of", "a", "cat", "</s>"]]
    assert set(ids[6:]) == {WORDS.index("<pad>")}


def test_random_weights_use_open_clip_initial_logit_params(families):
    clip = TextClassifier(families["openai"])
    assert clip.logit_scale == pytest.approx(1 / 0.07) and clip.logit_bias is None
    siglip = TextClassifier(families["siglip"])
    assert siglip.logit_bias == pytest.approx(-10.0)


def test_local_tokenizer_directory_for_a_hub_tokenizer(families, tokenizer_dir, tmp_path):
    """The shipped SigLIP2 config names timm/ViT-B-16-SigLIP2; tokenizer=DIR replaces the hub."""
    name = families["siglip2"] + "-hub"
    path = str(tmp_path / "siglip2.pt")
    model = _checkpoint(name, path)
    clf = TextClassifier(name, pretrained=path, templates="single", tokenizer=tokenizer_dir)
    ref_tok = HFTokenizer(tokenizer_dir, context_length=64, clean="canonicalize")
    torch.testing.assert_close(_embed_prompts(clf), _reference(model, ref_tok), atol=2e-5,
                               rtol=1e-5)
    # a tokenizer object is used as it is
    obj = TextClassifier(name, pretrained=path, templates="single", tokenizer=ref_tok)
    torch.testing.assert_close(_embed_prompts(obj), _embed_prompts(clf))
    with pytest.raises(FileNotFoundError, match="no such directory.*ViT-B-16-SigLIP2"):
        build_text_tower(name, tokenizer=str(tmp_path / "missing"))


def test_cache_keeps_logit_params_and_tokenizer(families, tokenizer_dir, tmp_path):
    name = families["siglip2"] + "-hub"
    path = str(tmp_path / "siglip2.pt")
    _checkpoint(name, path)
    cache = str(tmp_path / "cache")
    first = TextClassifier(name, pretrained=path, tokenizer=tokenizer_dir, cache_dir=cache)
    emb = first(["cat", "dog"])
    again = TextClassifier(name, pretrained=path, tokenizer=tokenizer_dir, cache_dir=cache)
    again._load_model = lambda: (_ for _ in ()).throw(AssertionError("cache miss"))
    torch.testing.assert_close(again(["cat", "dog"]), emb)
    assert again.logit_scale == pytest.approx(math.exp(2.5))
    assert again.logit_bias == pytest.approx(-3.25)
    # a tokenizer object has no stable identity: never cached
    obj = TextClassifier(name, pretrained=path, tokenizer=first._tokenizer, cache_dir=cache)
    assert obj.cache_key(["cat"], False) is None


def test_hub_tokenizer_offline_error(families, monkeypatch):
    """Without the hub the error names the tokenizer and how to give it from a directory."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import
    with pytest.raises(HubUnavailableError) as err:
        TextClassifier(families["siglip2"] + "-hub")(["cat"])
    msg = str(err.value)
    assert SIGLIP2 in msg and "tokenizer=DIR" in msg and "--tokenizer DIR" in msg
    assert f"hf download {SIGLIP2} --include" in msg and "--local-dir" in msg


def _dump(argv):
    with redirect_stdout(io.StringIO()) as out:
        assert runpy.run_path(TOOL)["main"](argv) == 0
    return out.getvalue()


@pytest.mark.parametrize("family", ["siglip2", "pe"])
def test_dump_tool(family, families, tokenizer_dir, tmp_path):
    """tools/dump_text_embeddings.py for a SigLIP2-like config (JSON file whose tokenizer is on
    the hub, given with --tokenizer) and a PE-Core-like one (context 32)."""
    name = families[family] + ("-hub" if family == "siglip2" else "")
    ckpt = str(tmp_path / "model.pt")
    _checkpoint(name, ckpt)
    cfg_path = tmp_path / "model.json"
    cfg_path.write_text(json.dumps(open_clip.get_model_config(name)))
    names = ["cat", ["sofa", "couch"], "traffic_light"]
    (tmp_path / "names.json").write_text(json.dumps(names))
    tok = ["--tokenizer", tokenizer_dir] if family == "siglip2" else []
    out = str(tmp_path / "emb.npy")
    printed = _dump(["--model", str(cfg_path), "--pretrained", ckpt, "--names",
                     str(tmp_path / "names.json"), "--templates", "single", "--output", out,
                     *tok])
    arr = torch.from_numpy(np.load(out))
    assert arr.shape == (4, 16) and arr.dtype == torch.float32
    torch.testing.assert_close(arr.norm(dim=1), torch.ones(4))
    want = TextClassifier(str(cfg_path), pretrained=ckpt, templates="single",
                          tokenizer=tok[1] if tok else None)(names, background=True)
    torch.testing.assert_close(arr, want)
    assert "logit_scale 12.18" in printed
    assert ("logit_bias -3.25 (sigmoid scores)" in printed) == (family == "siglip2")


def test_dump_tool_offline_error(families, tmp_path):
    """A fresh process with HF_HUB_OFFLINE=1 and no --tokenizer: exit status 1, the message names
    the tokenizer and --tokenizer."""
    cfg_path = tmp_path / "siglip2.json"
    cfg_path.write_text(json.dumps(open_clip.get_model_config(families["siglip2"] + "-hub")))
    (tmp_path / "names.json").write_text(json.dumps(["cat"]))
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, TOOL, "--model", str(cfg_path), "--names", str(tmp_path / "names.json"),
         "--output", str(tmp_path / "out.pt")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert SIGLIP2 in proc.stderr and "--tokenizer DIR" in proc.stderr
    assert not os.path.exists(tmp_path / "out.pt")
