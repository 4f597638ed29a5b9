"""`python -m vqa_chat.train`: see train/loop.py."""

from vqa_chat.train.loop import main

if __name__ == "__main__":
    main()
