"""The dataset service. Files: streamed uploads into the object store, validation, records."""
