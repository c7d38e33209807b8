"""Raw result files of a run into the warehouse: discovery of uploads, parsing, validation."""
