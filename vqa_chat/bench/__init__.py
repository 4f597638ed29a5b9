"""`python -m vqa_chat.bench`: how fast the chat is, each figure beside its baseline, in one run.

Measured on the bundled custom model (or `--model`), on the CPU by default, through the same code paths
the app uses (backend.stream -> the batched engine). Run it on an otherwise idle machine.
"""
