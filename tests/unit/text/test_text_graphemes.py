import pytest

from worker.text.graphemes import whole_characters


@pytest.mark.parametrize(
    ("text", "span", "expected"),
    [
        ("zoe\u0308 x", (0, 3), (0, 4)),  # a decomposed diaeresis stays with its letter
        ("ab\u0301c", (2, 4), (1, 4)),  # a span never starts on a combining mark
        ("👍🏽!", (0, 1), (0, 2)),  # skin-tone modifier
        ("❤\ufe0f!", (0, 1), (0, 2)),  # variation selector
        ("👨\u200d💻 ok", (0, 1), (0, 3)),  # ZWJ sequence
        ("x 👨\u200d💻", (4, 5), (2, 5)),
        ("plain text", (0, 5), (0, 5)),
        ("", (0, 0), (0, 0)),
        ("\u0301\u0301", (1, 2), (0, 2)),
    ],
)
def test_span_edges_move_out_of_joined_characters(text, span, expected):
    assert whole_characters(text, *span) == expected
