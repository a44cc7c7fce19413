"""A quick interpreter exit for processes that imported TensorFlow (pipeline tasks, fresh scoring, the CLI).

At exit Python's finalization runs the cyclic garbage collector over every object still alive; with
TensorFlow (and Keras, matplotlib, ...) imported that is millions of objects. Measured here (2 cores):
``import tensorflow`` then exit spends 2-3 s after the last atexit handler, 0.2 s with ``gc.freeze()``
first. Every kfp.local task, every fresh-process scoring (gate, ensemble, publish) and every ``yt8m`` verb
paid it: a local recipe run starts 15-35 task processes.

``skip_final_garbage_collection()`` registers ``gc.freeze`` as an exit handler: the live objects move to
the permanent generation, which the final collections do not walk. Nothing else changes: objects are
still released by reference counting, the other exit handlers still run (logging flushes its handlers),
the exit status is untouched. Only reference cycles still alive at exit are left to the OS, as with
``os._exit``; nothing here relies on collecting them (files are closed explicitly).
"""

import atexit
import gc

_registered = False


def skip_final_garbage_collection() -> None:
    """Skip the cyclic garbage collection of interpreter shutdown in this process (see the module doc)."""
    global _registered
    if not _registered:
        atexit.register(gc.freeze)
        _registered = True
