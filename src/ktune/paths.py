"""Where ktune keeps user state: one home folder, overridable with $KTUNE_HOME (tests point it at tmp)."""

import os
from pathlib import Path


def home() -> Path:
    """$KTUNE_HOME, else ~/.local/share/ktune."""
    env = os.environ.get("KTUNE_HOME")
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "ktune"


def cache_dir() -> Path:
    return home() / "cache"


DEFAULT_KB_HELP = "$KTUNE_KB or $KTUNE_HOME/kb/cmekg.sqlite"  # what default_kb() resolves, for help texts


def default_kb() -> str | Path:
    """The KB used when none is named: $KTUNE_KB (a file, or a postgresql:// URL kept as written), else
    $KTUNE_HOME/kb/cmekg.sqlite (what `make demo` fills)."""
    env = os.environ.get("KTUNE_KB")
    if not env:
        return home() / "kb" / "cmekg.sqlite"
    return env if "://" in env else Path(env).expanduser()


def atomic_write_text(path: Path, text: str) -> None:
    """Write text so that readers see the old file or the new one, never half of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
