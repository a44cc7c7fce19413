"""Epoch scalars for TensorBoard: Keras' callback when the ``tensorboard`` package is installed, else
the same events written through TensorFlow alone."""

from __future__ import annotations

import keras
import tensorflow as tf

from yt8m import storage


class ScalarSummaries(keras.callbacks.Callback):
    """Epoch scalars as TensorBoard events (``epoch_<name>`` in ``log_dir/train``) without the ``tensorboard``
    package: ``tf.summary.write`` with the scalars plugin's metadata, the same events Keras' callback writes."""

    def __init__(self, log_dir: str):
        super().__init__()
        from tensorflow.core.framework import summary_pb2

        self.log_dir = log_dir
        self.metadata = summary_pb2.SummaryMetadata(
            plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")).SerializeToString()
        self.writer = None

    def on_train_begin(self, logs=None):
        self.writer = tf.summary.create_file_writer(storage.join(self.log_dir, "train"))

    def on_epoch_end(self, epoch, logs=None):
        with self.writer.as_default():
            for name, value in (logs or {}).items():
                tf.summary.write(f"epoch_{name}", tf.constant(float(value), tf.float32), step=epoch,
                                 metadata=self.metadata)
        self.writer.flush()

    def on_train_end(self, logs=None):
        if self.writer is not None:
            self.writer.close()


def tensorboard_callback(log_dir: str) -> keras.callbacks.Callback:
    """``keras.callbacks.TensorBoard`` (epoch-level) when the ``tensorboard`` package is installed, else a
    writer of the same scalar events through TensorFlow alone."""
    try:
        import tensorboard  # noqa: F401  (tf.summary.scalar needs it)
    except ImportError:
        return ScalarSummaries(log_dir)
    return keras.callbacks.TensorBoard(log_dir, write_graph=False, update_freq="epoch")
