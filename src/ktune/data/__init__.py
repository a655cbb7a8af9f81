"""The knowledge-tuning dataset: questions, answers and splits built from the KB (`build_dataset`)."""

from ktune.data.config import DataConfig

__all__ = ["DataConfig", "build_dataset"]


def build_dataset(kb, out_dir, config=None):
    """Build the dataset folder; see ktune.data.build.build_dataset."""
    from ktune.data.build import build_dataset as _build

    return _build(kb, out_dir, config)
