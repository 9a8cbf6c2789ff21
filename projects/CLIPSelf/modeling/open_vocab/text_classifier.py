"""Text-embedding classifiers from class names (see ``docs/open_vocabulary.md``).

For each class: names are formatted (``_`` -> space, ``/`` -> " or ", lower case), expanded with
the prompt templates ("This is " prepended to prompts starting with "a"/"the" for the ViLD
ensemble), encoded by the CLIP text tower, L2-normalised, averaged and normalised again
(``open_clip.build_zero_shot_classifier``). A class may be a list of synonyms: their embeddings
are averaged and normalised. An optional "background" row comes last. Results can be cached on
disk, keyed by model, checkpoint, templates and names.

Every open_clip text tower is built by open_clip itself (``_build_text_tower``) with the tokenizer
of its config: OpenAI's BPE (``SimpleTokenizer``) for CLIP, OpenCLIP, EVA, PE-Core, MobileCLIP and
CoCa, the Hugging Face tokenizer named by ``text_cfg["hf_tokenizer_name"]`` for SigLIP, SigLIP2,
CLIPA and the multilingual towers (docs/open_vocabulary.md §13). The checkpoint's ``logit_scale``
and SigLIP's ``logit_bias`` come along, for :func:`clipself.structures.vocabulary_scores`.
"""
import copy
import hashlib
import json
import logging
import os
from collections import OrderedDict
from contextlib import contextmanager
from functools import partial
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.model import _build_text_tower
from open_clip.pretrained import download_pretrained, get_pretrained_cfg
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer
from torch import nn

from ...checkpoint import LoadReport, read_checkpoint, save_checkpoint_file, unwrap_state_dict
from ...utils.atomic import atomic_path
from ..backbone.clip_vit import resolve_model_config
from .templates import get_templates

__all__ = [
    "ClassNames",
    "HubUnavailableError",
    "TextClassifier",
    "format_class_name",
    "class_prompts",
    "build_text_tower",
    "build_tokenizer",
    "load_text_weights",
    "logit_params",
    "initial_logit_params",
    "encode_class_names",
    "embeddings_to_dict",
    "save_text_embeddings",
]

logger = logging.getLogger(__name__)

#: A vocabulary: one entry per class, a name or a list of synonyms (the first names the class).
ClassNames = Sequence[Union[str, Sequence[str]]]

#: ``tokenizer=``: None (the config's own), a local directory (or hub id) of a saved Hugging Face
#: tokenizer, or a tokenizer object ``tokenizer(texts) -> (N, L) LongTensor``
TokenizerLike = Union[None, str, os.PathLike, Callable[..., torch.Tensor]]

#: the text keys of open_clip's flat ``CLIP`` layout (custom-text models prefix them with "text.")
_FLAT_TEXT_PREFIXES = (
    "token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection",
)

#: open_clip's initial logit scale (before ``exp``): log(1 / 0.07), CLIP's initial temperature
#: (Radford et al. 2021, §2.5)
_INIT_LOGIT_SCALE = float(np.log(1 / 0.07))


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


class HubUnavailableError(RuntimeError):
    """A tokenizer or text-model config that lives on the Hugging Face hub could not be fetched;
    the message names it and how to give it from a local directory."""


@contextmanager
def _from_the_hub(what: str, hub_id: str, option: str):
    """Turn a failed Hugging Face hub download into an error that says how to work offline
    (docs/open_vocabulary.md §13)."""
    try:
        yield
    except (OSError, ImportError) as e:
        if isinstance(e, ImportError):
            cause = "the transformers package is not installed (pip install transformers)"
        else:
            cause = f"it is not on this machine and the hub cannot be reached ({str(e).strip()})"
        raise HubUnavailableError(
            f"cannot load the {what} {hub_id!r} from the Hugging Face hub: {cause}.\n{option}"
        ) from e


def _tokenizer_help(hub_id: str) -> str:
    return (
        f"Save it on a machine with internet access, with\n"
        f"    hf download {hub_id} --include \"tokenizer*\" --include \"special_tokens_map.json\" "
        f"--include \"*.model\" --local-dir DIR\n"
        f"or\n"
        f"    python -c \"from transformers import AutoTokenizer; "
        f"AutoTokenizer.from_pretrained('{hub_id}').save_pretrained('DIR')\"\n"
        f"then copy DIR here and pass tokenizer=DIR (TextClassifier, build_text_tower, "
        f"build_tokenizer) or --tokenizer DIR (tools/dump_text_embeddings.py); see "
        f"docs/open_vocabulary.md §13."
    )


def build_tokenizer(model_name: Union[str, Mapping] = "EVA02-B-16",
                    tokenizer: TokenizerLike = None) -> Any:
    """The tokenizer of an open_clip model config (docs/open_vocabulary.md §13).

    Args:
        model_name (str or dict): as :class:`~clipself.modeling.CLIPViT`.
        tokenizer: None: the config's own, as ``open_clip.get_tokenizer`` builds it (OpenAI BPE
            or the Hugging Face tokenizer ``text_cfg["hf_tokenizer_name"]``, fetched from the
            hub); a directory (or hub id) of a saved Hugging Face tokenizer, used with the
            config's context length and ``tokenizer_kwargs``; or a tokenizer object, returned
            as is.
    Returns:
        a callable ``tokenizer(texts) -> (N, context_length) LongTensor``.
    Raises:
        HubUnavailableError: a hub tokenizer that cannot be fetched (named, with the offline
            option).
    """
    if tokenizer is not None and not isinstance(tokenizer, (str, os.PathLike)):
        if not callable(tokenizer):
            raise TypeError(f"tokenizer: expected a directory or a callable, got "
                            f"{type(tokenizer).__name__}")
        return tokenizer
    name, cfg = resolve_model_config(model_name)
    text_cfg = dict(cfg.get("text_cfg", {}))
    ctx = text_cfg.get("context_length", 77)
    kwargs = dict(text_cfg.get("tokenizer_kwargs", {}))
    mode = text_cfg.get("tokenizer_mode")
    if tokenizer is not None:
        source = os.fspath(tokenizer)
        if os.path.isdir(source):  # offline: the files of a saved Hugging Face tokenizer
            return HFTokenizer(source, context_length=ctx, tokenizer_mode=mode, **kwargs)
        if os.path.isabs(source) or source.startswith(".") or os.path.exists(source):
            raise FileNotFoundError(
                f"tokenizer={source!r}: no such directory (give the folder a Hugging Face "
                f"tokenizer was saved to){_hf_name_hint(text_cfg)}")
        with _from_the_hub("tokenizer", source, _tokenizer_help(source)):  # a hub id
            return HFTokenizer(source, context_length=ctx, tokenizer_mode=mode, **kwargs)
    hf_name = text_cfg.get("hf_tokenizer_name")
    with _from_the_hub("tokenizer", hf_name or name, _tokenizer_help(hf_name or name)):
        if isinstance(model_name, str) and open_clip.get_model_config(model_name) is not None:
            return open_clip.get_tokenizer(model_name)
        if hf_name:
            return HFTokenizer(hf_name, context_length=ctx, tokenizer_mode=mode, **kwargs)
    return SimpleTokenizer(context_length=ctx, **kwargs)


def _hf_name_hint(text_cfg: Mapping) -> str:
    hf_name = text_cfg.get("hf_tokenizer_name")
    return f"; this config's tokenizer is {hf_name!r}" if hf_name else ""


def build_text_tower(
    model_name: Union[str, Mapping] = "EVA02-B-16",
    tokenizer: TokenizerLike = None,
) -> Tuple[nn.Module, Any]:
    """Build (random init) the open_clip text tower of a model config and its tokenizer.

    Args:
        model_name (str or dict): as :class:`~clipself.modeling.CLIPViT`.
        tokenizer: see :func:`build_tokenizer`.
    Returns:
        tuple: (text tower module: ``forward(tokens)`` is ``encode_text``, or a tuple whose
        first element is, for towers with ``output_tokens`` (CoCa); tokenizer).
    """
    name, cfg = resolve_model_config(model_name)
    text_cfg = dict(cfg.get("text_cfg", {}))
    if text_cfg.get("hf_model_name"):
        # a Hugging Face text model (RoBERTa, XLM-R, mT5, NLLB): random init here too; the
        # weights come from the CLIP checkpoint
        text_cfg.setdefault("hf_model_pretrained", False)
        hub_id = text_cfg["hf_model_name"]
        option = ("Give text_cfg['hf_model_name'] as a local directory holding the model's "
                  f"config.json (hf download {hub_id} config.json --local-dir DIR).")
        with _from_the_hub("text model config", hub_id, option):
            tower = _build_text_tower(cfg["embed_dim"], text_cfg,
                                      quick_gelu=cfg.get("quick_gelu", False))
    else:
        tower = _build_text_tower(cfg["embed_dim"], text_cfg,
                                  quick_gelu=cfg.get("quick_gelu", False))
    return tower, build_tokenizer(model_name, tokenizer)


def initial_logit_params(model_name: Union[str, Mapping]) -> Tuple[float, Optional[float]]:
    """open_clip's initial (logit scale, logit bias) of a config, as ``create_model`` sets them.

    Returns:
        tuple: (``exp(init_logit_scale)``, 1/0.07 by default; ``init_logit_bias``, -10 for
        SigLIP, None for CLIP-trained configs).
    """
    _, cfg = resolve_model_config(model_name)
    bias = cfg.get("init_logit_bias")
    scale = float(np.exp(cfg.get("init_logit_scale", _INIT_LOGIT_SCALE)))
    return scale, None if bias is None else float(bias)


def logit_params(state_dict: Mapping[str, Any]) -> Tuple[Optional[float], Optional[float]]:
    """(logit scale, logit bias) of a full CLIP state dict (docs/open_vocabulary.md §13).

    Args:
        state_dict (dict): an unwrapped checkpoint; ``logit_scale`` holds the log of the scale,
            ``logit_bias`` (SigLIP) the sigmoid bias.
    Returns:
        tuple: (``exp(logit_scale)`` or None, ``logit_bias`` or None) when a key is absent.
    """
    def scalar(key):
        v = state_dict.get(key)
        return None if v is None else float(torch.as_tensor(v).float().reshape(-1)[0])

    log_scale, bias = scalar("logit_scale"), scalar("logit_bias")
    return (None if log_scale is None else float(np.exp(log_scale))), bias


def _text_state_dict(sd: Mapping[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """(text-tower keys without "text.", the other keys) of a CLIP state dict in either layout:
    ``text.*`` (custom-text models: EVA, SigLIP, PE-Core, MobileCLIP, CoCa) or open_clip's flat
    ``CLIP`` keys (``token_embedding``, ``transformer.*``, ...)."""
    if any(k.startswith("text.") for k in sd):
        keys = [k for k in sd if k.startswith("text.")]
        text = {k[len("text."):]: sd[k] for k in keys}
    else:
        keys = [k for k in sd if k.startswith(_FLAT_TEXT_PREFIXES)]
        text = {k: sd[k] for k in keys}
    used = set(keys)
    return text, [k for k in sd if k not in used]


def load_text_weights(tower: nn.Module, source: Union[str, Mapping], strict: bool = True,
                      name: Optional[str] = None):
    """Load the text-tower weights of a CLIP checkpoint into :func:`build_text_tower`'s module.

    Accepts ``text.*`` keys (open_clip custom-text models: EVA, SigLIP, PE-Core, MobileCLIP,
    CoCa; the authors' EVA-CLIP/CLIPSelf files) and the flat layout of open_clip ``CLIP``
    (``token_embedding``, ``transformer.*``, ...). Other keys (``visual.*``, ``logit_scale``,
    ``logit_bias``, CoCa's ``text_decoder.*``) are reported as ignored.

    Args:
        tower (nn.Module): the text tower.
        source (str or dict): checkpoint path or loaded checkpoint.
        strict (bool): raise on missing or unexpected text keys.
        name (str): how the report names an in-memory ``source``.
    Returns:
        LoadReport
    """
    name = source if isinstance(source, str) else (name or "<state dict>")
    sd = unwrap_state_dict(read_checkpoint(source) if isinstance(source, str) else source)
    tsd, ignored = _text_state_dict(sd)
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
        feats = self.tower(tokens)
        if isinstance(feats, (tuple, list)):  # (latent, token embeddings): CoCa's encode_text
            feats = feats[0]
        feats = feats.float()
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
        # SigLIP2 without the hub: the tokenizer saved to a folder (docs/open_vocabulary.md §13)
        clf = TextClassifier("ViT-B-16-SigLIP2", pretrained="siglip2.bin", tokenizer="tok_dir")
        clf.logit_scale, clf.logit_bias  # the checkpoint's exp(logit_scale) and logit_bias
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
        tokenizer: TokenizerLike = None,
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
            tokenizer: None (the config's own: OpenAI BPE, or the Hugging Face tokenizer of
                ``text_cfg["hf_tokenizer_name"]`` fetched from the hub), a directory of a saved
                Hugging Face tokenizer (offline), or a tokenizer object; see
                :func:`build_tokenizer`.
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
        self.tokenizer = tokenizer
        self._tower = None
        self._tokenizer = None
        self._logit: Optional[Tuple[Optional[float], Optional[float]]] = None
        self.load_report = None

    @property
    def logit_scale(self) -> Optional[float]:
        """The text tower's logit multiplier ``exp(logit_scale)`` from the checkpoint (open_clip's
        initial 1/0.07 for random weights); None when the checkpoint has no ``logit_scale``."""
        if self._logit is None:
            self._load_model()
        return self._logit[0]

    @property
    def logit_bias(self) -> Optional[float]:
        """SigLIP's sigmoid ``logit_bias`` from the checkpoint (the config's
        ``init_logit_bias`` for random weights); None for CLIP-trained towers."""
        if self._logit is None:
            self._load_model()
        return self._logit[1]

    def _tokenizer_id(self) -> Optional[Any]:
        """The tokenizer's part of the cache key: "" = the config's own; None = unknown (an
        object)."""
        t = self.tokenizer
        if t is None:
            return ""
        if isinstance(t, (str, os.PathLike)):
            t = os.fspath(t)
            return os.path.abspath(t) if os.path.exists(t) else t
        return None

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
        """SHA-1 of (model, checkpoint, templates, this_is, names, background, tokenizer); None if
        the weights or the tokenizer have no stable identity (random init, in-memory state dict,
        tokenizer object)."""
        ckpt, tok = self._checkpoint_id(), self._tokenizer_id()
        if ckpt is None or tok is None:
            return None
        name, cfg = resolve_model_config(self.model_name)
        payload = {
            "model": [name, cfg], "checkpoint": ckpt, "templates": self.templates,
            "this_is": self.this_is, "names": [_synonyms(e) for e in class_names],
            "background": bool(background),
        }
        if tok:  # the config's own tokenizer keeps the keys of earlier caches
            payload["tokenizer"] = tok
        return hashlib.sha1(json.dumps(payload, sort_keys=True).encode()).hexdigest()

    def _load_model(self) -> None:
        if self._tower is not None:
            return
        tower, tokenizer = build_text_tower(self.model_name, self.tokenizer)
        logit = initial_logit_params(self.model_name)
        if self.pretrained is not None:
            source = self.pretrained
            if isinstance(source, str) and not os.path.isfile(source):
                if source not in open_clip.list_pretrained_tags_by_model(str(self.model_name)):
                    raise FileNotFoundError(
                        f"pretrained={source!r} is neither a file nor an open_clip tag of "
                        f"{self.model_name!r}"
                    )
                source = download_pretrained(get_pretrained_cfg(self.model_name, source))
            name = source if isinstance(source, str) else None
            sd = unwrap_state_dict(read_checkpoint(source) if isinstance(source, str) else source)
            self.load_report = load_text_weights(tower, sd, strict=self.strict_load, name=name)
            logit = logit_params(sd)
            if logit[1] is None and initial_logit_params(self.model_name)[1] is not None:
                logger.warning(
                    "%s: no logit_bias in the checkpoint of a sigmoid-trained config; "
                    "probabilities fall back to a softmax", name or "the state dict")
        self._logit = logit
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
                if self._logit is None and "logit" in cached:
                    self._logit = tuple(cached["logit"])
                return cached["embeddings"]
        self._load_model()
        names = list(class_names) + (["background"] if background else [])
        emb = encode_class_names(
            self._tower, self._tokenizer, names, self.templates, self.this_is, self.batch_size
        )
        if path:
            # parallel jobs (e.g. two F-ViT runs) may fill the same entry at once
            with atomic_path(path) as tmp:
                torch.save({"key": key, "embeddings": emb, "logit": list(self._logit)}, tmp)
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
