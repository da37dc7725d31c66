"""``python -m mirrorwatch`` is the ``mirrorwatch`` command."""

from mirrorwatch.cli import main

if __name__ == "__main__":
    main(prog_name="mirrorwatch")
