"""The data layer: item content files, image decoding, ``PMMRecDataset`` (tokenised text,
preprocessed pixels, training rows, item statistics) and derived datasets on disk (the
bundled default, merged sources, cold-start and transfer splits)."""
