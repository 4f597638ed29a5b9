"""Answer one question about one image from the command line.

    python -m vqa_chat.cli --backend blip2 --image photo.jpg --question "What is on the table?"

Greedy decoding by default, so the answer is deterministic. `--plain` turns off all our generation
adjustments: the answer is then exactly transformers' greedy `generate` (whitespace stripped). A picture
or question outside what the model was trained on (the custom model's domain: `Backend.knows`, the chat's
one decision) is answered from the photo's measured facts instead, as in the chat. `--top-k 5` also
prints the model's five likeliest answers with their probabilities (models with an answer head).
"""

from __future__ import annotations

import argparse
import sys

from vqa_chat import settings as env
from vqa_chat.backends import REGISTRY, configure, get_backend
from vqa_chat.chat.images import ImageError, load_image
from vqa_chat.engine.types import BackendOptions, GenerationSettings
from vqa_chat.prompts import load_prompt


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vqa_chat.cli", description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=sorted(REGISTRY), default=env.read().backend,
                   help=f"which model answers (default: $VQA_CHAT_BACKEND, else {env.Settings.backend})")
    p.add_argument("--model", type=env.user_path, help="hub id or folder (default: the backend's default)")
    p.add_argument("--image", required=True, type=env.user_path, help="path of the image")
    p.add_argument("--question", required=True, help="the question about the image")
    p.add_argument("--max-new-tokens", type=int, default=GenerationSettings.max_new_tokens)
    p.add_argument("--quantize", choices=["8bit", "4bit", "int8"],
                   help="8bit/4bit: bitsandbytes (CUDA only); int8: dynamic int8 LM (CPU only)")
    p.add_argument("--plain", action="store_true", help="exactly transformers' greedy generate, no tweaks")
    p.add_argument("--num-beams", type=int, default=GenerationSettings.num_beams, help="1 = no beam search")
    p.add_argument("--device", help='"cuda", "cuda:1" or "cpu" (default: CUDA when present)')
    p.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], help="default: fp16 GPU, fp32 CPU")
    p.add_argument("--heatmap", metavar="OUT.png", type=env.user_path, help="also save where it looked")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="also print the K likeliest answers")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    question = " ".join(args.question.split())
    if not question:
        print("error: the question is empty", file=sys.stderr)
        return 2
    try:
        image = load_image(args.image)
    except ImageError as e:
        print(f"error: {args.image}: {e}", file=sys.stderr)
        return 1
    options = BackendOptions(model=args.model, device=args.device, dtype=args.dtype, quantize=args.quantize)
    configure(args.backend, options)
    settings = GenerationSettings(
        max_new_tokens=args.max_new_tokens, num_beams=args.num_beams, plain=args.plain
    )  # greedy: do_sample stays False
    prompt = load_prompt("question").format(question=question)
    try:
        backend = get_backend(args.backend)
        embeds = backend.encode_image(image)
        known = backend.knows(embeds, image, question)
        if known.model_answers:
            answer = backend.generate(embeds, prompt, settings)
        else:  # not what the model knows: answered from the photo's facts, as in the chat
            from vqa_chat.chat.answer_router import from_facts
            from vqa_chat.photo.facts import photo_facts

            answer = from_facts(question, photo_facts(image), known, args.backend)
    except Exception as e:  # load failures (offline, memory) and too-long prompts explain themselves
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(answer)
    if args.top_k and known.model_answers:
        for candidate, probability in backend.top_answers(embeds, prompt, args.top_k):
            print(f"{probability:6.1%}  {candidate}")
    elif args.top_k:
        print("(no top answers: out of the model's domain, answered from the photo's facts)", file=sys.stderr)
    if args.heatmap:
        from vqa_chat.chat.heatmap import heatmap_image

        try:
            picture, alt = heatmap_image(backend, image, prompt, embeds)
            picture.save(args.heatmap)
        except (ValueError, RuntimeError, OSError) as e:
            print(f"error: heatmap: {e}", file=sys.stderr)
            return 1
        print(f"{alt} Saved to {args.heatmap}.", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
