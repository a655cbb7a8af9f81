"""`python -m ktune ...` (also what `accelerate launch -m ktune train ...` runs)."""

from ktune.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
