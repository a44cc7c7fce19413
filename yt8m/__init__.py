"""yt8m: the core library of yt8m-pipeline (pure TensorFlow / numpy; no kfp, no Beam).

Modules, one concept each: ``schema`` (the data contract), ``storage`` (local and gs://
paths), ``writers`` / ``readers`` (TFRecords), ``validation`` (record checks with reason
codes), ``synth`` (synthetic YT8M), ``metrics`` (GAP@20 and friends), ``models``
(families by name), ``training``, ``export``, ``ensemble``, ``gate``, ``publish``.
"""

__version__ = "0.1.0"
