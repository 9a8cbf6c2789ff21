import io
import json
import os
import runpy
from contextlib import redirect_stdout

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipself.modeling import (
    VILD_TEMPLATES,
    TextClassifier,
    class_prompts,
    format_class_name,
    get_templates,
)
from clipself.modeling.open_vocab import IMAGENET_TEMPLATES

TEXT = {"context_length": 20, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
CFG = {"embed_dim": 16, "text_cfg": TEXT, "vision_cfg": {
    "image_size": 16, "patch_size": 8, "width": 32, "layers": 1, "head_width": 16}}


@pytest.fixture(scope="module")
def clip_ckpt(tmp_path_factory):
    import open_clip

    torch.manual_seed(0)
    clip = open_clip.model.CLIP(**CFG).eval()
    path = str(tmp_path_factory.mktemp("ckpt") / "clip.pt")
    torch.save(clip.state_dict(), path)  # flat open_clip layout (token_embedding, transformer...)
    return clip, path


def _reference(clip, name, templates=VILD_TEMPLATES, this_is=True):
    from open_clip.tokenizer import SimpleTokenizer

    tok = SimpleTokenizer(context_length=TEXT["context_length"])
    with torch.no_grad():
        f = F.normalize(clip.encode_text(tok(class_prompts(name, templates, this_is))), dim=-1)
    return F.normalize(f.mean(0), dim=-1)


def test_prompts():
    assert len(VILD_TEMPLATES) == 63 and len(set(VILD_TEMPLATES)) == 63
    assert format_class_name("Traffic_Light") == "traffic light"
    assert format_class_name("pan/frying_pan") == "pan or frying pan"
    p = class_prompts("traffic_light", VILD_TEMPLATES)
    assert p[0] == "There is a traffic light in the scene."
    assert p[2] == "This is a photo of a traffic light in the scene."
    assert "itap of my traffic light." in p and "This is the plastic traffic light." in p
    assert "This is an embroidered traffic light." in p
    assert class_prompts("apple", ["a photo of {article} {}."], this_is=False) == [
        "a photo of an apple."]
    assert get_templates("single") == ["a photo of a {}."]
    with pytest.raises(ValueError):
        get_templates(["no placeholder"])


def test_embeddings_synonyms_background_and_cache(clip_ckpt, tmp_path):
    clip, path = clip_ckpt
    clf = TextClassifier(CFG, pretrained=path, cache_dir=str(tmp_path))
    emb = clf(["traffic_light", ["sofa", "couch"]], background=True)
    assert emb.shape == (3, 16) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))
    torch.testing.assert_close(emb[0], _reference(clip, "traffic_light"), atol=1e-5, rtol=1e-5)
    syn = F.normalize(_reference(clip, "sofa") + _reference(clip, "couch"), dim=0)
    torch.testing.assert_close(emb[1], syn, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(emb[2], _reference(clip, "background"), atol=1e-5, rtol=1e-5)
    single = TextClassifier(CFG, pretrained=path, templates="single")(["traffic_light"])
    ref = _reference(clip, "traffic_light", ["a photo of a {}."], this_is=False)
    torch.testing.assert_close(single[0], ref, atol=1e-5, rtol=1e-5)

    # the second classifier reads the cache and never builds the text tower
    cached = TextClassifier(CFG, pretrained=path, cache_dir=str(tmp_path))
    cached._load_model = lambda: (_ for _ in ()).throw(AssertionError("cache miss"))
    torch.testing.assert_close(cached(["traffic_light", ["sofa", "couch"]], background=True), emb)
    assert len(os.listdir(tmp_path)) == 1
    clf(["traffic_light"], background=True)  # other names: another entry
    assert len(os.listdir(tmp_path)) == 2
    TextClassifier(CFG, cache_dir=str(tmp_path))(["cat"])  # random weights: never cached
    assert len(os.listdir(tmp_path)) == 2
    with pytest.raises(ValueError, match="empty vocabulary"):
        clf([])


def test_custom_text_layout_and_missing_keys(clip_ckpt, tmp_path):
    from open_clip.model import convert_to_custom_text_state_dict

    clip, path = clip_ckpt
    sd = convert_to_custom_text_state_dict(clip.state_dict())  # text.* keys (EVA-CLIP style)
    assert any(k.startswith("text.") for k in sd)
    custom = str(tmp_path / "custom.pt")
    torch.save({"state_dict": sd}, custom)
    a = TextClassifier(CFG, pretrained=path)(["dog"])
    b = TextClassifier(CFG, pretrained=custom)(["dog"])
    torch.testing.assert_close(a, b)
    del sd["text.ln_final.weight"]
    with pytest.raises(RuntimeError, match="ln_final.weight"):
        TextClassifier(CFG, pretrained=sd)(["dog"])


def test_dump_tool(clip_ckpt, tmp_path):
    _, path = clip_ckpt
    cfg_path = tmp_path / "tiny.json"
    cfg_path.write_text(json.dumps(CFG))
    names = tmp_path / "names.json"
    names.write_text(json.dumps(["cat", ["sofa", "couch"], "traffic_light"]))
    tool = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "dump_text_embeddings.py")
    main = runpy.run_path(tool)["main"]
    out_pt, out_npy = str(tmp_path / "emb.pt"), str(tmp_path / "emb.npy")
    with redirect_stdout(io.StringIO()):
        main(["--model", str(cfg_path), "--pretrained", path, "--names", str(names),
              "--output", out_pt])
        main(["--model", str(cfg_path), "--pretrained", path, "--names", str(names),
              "--no-background", "--templates", "single", "--output", out_npy])
    d = torch.load(out_pt, weights_only=True)
    assert list(d) == ["cat", "sofa", "traffic_light", "background"]
    expected = TextClassifier(CFG, pretrained=path)(json.loads(names.read_text()), background=True)
    torch.testing.assert_close(torch.stack(list(d.values())), expected)
    arr = np.load(out_npy)
    assert arr.shape == (3, 16) and arr.dtype == np.float32


def test_embed_per_template_embeds_each_template_and_averages_synonyms():
    torch.manual_seed(0)
    clf = TextClassifier(CFG, templates="single")
    templates = ["a {}.", "a photo of the {}."]
    emb = clf.embed_per_template([["cat", "kitty"], ["dog"]], templates)
    assert emb.shape == (2, 2, 16)
    tower, tok = clf._tower, clf._tokenizer

    def enc(text):
        with torch.no_grad():
            return F.normalize(tower(tok([text])).float()[0], dim=-1)

    want = F.normalize(enc("a photo of the cat.") + enc("a photo of the kitty."), dim=-1)
    torch.testing.assert_close(emb[0, 1], want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(emb[1, 0], enc("a dog."), atol=1e-5, rtol=1e-5)


def test_template_sets():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    assert len(IMAGENET_TEMPLATES) == 80 == len(set(IMAGENET_TEMPLATES))
    assert list(IMAGENET_TEMPLATES) == [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    assert get_templates("catseg") == ["A photo of a {} in the scene"]
    assert len(get_templates("vild")) == 63 and get_templates("single") == ["a photo of a {}."]
    with pytest.raises(ValueError, match="unknown template set"):
        get_templates("nope")
