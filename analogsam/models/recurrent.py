"""``lstm``: a sequence classifier, an image read row by row by an LSTM (Hochreiter & Schmidhuber 1997).

Each of the H image rows is one time step of C·W features (:mod:`analogsam.models.inputs`); a (B, T, F)
sequence is read as it is. An ``nn.LSTM`` (``batch_first=True``) runs over the steps and a Linear layer
classifies its output at the last step, which has seen the whole image ("row-sequential MNIST", a
standard recurrent benchmark; aihwkit's own examples include analog LSTMs). The input and
hidden weight matrices of the four gates are the crossbar weights; the gate non-linearities and the
cell state are digital. With the defaults (128 hidden units, 1 layer) it has 82,186 parameters on 28x28
greyscale images, 10 classes.
"""

from __future__ import annotations

from torch import nn

from analogsam.models.inputs import as_sequence


class LSTMClassifier(nn.Module):
    """LSTM over image rows (or any (B, T, F) sequence), Linear on the last step's output.

    Args:
        features: read (B, T, features) sequences (default: in_channels · input_size, an image row).
        hidden_size, num_layers, bidirectional: the ``nn.LSTM``'s (a bidirectional LSTM's last-step
            output holds the forward direction's last and the backward direction's first state).
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        input_size: int = 28,
        *,
        features: int | None = None,
        hidden_size: int = 128,
        num_layers: int = 1,
        bidirectional: bool = False,
    ):
        super().__init__()
        self.features = int(features) if features is not None else in_channels * input_size
        self.lstm = nn.LSTM(
            self.features, hidden_size, num_layers=num_layers, batch_first=True, bidirectional=bidirectional
        )
        self.classifier = nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)

    def forward(self, x):
        outputs, _ = self.lstm(as_sequence(x, self.features, "lstm"))
        return self.classifier(outputs[:, -1])
