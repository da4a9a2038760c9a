"""Typed records: the producers' raw shapes and the pipeline's canonical records."""
