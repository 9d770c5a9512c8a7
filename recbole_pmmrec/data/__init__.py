"""The data layer: atomic-file checks, item content files, image decoding, the content
encoding shared with the recommender, ``PMMRecDataset`` (tokenised text, preprocessed
pixels, training rows, item statistics) and derived datasets on disk (the bundled default,
merged sources, cold-start and transfer splits)."""
