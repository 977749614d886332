"""Errors raised for input that stops a run."""


class InputError(ValueError):
    """Raw input that cannot be ingested: names the file and, where known, the column."""

    def __init__(self, path, message: str, column: str | None = None):
        self.path = str(path)
        self.column = column
        where = f"{self.path}" + (f", column '{column}'" if column else "")
        super().__init__(f"{where}: {message}")
