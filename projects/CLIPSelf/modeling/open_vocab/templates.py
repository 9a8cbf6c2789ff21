"""Prompt templates of the CLIP text classifiers (see ``docs/open_vocabulary.md``).

``{}`` is the class name and ``{article}`` its indefinite article ("a"/"an"). Sets:

* "vild": the public ViLD prompt list (Gu et al., ICLR 2022; 63 prompts), F-ViT's and the region
  evaluation's ensemble;
* "imagenet": CLIP's 80 ImageNet prompts (Radford et al., 2021), taken from
  ``open_clip.zero_shot_metadata``; the Cat-Seg version the paper uses;
* "catseg": Cat-Seg's later single prompt; "single": "a photo of a {}.".
"""
from typing import List, Sequence, Union

from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

__all__ = [
    "SINGLE_TEMPLATES", "VILD_TEMPLATES", "IMAGENET_TEMPLATES", "CATSEG_TEMPLATES",
    "TEMPLATE_SETS", "get_templates",
]

#: The single prompt "a photo of a {}.".
SINGLE_TEMPLATES = ("a photo of a {}.",)

#: ViLD's 63 prompt templates.
VILD_TEMPLATES = (
    # scene
    "There is {article} {} in the scene.",
    "There is the {} in the scene.",
    "a photo of {article} {} in the scene.",
    "a photo of the {} in the scene.",
    "a photo of one {} in the scene.",
    # photos
    "itap of {article} {}.",
    "itap of my {}.",
    "itap of the {}.",
    "a photo of {article} {}.",
    "a photo of my {}.",
    "a photo of the {}.",
    "a photo of one {}.",
    "a photo of many {}.",
    # quality and attributes
    "a good photo of {article} {}.",
    "a good photo of the {}.",
    "a bad photo of {article} {}.",
    "a bad photo of the {}.",
    "a photo of a nice {}.",
    "a photo of the nice {}.",
    "a photo of a cool {}.",
    "a photo of the cool {}.",
    "a photo of a weird {}.",
    "a photo of the weird {}.",
    # size
    "a photo of a small {}.",
    "a photo of the small {}.",
    "a photo of a large {}.",
    "a photo of the large {}.",
    # cleanliness
    "a photo of a clean {}.",
    "a photo of the clean {}.",
    "a photo of a dirty {}.",
    "a photo of the dirty {}.",
    # lighting
    "a bright photo of {article} {}.",
    "a bright photo of the {}.",
    "a dark photo of {article} {}.",
    "a dark photo of the {}.",
    # degradations
    "a photo of a hard to see {}.",
    "a photo of the hard to see {}.",
    "a low resolution photo of {article} {}.",
    "a low resolution photo of the {}.",
    "a cropped photo of {article} {}.",
    "a cropped photo of the {}.",
    "a close-up photo of {article} {}.",
    "a close-up photo of the {}.",
    "a jpeg corrupted photo of {article} {}.",
    "a jpeg corrupted photo of the {}.",
    "a blurry photo of {article} {}.",
    "a blurry photo of the {}.",
    "a pixelated photo of {article} {}.",
    "a pixelated photo of the {}.",
    # colour
    "a black and white photo of the {}.",
    "a black and white photo of {article} {}.",
    # renditions
    "a plastic {}.",
    "the plastic {}.",
    "a toy {}.",
    "the toy {}.",
    "a plushie {}.",
    "the plushie {}.",
    "a cartoon {}.",
    "the cartoon {}.",
    "an embroidered {}.",
    "the embroidered {}.",
    "a painting of the {}.",
    "a painting of a {}.",
)


#: CLIP's 80 ImageNet prompt templates as format strings.
IMAGENET_TEMPLATES = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)

#: Cat-Seg's single prompt (its later ``PROMPT_ENSEMBLE_TYPE: single``).
CATSEG_TEMPLATES = ("A photo of a {} in the scene",)

#: named template sets
TEMPLATE_SETS = {
    "vild": VILD_TEMPLATES,
    "imagenet": IMAGENET_TEMPLATES,
    "catseg": CATSEG_TEMPLATES,
    "single": SINGLE_TEMPLATES,
}


def get_templates(templates: Union[str, Sequence[str]]) -> List[str]:
    """Resolve a template set.

    Args:
        templates (str or list[str]): a name of :data:`TEMPLATE_SETS` ("vild", "imagenet",
            "catseg", "single") or an explicit list of format strings with ``{}`` (and
            optionally ``{article}``).
    Returns:
        list[str]
    """
    if isinstance(templates, str):
        key = templates.lower()
        if key not in TEMPLATE_SETS:
            raise ValueError(
                f"unknown template set {templates!r}; use one of {sorted(TEMPLATE_SETS)} or a list"
            )
        return list(TEMPLATE_SETS[key])
    templates = [str(t) for t in templates]
    if not templates or any("{}" not in t for t in templates):
        raise ValueError("templates must be a non-empty list of strings containing '{}'")
    return templates
