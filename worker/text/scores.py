"""What an engine answers for one window: every label's score, or each token's best label only.

Strategies ``none``, ``simple`` and ``first`` read nothing but each token's best label and its
probability, so an engine may answer with ``BestLabels`` (5–6 bytes per token) instead of the
full ``[tokens, labels]`` float32 matrix (4 bytes per label per token); ``average`` and ``max``
need the full matrix.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class BestLabels:
    """Each token's best class id and its probability (softmax, never a logit)."""

    classes: npt.NDArray[np.intp] | npt.NDArray[np.int16] | npt.NDArray[np.uint8]
    scores: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return len(self.classes)

    @staticmethod
    def of(probabilities: npt.NDArray[np.float32]) -> BestLabels:
        """The best label of each row of a probability matrix."""
        classes = probabilities.argmax(axis=1)
        return BestLabels(classes, np.take_along_axis(probabilities, classes[:, None], axis=1)[:, 0])


WindowScores = npt.NDArray[np.float32] | BestLabels
"""``[len(window), num_labels]`` float32 scores, or ``BestLabels`` of ``len(window)`` tokens."""
