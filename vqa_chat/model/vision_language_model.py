"""Our vision-language model: frozen image encoder -> trained connector -> frozen causal LM.

    image --VisionEncoder--> patches [B, N, C] --connector--> image tokens [B, Q, D]
    LM input = [image tokens][prompt tokens][answer tokens], or with `lm_image_last`
    [prompt tokens][image tokens][answer tokens]; loss only on the answer tokens.

A checkpoint holds only the trained parts (`model.safetensors`) and `config.json`, which also names the
frozen parts and their sha256, so a folder of a few MB rebuilds the whole model.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from vqa_chat.model.answer_head import FILE as HEAD_FILE
from vqa_chat.model.answer_head import AnswerHead
from vqa_chat.model.config import VLMConfig
from vqa_chat.model.domain import FILE as DOMAIN_FILE
from vqa_chat.model.domain import Domain
from vqa_chat.model.language_model import load_language_model
from vqa_chat.model.modality_projector import build_connector
from vqa_chat.model.vision_encoder import VisionEncoder


class VisionLanguageModel(nn.Module):
    def __init__(
        self, cfg: VLMConfig, device: str | torch.device = "cpu", lm_dtype=torch.float32, **lm_kwargs
    ):
        super().__init__()
        self.vision = VisionEncoder(cfg).to(device)
        self.lm, self.tokenizer, lm_sha = load_language_model(cfg.lm_source, lm_dtype, device, **lm_kwargs)
        cfg.vit_dim, cfg.lm_dim = self.vision.dim, self.lm.config.hidden_size
        for name, actual in (("vit_sha256", self.vision.sha256), ("lm_sha256", lm_sha)):
            if getattr(cfg, name) and actual and getattr(cfg, name) != actual:
                raise ValueError(
                    f"{name}: this checkpoint was trained on other weights ({getattr(cfg, name)})"
                )
            setattr(cfg, name, getattr(cfg, name) or actual)
        self.cfg = cfg
        self.connector = build_connector(cfg).to(device)
        if cfg.lm_lora_rank > 0:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=cfg.lm_lora_rank, lora_alpha=2 * cfg.lm_lora_rank, target_modules=["q_proj", "v_proj"]
            )
            self.lm = get_peft_model(self.lm, lora)
        self.domain: Domain | None = None  # what the model was trained on (domain.py), when fitted
        self.answer_head: AnswerHead | None = None  # top-k answers with probabilities, when exported
        self.eval()  # inference by default (running batch-norm statistics, no dropout); train/loop.py opts in

    @property
    def device(self) -> torch.device:
        return next(self.connector.parameters()).device

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)  # [B, T, D]

    def image_tokens(self, patches, text_ids=None, text_mask=None, return_attention=False):
        """patches [B, N, C] (+ the prompt's last tokens for the Q-Former) -> image tokens [B, Q, D], map."""
        text = None
        if self.cfg.mp_question and text_ids is not None:
            last = self.cfg.mp_text_tokens
            text_ids, text_mask = text_ids[:, -last:], text_mask[:, -last:]
            text = self.embed(text_ids).float()  # [B, L, D]
        dtype = self.lm.get_input_embeddings().weight.dtype
        tokens, attention = self.connector(patches.float(), text, text_mask, return_attention)
        return tokens.to(dtype), attention

    def read_prompts(self, patches, prompts: list[str], return_attention=False):
        """Tokenize `prompts` (left-padded), then compute their image tokens from patches [B, N, C].

        Returns (the tokens: `.input_ids`, `.attention_mask` [B, P]; image tokens [B, Q, D]; the attention
        map [B, N] or None)."""
        text = self.tokenizer(prompts, return_tensors="pt", padding=True, padding_side="left").to(self.device)
        patches = patches.to(self.device)
        image, attention = self.image_tokens(patches, text.input_ids, text.attention_mask, return_attention)
        return text, image, attention

    def lm_inputs(self, image, ids, mask, target_ids=None, target_mask=None):
        """[image tokens][prompt] (or [prompt][image tokens] with `lm_image_last`), then the targets if given,
        with every row's padding moved to the front: (embeds [B, T, D], attention mask [B, T])."""
        ones = torch.ones(image.shape[:2], dtype=mask.dtype, device=mask.device)  # [B, Q]
        text = self.embed(ids)  # [B, P, D]
        if self.cfg.lm_image_last:
            parts, masks = [text, image.to(text.dtype)], [mask, ones]
        else:
            parts, masks = [image.to(text.dtype), text], [ones, mask]
        if target_ids is not None:
            parts.append(self.embed(target_ids))  # [B, A, D]
            masks.append(target_mask)
        embeds, mask = torch.cat(parts, dim=1), torch.cat(masks, dim=1)  # [B, T, D], [B, T]
        order = mask.argsort(dim=1, stable=True)  # pads (0) first, then tokens in their order
        embeds = embeds.gather(1, order[..., None].expand_as(embeds))  # [B, T, D]
        return embeds, mask.gather(1, order)

    @torch.no_grad()
    def generate(self, patches, prompts: list[str], max_new_tokens: int = 20, **kwargs) -> list[str]:
        """Batched greedy answers for patches [B, N, C] and one prompt per image."""
        text, image, _ = self.read_prompts(patches, prompts)
        embeds, mask = self.lm_inputs(image, text.input_ids, text.attention_mask)
        out = self.lm.generate(
            inputs_embeds=embeds,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
            **kwargs,
        )
        return [a.strip() for a in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def forward(self, patches, prompt_ids, prompt_mask, target_ids, target_mask, return_image=False):
        """Teacher-forced loss on the targets only (and the image tokens if `return_image`).

        prompt_ids/mask: [B, P] left-padded; target_ids/mask: [B, A] right-padded (answer + EOS).
        """
        image, _ = self.image_tokens(patches, prompt_ids, prompt_mask)  # [B, Q, D]
        embeds, mask = self.lm_inputs(image, prompt_ids, prompt_mask, target_ids, target_mask)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)  # left padding must not shift positions
        hidden = self.lm.get_decoder()(inputs_embeds=embeds, attention_mask=mask, position_ids=positions)[0]
        # Targets are right-padded, so after moving pads to the front a row's targets are not at a fixed
        # offset; instead pick, per row, the states at the positions that predict each target token.
        A = target_ids.shape[1]
        n_pad = target_mask.shape[1] - target_mask.sum(1)  # [B] pads moved from the targets' end to the front
        idx = hidden.shape[1] - A - 1 + torch.arange(A, device=hidden.device)[None] + n_pad[:, None]  # [B, A]
        hidden = hidden.gather(
            1, idx.clamp(max=hidden.shape[1] - 1)[..., None].expand(-1, -1, hidden.shape[-1])
        )
        keep = target_mask.bool()
        logits = self.lm.get_output_embeddings()(hidden[keep])  # [n_targets, V]: lm_head only where needed
        loss = F.cross_entropy(logits.float(), target_ids[keep])
        return (loss, image) if return_image else loss

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        state = {f"connector.{k}": v for k, v in self.connector.state_dict().items()}
        if self.cfg.lm_lora_rank > 0:
            state.update({f"lm.{k}": v for k, v in self.lm.state_dict().items() if "lora_" in k})
        return {k: v.detach().cpu().contiguous() for k, v in state.items()}

    def save_pretrained(self, folder: str) -> None:
        """config.json + model.safetensors, and the domain and answer head when the model has them."""
        os.makedirs(folder, exist_ok=True)
        self.cfg.save(os.path.join(folder, "config.json"))
        save_file(self.trainable_state_dict(), os.path.join(folder, "model.safetensors"))
        if self.domain is not None:
            self.domain.save(os.path.join(folder, DOMAIN_FILE))
        if self.answer_head is not None:
            self.answer_head.save(folder)

    @classmethod
    def from_pretrained(
        cls, folder: str, device="cpu", lm_dtype=torch.float32, **lm_kwargs
    ) -> VisionLanguageModel:
        """Load from a local folder or a hub id (config.json + model.safetensors)."""
        if not os.path.isdir(folder):
            from huggingface_hub import snapshot_download

            files = ["config.json", "model.safetensors", DOMAIN_FILE, HEAD_FILE]
            folder = snapshot_download(folder, allow_patterns=files)
        model = cls(VLMConfig.load(os.path.join(folder, "config.json")), device, lm_dtype, **lm_kwargs)
        state = load_file(os.path.join(folder, "model.safetensors"), device=str(device))
        model.connector.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("connector.")})
        lora = {k[3:]: v for k, v in state.items() if k.startswith("lm.")}
        if lora:
            model.lm.load_state_dict(lora, strict=False)
        if os.path.exists(os.path.join(folder, DOMAIN_FILE)):
            model.domain = Domain.load(os.path.join(folder, DOMAIN_FILE))
        model.answer_head = AnswerHead.load(folder, device)
        return model.eval()
