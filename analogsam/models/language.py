"""``char-lm``: a character-level language model (Graves 2013, arXiv 1308.0850; Karpathy's char-rnn).

Token ids (B, T) are embedded (``nn.Embedding``, a digital lookup), read by an ``nn.LSTM``
(``batch_first=True``) and mapped by a Linear layer to logits over the vocabulary at every step,
(B, T, V): the logits at step t predict character t + 1. Trained with the mean cross-entropy over
tokens; its exponential is the perplexity. The model keeps its ``vocabulary`` (the characters, in
id order), a part of its spec, so a checkpoint alone can :meth:`~CharLM.encode` text,
``CharLM.decode`` ids and :meth:`~CharLM.generate` text. With the defaults (embedding 32, 256
hidden units, 1 layer) and a vocabulary of 80 characters it has 320,080 parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from analogsam.errors import InvalidParameterError


class CharLM(nn.Module):
    """Embedding -> LSTM -> Linear to the vocabulary; logits (B, T, V).

    Args:
        vocabulary: the characters the ids stand for, in id order (``load_dataset("text", ...)``
            builds it from the text: ``DatasetSplits.vocabulary``).
        embedding_dim, hidden_size, num_layers: the embedding width and the ``nn.LSTM``'s size.
    """

    def __init__(self, vocabulary: str, *, embedding_dim: int = 32, hidden_size: int = 256, num_layers: int = 1):
        super().__init__()
        if len(set(vocabulary)) != len(vocabulary) or not vocabulary:
            raise InvalidParameterError("char-lm: the vocabulary must be a non-empty string of distinct characters")
        self.vocabulary = vocabulary
        self._ids = {c: i for i, c in enumerate(vocabulary)}
        self.embedding = nn.Embedding(len(vocabulary), embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size, num_layers=num_layers, batch_first=True)
        self.decoder = nn.Linear(hidden_size, len(vocabulary))

    def forward(self, tokens):
        return self._step(tokens, None)[0]

    def encode(self, text: str) -> torch.Tensor:
        """The ids (T,) of ``text``'s characters; one outside the vocabulary is an error naming it."""
        missing = sorted(set(text) - self._ids.keys())
        if missing:
            raise InvalidParameterError(
                f"char-lm: {missing[0]!r} (and {len(missing) - 1} more) is not in the "
                "model's vocabulary; use characters of the text it was trained on"
            )
        return torch.tensor([self._ids[c] for c in text], dtype=torch.long)

    def decode(self, ids) -> str:
        return "".join(self.vocabulary[int(i)] for i in torch.as_tensor(ids).reshape(-1))

    @torch.no_grad()
    def generate(
        self, prompt: str, length: int, *, temperature: float = 1.0, generator: torch.Generator | None = None
    ) -> str:
        """``prompt`` continued by ``length`` characters, each drawn from softmax(logits / temperature)
        (``temperature = 0``: the most likely character); seeded by ``generator``."""
        if not prompt:
            raise InvalidParameterError("char-lm: generate() needs a prompt of at least one character")
        was_training = self.training
        self.eval()
        try:
            logits, state = self._step(self.encode(prompt)[None], None)
            out = []
            for _ in range(length):
                last = logits[0, -1]
                if temperature == 0:
                    nxt = int(last.argmax())
                else:
                    nxt = int(torch.multinomial(torch.softmax(last / temperature, -1), 1, generator=generator))
                out.append(nxt)
                logits, state = self._step(torch.tensor([[nxt]]), state)
            return prompt + self.decode(out)
        finally:
            self.train(was_training)

    def _step(self, tokens, state):
        """(logits, LSTM state) after reading ``tokens`` from ``state`` (None: the zero state)."""
        outputs, state = self.lstm(self.embedding(tokens), state)
        return self.decoder(outputs), state
