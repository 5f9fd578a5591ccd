"""The periodic linear-probe evaluator: the study's `linear` head (finetune/linear.py) fitted on
the frozen features of the labelled train split, its accuracy on the test split."""

from ssl_jax.finetune import linear


class LinearProbe:
  """Fits a linear probe on frozen features of the labelled train split; reports test accuracy."""

  def __init__(self, *, data, every_steps, steps=500, learning_rate=0.05, weight_decay=1e-4):
    self.data, self.every_steps = data, every_steps
    self.kwargs = dict(steps=steps, learning_rate=learning_rate, weight_decay=weight_decay)

  def run(self, features_of):
    train_x, train_y, test_x, test_y = self.data.features(features_of)
    head = linear.fit(train_x, train_y, num_classes=self.data.num_classes, mesh=None, **self.kwargs)
    return {
        "accuracy": linear.accuracy(head, test_x, test_y),
        "train_accuracy": linear.accuracy(head, train_x, train_y),
    }
