"""The chat page's components and where they sit: the picture, the backend and generation settings, the
chat, the question box and its buttons, and the hidden boxes the screen reader support reads (a11y.py).

`lay_out` builds them inside the page's `gr.Blocks` and returns them as a `Page`; what they do is wired in
events.py. Nothing here runs a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from vqa_chat.backends import REGISTRY, label
from vqa_chat.engine.types import GenerationSettings
from vqa_chat.ui import a11y

EXAMPLES = [  # (file in assets/examples, question)
    ("cat.jpg", "What is this?"),  # real photos: scikit-image's sample photos, CC0 (see README)
    ("coffee.jpg", "Describe the picture"),
    ("red_circle.png", "What shape is in the image?"),  # drawn: easy-VQA's kind of picture and question
    ("blue_triangle.png", "What color is the shape?"),
    ("green_square.png", "Is there a green shape in the picture?"),
    ("shapes.png", "How many shapes are there?"),
]
CSS = """
#chat { flex-grow: 1; }
#chat .message img { max-height: 150px; width: auto; object-fit: contain; }
#chat button[aria-label="Share"] { display: none; }  /* "share to HF discussions" on chat images */
#status p { margin: 0; min-height: 1.5em; }
footer { display: none !important; }
"""
DEFAULTS = GenerationSettings()  # where the settings panel starts
GREEDY, SAMPLING = "Greedy", "Sampling"  # the Decoding radio's choices: do_sample False / True
START_DECODING = SAMPLING if DEFAULTS.do_sample else GREEDY


@dataclass
class Page:
    """The page's components (gradio blocks), by what they are for."""

    image: gr.Image  # the picture asked about (upload, webcam, paste)
    heat_image: gr.Image  # where the model looked (hidden until asked)
    heat_text: gr.Markdown  # its text alternative
    backend: gr.Radio
    max_new: gr.Slider  # the generation settings, in the order settings_from takes them
    decoding: gr.Radio
    temperature: gr.Slider
    top_p: gr.Slider
    beams: gr.Slider
    chat: gr.Chatbot
    status: gr.Markdown  # "Answering…", "Done.", why a question was not answered
    question: gr.Textbox
    send: gr.Button
    describe: gr.Button
    stop: gr.Button
    regenerate: gr.Button
    new_chat: gr.Button
    repeat: gr.Button  # Repeat last answer (the screen reader says it again)
    read: gr.Button  # Read aloud (the browser's speech)
    heatmap: gr.Button
    contrast: gr.Checkbox
    delete: gr.Button
    announce: gr.Textbox  # hidden: what the live region says next
    last_answer: gr.Textbox  # hidden: the last answer in plain words, for Repeat and Read aloud

    @property
    def settings(self) -> list:
        return [self.max_new, self.decoding, self.temperature, self.top_p, self.beams]


def lay_out(backend: str, examples_dir: str, logging_note: bool) -> Page:
    """The page's components, inside the `gr.Blocks` being built; `backend` is the one selected when a page
    opens, `logging_note` says the server keeps a log (--log-dir)."""
    gr.Markdown("## vqa-chat\nAdd an image, then ask questions about it, turn after turn.")
    if logging_note:
        gr.Markdown("**Note:** this server keeps a log of the questions, answers and images (--log-dir).")
    with gr.Row(equal_height=False, elem_id="main-row"):
        with gr.Column(scale=2, min_width=280) as left:
            image = gr.Image(label="Image", type="filepath", sources=["upload", "webcam", "clipboard"],
                             height=320, elem_id="image-input")  # fmt: skip
            heat_image = gr.Image(label="Where the model looked", visible=False, interactive=False,
                                  elem_id="heatmap")  # fmt: skip
            heat_text = gr.Markdown("", elem_id="heatmap-text")
            choices = [(label(name), name) for name in REGISTRY]
            backend_radio = gr.Radio(choices, value=backend, label="Backend")
            with gr.Accordion("Generation settings", open=False):
                max_new = gr.Slider(1, 256, value=DEFAULTS.max_new_tokens, step=1, label="Max new tokens")
                decoding = gr.Radio([GREEDY, SAMPLING], value=START_DECODING, label="Decoding")
                temperature = gr.Slider(0.1, 2.0, value=DEFAULTS.temperature, step=0.05,
                                        label="Temperature (sampling)")  # fmt: skip
                top_p = gr.Slider(0.1, 1.0, value=DEFAULTS.top_p, step=0.05, label="Top-p (sampling)")
                beams = gr.Slider(1, 5, value=DEFAULTS.num_beams, step=1, label="Beams (1 = no beam search)")
        with gr.Column(scale=3, min_width=320):
            chat = gr.Chatbot(label="Chat", elem_id="chat", height=560, buttons=["copy_all"],
                              feedback_options=None, allow_file_downloads=False)  # fmt: skip
            status = gr.Markdown("", elem_id="status")
            with gr.Row():
                question = gr.Textbox(label="Question", placeholder="Ask about the image and press Enter",
                                      lines=1, max_lines=4, scale=5, autofocus=True,
                                      elem_id="question")  # fmt: skip
                send = gr.Button("Send", variant="primary", scale=1, min_width=80, elem_id="send-btn")
            with gr.Row():
                describe = gr.Button("Describe image", size="sm", elem_id="describe-btn")
                stop = gr.Button("Stop", variant="stop", size="sm", elem_id="stop-btn")
                regenerate = gr.Button("Regenerate", size="sm")
                new_chat = gr.Button("New chat", size="sm", elem_id="new-chat-btn")
            with gr.Row():
                repeat = gr.Button("Repeat last answer", size="sm", elem_id="repeat-btn")
                read = gr.Button("Read aloud", size="sm", elem_id="read-btn")
                heatmap = gr.Button("Where the model looked", size="sm", elem_id="heatmap-btn")
            with gr.Row():
                contrast = gr.Checkbox(label="High contrast", value=False, elem_id="contrast")
                delete = gr.Button("Delete my session", size="sm", variant="stop", elem_id="delete-btn")
            gr.Markdown(a11y.shortcuts_markdown(), elem_id="shortcuts")
            announce = gr.Textbox(visible="hidden", elem_id="announce", label="announcement")
            last_answer = gr.Textbox(visible="hidden", elem_id="last-answer", label="last answer")
    folder = Path(examples_dir)
    examples = [[str(folder / name), q] for name, q in EXAMPLES if (folder / name).exists()]
    if examples:
        with left:  # under the settings, now that the question box exists
            gr.Examples(examples, inputs=[image, question], label="Examples: click one, then Send")
    return Page(image, heat_image, heat_text, backend_radio, max_new, decoding, temperature, top_p, beams,
                chat, status, question, send, describe, stop, regenerate, new_chat, repeat, read, heatmap,
                contrast, delete, announce, last_answer)  # fmt: skip
