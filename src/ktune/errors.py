"""The exception hierarchy. Messages name the bad value, the valid choices and the fix."""


class KtuneError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class KBError(KtuneError):
    """Knowledge base problems (missing file, wrong version, bad query)."""


class ImportFormatError(KBError, ValueError):
    """A KB source file is malformed; `path:line: reason`. Nothing was written."""

    def __init__(self, path, line: int, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{path}:{line}: {reason}")


class IntegrityError(KBError):
    """A downloaded or cached source does not match its expected checksum."""


class UnknownAttributeError(KBError, KeyError):
    """An attribute that is not in the attribute schema."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(KtuneError, ValueError):
    """An invalid configuration value."""


class InputError(KtuneError, ValueError):
    """Bad user input (empty or over-long question, bad JSONL line)."""
