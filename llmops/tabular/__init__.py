"""Classic tabular pipelines beside the LLM ones, on the same registry, gates and store.

- `source.py`: the reference data set (scikit-learn's breast-cancer data, shipped in the
  package) arriving as daily batches of feature rows and, later, labels;
- `quality.py`: the silver layer's checks; bad rows are quarantined with their reasons;
- `tables.py`: the medallion as Delta Lake tables (bronze, silver, quarantine, gold),
  each refresh incremental and each table's commit naming the upstream version it has
  consumed, so a refresh killed midway is completed by the next;
- `training.py`: point-in-time correct training sets from the gold table at a version
  (time travel rebuilds one exactly);
- `model.py`: training (scikit-learn, a bounded grid search), hold-out evaluation and
  registration as `tabular.<name>` with its lineage;
- `drift.py`: per-feature PSI and Kolmogorov-Smirnov tests against the training set;
- `config.py`, `pipeline.py`, `cli.py`: a pipeline's file (`tabular/<name>.yaml`) and
  `llmops tabular features refresh | train | drift`;
- `gate.py`: how `llmops gate tabular.<name>` scores versions (held-out entities).
"""
