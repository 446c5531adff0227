"""The towers: small encoders for each modality.

Every tower maps a batch to embeddings ``[N, embed_dim]`` (not normalised; the losses
normalise). The text and image towers also accept *embeddings* instead of ids or
pixels, so that prompt vectors (CoOp) and pseudo-tokens (inversion) can be injected:

    TextTower(...)(ids)               or  TextTower(...)(embeds=..., mask=...)
    ImageTower(...)(images)           or  ImageTower(...)(patches=...)   # before positions

What a tower must offer for that is declared in ``models.interface`` (``PromptableText``,
``PromptableImage``). The real pretrained text encoder (MiniLM) is ``tutorlib.zoo.minilm``.
``models.hf_clip`` wraps a Hugging Face ``CLIPModel`` in that protocol
(``hf_clip.from_pretrained``); it is imported on its own
(``from tutorlib.models import hf_clip``), so that the course's towers, and the cache keys of
the models trained with them, do not depend on it.
"""
from .audio_video import AudioTower, VideoTower
from .blocks import Block, Encoder
from .clip import MiniCLIP, count_parameters
from .image import ImageTower
from .interface import PromptableImage, PromptableText
from .text import TextTower

__all__ = ["Block", "Encoder", "TextTower", "ImageTower", "AudioTower", "VideoTower", "MiniCLIP",
           "count_parameters", "PromptableText", "PromptableImage"]
