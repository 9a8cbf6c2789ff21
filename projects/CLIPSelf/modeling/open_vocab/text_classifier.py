"""Text-embedding classifiers from class names (see ``docs/open_vocabulary.md``).

For each class: names are formatted (``_`` -> space, ``/`` -> " or ", lower case), expanded with
the prompt templates ("This is " prepended to prompts starting with "a"/"the" for the ViLD
ensemble), encoded by the CLIP text tower, L2-normalised, averaged and normalised again
(``open_clip.build_zero_shot_classifier``). A class may be a list of synonyms: their embeddings
are averaged and normalised. An optional "background" row comes last. Results can be cached on
disk, keyed by model, checkpoint, templates and names.
"""
import copy
import hashlib
import json
import logging
import os
from collections import OrderedDict
from functools import partial
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import _build_text_tower, convert_to_custom_text_state_dict
from open_clip.pretrained import download_pretrained, get_pretrained_cfg
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer
from torch import nn

from ...checkpoint import LoadReport, read_checkpoint, save_checkpoint_file, unwrap_state_dict
from ...utils.atomic import atomic_path
from ..backbone.clip_vit import resolve_model_config
from .templates import get_templates

__all__ = [
    "ClassNames",
    "TextClassifier",
    "format_class_name",
    "class_prompts",
    "build_text_tower",
    "load_text_weights",
    "encode_class_names",
    "embeddings_to_dict",
    "save_text_embeddings",
]

logger = logging.getLogger(__name__)

#: A vocabulary: one entry per class, a name or a list of synonyms (the first names the class).
ClassNames = Sequence[Union[str, Sequence[str]]]


def format_class_name(name: str) -> str:
    """``_`` -> space, ``/`` -> " or ", lower case, stripped (docs/fvit.md §10)."""
    return name.replace("_", " ").replace("/", " or ").lower().strip()


def _article(name: str) -> str:
    return "an" if name[:1] in "aeiou" else "a"


def class_prompts(name: str, templates: Sequence[str], this_is: bool = True) -> List[str]:
    """The prompts of one class name.

    Args:
        name (str): raw class name (formatted here).
        templates (list[str]): format strings with ``{}`` and optionally ``{article}``.
        this_is (bool): prepend "This is " to prompts that start with "a" or "the".
    Returns:
        list[str]: one prompt per template.
    """
    n = format_class_name(name)
    texts = [t.format(n, article=_article(n)) for t in templates]
    if this_is:
        texts = ["This is " + t if t.startswith(("a", "the")) else t for t in texts]
    return texts


def _prompt(name: str, template: str, this_is: bool) -> str:
    """One prompt of :func:`class_prompts` (a template callable for
    ``open_clip.build_zero_shot_classifier``)."""
    return class_prompts(name, [template], this_is)[0]


def _synonyms(entry: Union[str, Sequence[str]]) -> List[str]:
    names = [entry] if isinstance(entry, str) else [str(n) for n in entry]
    if not names or any(not n.strip() for n in names):
        raise ValueError(f"empty class name in vocabulary entry {entry!r}")
    return names


def build_text_tower(
    model_name: Union[str, Mapping] = "EVA02-B-16",
) -> Tuple[nn.Module, Any]:
    """Build (random init) the open_clip text tower of a model config and its tokenizer.

    Args:
        model_name (str or dict): as :class:`~clipself.modeling.CLIPViT`.
    Returns:
        tuple: (text tower module whose ``forward(tokens)`` is ``encode_text``, tokenizer).
    """
    name, cfg = resolve_model_config(model_name)
    text_cfg = dict(cfg.get("text_cfg", {}))
    tower = _build_text_tower(cfg["embed_dim"], text_cfg, quick_gelu=cfg.get("quick_gelu", False))
    ctx = text_cfg.get("context_length", 77)
    if isinstance(model_name, str) and open_clip.get_model_config(model_name) is not None:
        tokenizer = open_clip.get_tokenizer(model_name)
    elif text_cfg.get("hf_tokenizer_name"):
        tokenizer = HFTokenizer(text_cfg["hf_tokenizer_name"], context_length=ctx)
    else:
        tokenizer = SimpleTokenizer(context_length=ctx)
    return tower, tokenizer


def load_text_weights(tower: nn.Module, source: Union[str, Mapping], strict: bool = True):
    """Load the text-tower weights of a CLIP checkpoint into :func:`build_text_tower`'s module.

    Accepts ``text.*`` keys (open_clip custom-text models, the authors' EVA-CLIP/CLIPSelf files)
    and the flat layout of open_clip ``CLIP`` (``token_embedding``, ``transformer.*``, ...).

    Args:
        tower (nn.Module): the text tower.
        source (str or dict): checkpoint path or loaded checkpoint.
        strict (bool): raise on missing or unexpected text keys.
    Returns:
        LoadReport
    """
    name = source if isinstance(source, str) else "<state dict>"
    sd = unwrap_state_dict(read_checkpoint(source) if isinstance(source, str) else source)
    sd = convert_to_custom_text_state_dict(sd)
    tsd = {k[len("text."):]: v for k, v in sd.items() if k.startswith("text.")}
    ignored = [k for k in sd if not k.startswith("text.")]
    report = LoadReport(source=str(name), layout="text", ignored=ignored)
    if not tsd:
        raise ValueError(f"{name}: no text-tower keys (text.* or token_embedding/transformer.*)")
    result = tower.load_state_dict(tsd, strict=False)
    report.missing_keys = list(result.missing_keys)
    report.unexpected_keys = list(result.unexpected_keys)
    if not report.ok:
        logger.warning("incomplete text-tower load:\n%s", report)
        if strict:
            raise RuntimeError(f"{report}\nPass strict_load=False to load it anyway.")
    return report


@torch.no_grad()
def encode_class_names(
    tower: nn.Module,
    tokenizer: Any,
    class_names: ClassNames,
    templates: Sequence[str],
    this_is: bool = True,
    batch_size: int = 256,
) -> torch.Tensor:
    """Template-ensembled, synonym-averaged, L2-normalised class embeddings.

    Args:
        tower (nn.Module): text tower (``forward(tokens) -> (T, D)``).
        tokenizer: open_clip tokenizer.
        class_names (list[str or list[str]]): K entries.
        templates (list[str]): prompt templates.
        this_is (bool): see :func:`class_prompts`.
        batch_size (int): prompts per forward.
    Returns:
        Tensor: (K, D) float32, unit rows.
    """
    if len(class_names) == 0:
        raise ValueError("empty vocabulary: give at least one class name")
    entries = [_synonyms(e) for e in class_names]
    names = sorted({n for e in entries for n in e})
    device = next(tower.parameters()).device
    per_name = open_clip.build_zero_shot_classifier(
        _TextModel(tower), tokenizer, names,
        [partial(_prompt, template=t, this_is=this_is) for t in templates],
        num_classes_per_batch=max(1, batch_size // len(templates)), device=device,
    ).t()  # (names, D), unit rows
    index = {n: i for i, n in enumerate(names)}
    rows = [F.normalize(per_name[[index[n] for n in e]].mean(0), dim=-1) for e in entries]
    return torch.stack(rows).cpu()


class _TextModel(nn.Module):
    """A text tower seen as an open_clip model (``encode_text``), for
    ``open_clip.build_zero_shot_classifier``."""

    def __init__(self, tower: nn.Module):
        super().__init__()
        self.tower = tower

    def encode_text(self, tokens: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        feats = self.tower(tokens).float()
        return F.normalize(feats, dim=-1) if normalize else feats


def embeddings_to_dict(
    class_names: ClassNames, embeddings: torch.Tensor, background: bool
) -> "OrderedDict[str, torch.Tensor]":
    """The authors' ``.pt`` format: ordered dict raw class name -> (D,) tensor, background last.

    Args:
        class_names (list): K entries (a synonym list is named by its first name).
        embeddings (Tensor): (K[+1], D).
        background (bool): whether the last row is "background".
    """
    keys = [_synonyms(e)[0] for e in class_names] + (["background"] if background else [])
    if len(keys) != embeddings.shape[0]:
        raise ValueError(f"{len(keys)} names for {embeddings.shape[0]} embeddings")
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate class names cannot be keys of the .pt dict format")
    return OrderedDict((k, embeddings[i].clone()) for i, k in enumerate(keys))


def save_text_embeddings(
    path: str, class_names: ClassNames, embeddings: torch.Tensor, background: bool
) -> None:
    """Write ``.pt`` (dict name -> tensor, "background" last) or ``.npy`` ((K[+1], D) float32)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".npy"):
        np.save(path, embeddings.float().numpy())
    elif path.endswith(".pt") or path.endswith(".pth"):
        save_checkpoint_file(embeddings_to_dict(class_names, embeddings.float(), background), path)
    else:
        raise ValueError(f"{path}: use a .pt or .npy file name")


class TextClassifier:
    """CLIP text embeddings of a vocabulary, for cosine classifiers.

    Example::

        clf = TextClassifier("EVA02-B-16", pretrained="eva_vitb16_coco_clipself_patches.pt")
        emb = clf(["person", ["sofa", "couch"], "traffic_light"], background=True)  # (4, 512)
    """

    def __init__(
        self,
        model_name: Union[str, Mapping] = "EVA02-B-16",
        *,
        pretrained: Optional[Union[str, Mapping]] = None,
        templates: Union[str, Sequence[str]] = "vild",
        this_is: Optional[bool] = None,
        cache_dir: Optional[str] = None,
        device: Union[str, torch.device] = "cpu",
        batch_size: int = 256,
        strict_load: bool = True,
    ):
        """
        Args:
            model_name (str or dict): open_clip model config (name, JSON file or dict).
            pretrained (str or dict): checkpoint path, loaded state dict or open_clip tag;
                None = random init (never cached).
            templates (str or list[str]): "vild" (63 prompts), "single", or a list.
            this_is (bool): prepend "This is "; default True for "vild", else False.
            cache_dir (str): directory of the on-disk cache (None = no cache).
            device (str): where the text tower runs.
            batch_size (int): prompts per forward.
            strict_load (bool): raise on missing/unexpected text keys.
        """
        self.model_name = model_name
        self.pretrained = pretrained
        self.templates = get_templates(templates)
        is_vild = isinstance(templates, str) and templates.lower() == "vild"
        self.this_is = is_vild if this_is is None else bool(this_is)
        self.cache_dir = cache_dir
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.strict_load = strict_load
        self._tower = None
        self._tokenizer = None
        self.load_report = None

    def _checkpoint_id(self) -> Optional[Any]:
        p = self.pretrained
        if p is None:
            return None
        if isinstance(p, str) and os.path.isfile(p):
            st = os.stat(p)
            return [os.path.abspath(p), st.st_size, st.st_mtime_ns]
        if isinstance(p, str):
            return ["tag", p]
        return None  # an in-memory state dict has no stable identity

    def cache_key(self, class_names: ClassNames, background: bool) -> Optional[str]:
        """SHA-1 of (model, checkpoint, templates, this_is, names, background); None if the
        weights have no stable identity (random init or in-memory state dict)."""
        ckpt = self._checkpoint_id()
        if ckpt is None:
            return None
        name, cfg = resolve_model_config(self.model_name)
        payload = {
            "model": [name, cfg], "checkpoint": ckpt, "templates": self.templates,
            "this_is": self.this_is, "names": [_synonyms(e) for e in class_names],
            "background": bool(background),
        }
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _load_model(self) -> None:
        if self._tower is not None:
            return
        tower, tokenizer = build_text_tower(self.model_name)
        if self.pretrained is not None:
            source = self.pretrained
            if isinstance(source, str) and not os.path.isfile(source):
                if source not in open_clip.list_pretrained_tags_by_model(str(self.model_name)):
                    raise FileNotFoundError(
                        f"pretrained={source!r} is neither a file nor an open_clip tag of "
                        f"{self.model_name!r}"
                    )
                source = download_pretrained(get_pretrained_cfg(self.model_name, source))
            self.load_report = load_text_weights(tower, source, strict=self.strict_load)
        self._tower = tower.to(self.device).eval()
        self._tokenizer = tokenizer

    def embed(self, class_names: ClassNames, background: bool = False) -> torch.Tensor:
        """Embeddings of a vocabulary.

        Args:
            class_names (list[str or list[str]]): K classes (synonym lists allowed).
            background (bool): append the embedding of "background" as row K.
        Returns:
            Tensor: (K[+1], D) float32 on the CPU, unit rows.
        """
        if len(class_names) == 0:
            raise ValueError("empty vocabulary: give at least one class name")
        key = self.cache_key(class_names, background) if self.cache_dir else None
        path = os.path.join(self.cache_dir, f"text_emb_{key}.pt") if key else None
        if path and os.path.isfile(path):
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if cached.get("key") == key:
                return cached["embeddings"]
        self._load_model()
        names = list(class_names) + (["background"] if background else [])
        emb = encode_class_names(
            self._tower, self._tokenizer, names, self.templates, self.this_is, self.batch_size
        )
        if path:
            # parallel jobs (e.g. two F-ViT runs) may fill the same entry at once
            with atomic_path(path) as tmp:
                torch.save({"key": key, "embeddings": emb}, tmp)
        return emb

    __call__ = embed

    def embed_per_template(
        self, class_names: ClassNames, templates: Optional[Union[str, Sequence[str]]] = None
    ) -> torch.Tensor:
        """One embedding per class and prompt template (Cat-Seg's cost volume channels).

        For each template, the synonyms of a class are embedded with it, L2-normalised, averaged
        and normalised again. The tower, tokenizer and cache are shared with :meth:`embed`.

        Args:
            class_names (list[str or list[str]]): K classes (synonym lists allowed).
            templates (str or list[str]): a template set (see ``get_templates``); None: this
                classifier's own. "This is " is prepended only for the "vild" set.
        Returns:
            Tensor: (K, P, D) float32, unit vectors.
        """
        if templates is None:
            temps, this_is = list(self.templates), self.this_is
        else:
            temps = get_templates(templates)
            this_is = isinstance(templates, str) and templates.lower() == "vild"
        self._load_model()  # shared by the per-template copies below
        rows = []
        for t in temps:
            one = copy.copy(self)
            one.templates, one.this_is = [t], this_is
            rows.append(one.embed(list(class_names)))  # (K, D)
        return F.normalize(torch.stack(rows, dim=1).float(), dim=-1)

    def as_dict(self, class_names: ClassNames, background: bool = True) -> Dict[str, torch.Tensor]:
        """:meth:`embed` in the authors' ``.pt`` dict format (see :func:`embeddings_to_dict`)."""
        return embeddings_to_dict(class_names, self.embed(class_names, background), background)
