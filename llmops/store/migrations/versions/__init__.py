"""The revisions, in two branches: `store_*` (request log, feedback, keys) and `eval_*`."""
