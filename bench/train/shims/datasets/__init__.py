"""A stand-in for Hugging Face `datasets`, for the GPU check on a machine that lacks it (and
pyarrow, which it needs; too large to carry). TRL imports these names at import time; the
check trains from an in-memory list of rows, so `Dataset` holds a list and offers what
GRPOTrainer uses of one. The other classes exist only for TRL's isinstance checks."""

from __future__ import annotations

from typing import Any


class Dataset:
    cache_files: list[str] = []  # an in-memory dataset (TRL's telemetry asks)

    def __init__(self, rows: list[dict[str, Any]]):
        self._rows = list(rows)

    @classmethod
    def from_list(cls, rows: list[dict[str, Any]]) -> "Dataset":
        return cls(rows)

    @classmethod
    def from_dict(cls, columns: dict[str, list[Any]]) -> "Dataset":
        names = list(columns)
        return cls([dict(zip(names, values)) for values in zip(*columns.values())])

    @property
    def column_names(self) -> list[str]:
        return list(self._rows[0]) if self._rows else []

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, str):
            return [row[index] for row in self._rows]
        if isinstance(index, int):
            return self._rows[index]
        return [self._rows[i] for i in index]

    def __iter__(self):
        return iter(self._rows)


class DatasetDict(dict):
    pass


class IterableDataset:
    pass


class IterableDatasetDict(dict):
    pass


def concatenate_datasets(parts: list[Dataset]) -> Dataset:
    return Dataset([row for part in parts for row in part])
