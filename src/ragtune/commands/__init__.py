"""Bodies of ``ragtune`` commands that live outside ``cli.py``; ``cli.py`` registers them."""
