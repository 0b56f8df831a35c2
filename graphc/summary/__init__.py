"""gc.summary: TensorBoard summaries (tf.compat.v1.summary).

    tf_loss = gc.summary.scalar("loss", loss)
    merged = gc.summary.merge_all()
    writer = gc.summary.FileWriter("logs", sess.graph)
    writer.add_summary(sess.run(merged), global_step=step)

Building summaries needs nothing extra; fetching one and FileWriter need the tensorboard
package (extra ``graphc[tensorboard]``), for its protocol buffers and event-file writer.
"""

from .ops import SummaryTensor, histogram, image, merge, merge_all, scalar
from .writer import FileWriter

__all__ = ["FileWriter", "SummaryTensor", "histogram", "image", "merge", "merge_all", "scalar"]
