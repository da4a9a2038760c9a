"""The peers the pipeline is measured against, each a runnable module doing bench.domain's job."""
